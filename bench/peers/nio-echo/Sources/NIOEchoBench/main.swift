// SwiftNIO echo server, modelled on NIOEchoServer from swift-nio's own examples:
// ServerBootstrap + BackPressureHandler + an EchoHandler that writes every
// read back and flushes on channelReadComplete, the same child options
// (maxMessagesPerRead 16, AdaptiveRecvByteBufferAllocator) plus TCP_NODELAY.
//
// One deliberate difference: remote half-closure is allowed and handled. The
// stock example closes the channel as soon as it reads EOF, which fails the
// writes still queued: a client that sends, half-closes and then reads loses
// the tail of its echo (bench/run.py's slow-reader check caught exactly that:
// 4.2 MiB of 16 MiB came back). Here, on inputClosed, we flush and close once
// every queued write has completed, like every other peer in the race.
//
// Usage: nio-echo PORT [THREADS]  (binds 127.0.0.1; THREADS defaults to
// System.coreCount).
import NIOCore
import NIOPosix
#if canImport(Glibc)
import Glibc
#endif

final class EchoHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // Echo back without flushing; the flush happens once per read batch.
        context.write(data, promise: nil)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        context.flush()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, event == .inputClosed {
            // Writes complete in order: when this empty one is done, every echo before it is out.
            let channel = context.channel
            let done = context.eventLoop.makePromise(of: Void.self)
            context.writeAndFlush(self.wrapOutboundOut(channel.allocator.buffer(capacity: 0)), promise: done)
            done.futureResult.whenComplete { _ in channel.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        context.close(promise: nil)
    }
}

let args = CommandLine.arguments
guard args.count >= 2, let port = Int(args[1]) else {
    print("usage: nio-echo PORT [THREADS]")
    exit(2)
}
let threads = args.count >= 3 ? (Int(args[2]) ?? System.coreCount) : System.coreCount

let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(.backlog, value: 1024)
    .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelInitializer { channel in
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(BackPressureHandler())
            try channel.pipeline.syncOperations.addHandler(EchoHandler())
        }
    }
    .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
    .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(.allowRemoteHalfClosure, value: true)
    .childChannelOption(.maxMessagesPerRead, value: 16)
    .childChannelOption(.recvAllocator, value: AdaptiveRecvByteBufferAllocator())

let channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
print("nio-echo listening on \(channel.localAddress!) threads=\(threads)")
try channel.closeFuture.wait()
try group.syncShutdownGracefully()
