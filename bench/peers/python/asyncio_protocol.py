#!/usr/bin/env python3
"""asyncio echo server on the low-level Protocol/Transport API.

data_received() writes straight back; pause_writing()/resume_writing() pause
and resume reading (backpressure); on EOF the transport is closed, which
flushes the write buffer first.
usage: asyncio_protocol.py PORT [--uvloop]   (binds 127.0.0.1)
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common


class Echo(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # close the transport (after flushing what is buffered)

    def pause_writing(self):
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def connection_lost(self, exc):
        self.transport = None


def main() -> None:
    args = _common.parse_args(__doc__)

    async def serve():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Echo, "127.0.0.1", args.port, backlog=4096)
        print(f"asyncio-protocol ({type(loop).__module__}) listening on 127.0.0.1:{args.port}", flush=True)
        async with server:
            await server.serve_forever()

    _common.run(serve, args.uvloop)


if __name__ == "__main__":
    main()
