#!/usr/bin/env python3
"""asyncio echo server on the high-level streams API (StreamReader/StreamWriter).

Reads up to 64 KiB, writes it back, awaits drain() (backpressure: a peer that
does not read stops us reading), closes after EOF once everything is written.
usage: asyncio_streams.py PORT [--uvloop]   (binds 127.0.0.1)
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import _common


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


def main() -> None:
    args = _common.parse_args(__doc__)

    async def serve():
        server = await asyncio.start_server(handle, "127.0.0.1", args.port, backlog=4096)
        loop = type(asyncio.get_running_loop()).__module__
        print(f"asyncio-streams ({loop}) listening on 127.0.0.1:{args.port}", flush=True)
        async with server:
            await server.serve_forever()

    _common.run(serve, args.uvloop)


if __name__ == "__main__":
    main()
