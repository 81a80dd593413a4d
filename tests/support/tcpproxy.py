"""A TCP proxy on loopback that can cut its clients off without closing anything.

``BlackHoleProxy(upstream_host, upstream_port)`` listens on 127.0.0.1 and relays every
connection to the upstream server. ``black_hole()`` makes it swallow every byte in both
directions while keeping the connections (and accepting new ones) open: to its clients
the server is partitioned away, their calls time out, nothing is refused. ``heal()``
closes the connections that lost bytes (their protocol state is gone) and relays again.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["BlackHoleProxy"]


class BlackHoleProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = "127.0.0.1"
        self.port = 0
        self.holed = False
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def black_hole(self) -> None:
        """Swallow everything from now on (no reply, no close, no refusal)."""
        self.holed = True

    def heal(self) -> None:
        """Relay again; connections open during the black hole are closed."""
        self.holed = False
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            while self.holed:  # a client that connects into the black hole hears nothing
                await asyncio.sleep(0.05)
                if writer.transport.is_closing():
                    return
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(up_writer)
            await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    w.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if not self.holed:
                    writer.write(data)
                    await writer.drain()
        writer.transport.abort()
