/*
 * libuv echo server: the classic uv_tcp echo example (uvbook's tcp-echo-server),
 * made correct for partial writes and slow readers:
 *   - every read buffer is handed to uv_write() as is (libuv keeps unsent
 *     bytes queued and finishes the write itself, so partial writes lose
 *     nothing); the buffer is freed in the write callback;
 *   - backpressure: when a connection's queued-but-unsent bytes exceed 1 MiB
 *     we stop reading (uv_read_stop) and resume from the write callback once
 *     the queue has drained, so a peer that does not read cannot grow our
 *     memory without bound;
 *   - EOF: uv_shutdown() is queued behind the pending writes, then close, so
 *     every byte is flushed before the connection closes.
 *   usage: echo PORT   (binds 127.0.0.1)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define HIGH_WATER (1u << 20)

typedef struct {
    uv_tcp_t tcp;       /* must be first */
    int reading;
    int eof;
} conn_t;

typedef struct {
    uv_write_t req;     /* must be first */
    char *base;
} write_req_t;

static uv_loop_t *loop;

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    (void)h;
    buf->base = malloc(suggested);
    buf->len = buf->base ? suggested : 0;
}

static void close_cb(uv_handle_t *h) { free(h); }

static void shutdown_cb(uv_shutdown_t *req, int status) {
    (void)status;
    if (!uv_is_closing((uv_handle_t *)req->handle)) uv_close((uv_handle_t *)req->handle, close_cb);
    free(req);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void write_cb(uv_write_t *req, int status) {
    write_req_t *wr = (write_req_t *)req;
    conn_t *c = (conn_t *)req->handle;
    free(wr->base);
    free(wr);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)c)) uv_close((uv_handle_t *)c, close_cb);
        return;
    }
    if (!c->reading && !c->eof && !uv_is_closing((uv_handle_t *)c) &&
        c->tcp.write_queue_size < HIGH_WATER / 2) {
        c->reading = 1;
        uv_read_start((uv_stream_t *)c, alloc_cb, read_cb);
    }
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    conn_t *c = (conn_t *)s;
    if (nread > 0) {
        write_req_t *wr = malloc(sizeof *wr);
        if (!wr) { free(buf->base); uv_close((uv_handle_t *)s, close_cb); return; }
        wr->base = buf->base;
        uv_buf_t out = uv_buf_init(buf->base, (unsigned)nread);
        if (uv_write(&wr->req, s, &out, 1, write_cb) < 0) {
            free(wr->base);
            free(wr);
            if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, close_cb);
            return;
        }
        if (s->write_queue_size > HIGH_WATER) {
            uv_read_stop(s);
            c->reading = 0;
        }
        return;
    }
    free(buf->base);
    if (nread == 0) return; /* EAGAIN */
    uv_read_stop(s);
    c->reading = 0;
    if (nread == UV_EOF) {
        c->eof = 1;
        uv_shutdown_t *sh = malloc(sizeof *sh);
        if (sh && uv_shutdown(sh, s, shutdown_cb) == 0) return;
        free(sh);
    }
    if (!uv_is_closing((uv_handle_t *)s)) uv_close((uv_handle_t *)s, close_cb);
}

static void on_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    conn_t *c = calloc(1, sizeof *c);
    if (!c) return;
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)c) != 0) {
        uv_close((uv_handle_t *)c, close_cb);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->reading = 1;
    uv_read_start((uv_stream_t *)c, alloc_cb, read_cb);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", atoi(argv[1]), &addr);
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (!r) r = uv_listen((uv_stream_t *)&server, 4096, on_connection);
    if (r) {
        fprintf(stderr, "listen: %s\n", uv_strerror(r));
        return 1;
    }
    printf("libuv %s echo listening on 127.0.0.1:%s\n", uv_version_string(), argv[1]);
    fflush(stdout);
    return uv_run(loop, UV_RUN_DEFAULT);
}
