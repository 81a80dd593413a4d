"""How the workers of one node reach each other: ``/metrics`` answered for the node.

Each worker listens on a stream socket in Linux's abstract namespace named after the
node's data directory and its index (no file, so nothing is left behind by a worker that
was killed). A connection gets the worker's own exposition and is closed. The worker that
serves a scrape asks every other one at once and adds their figures to its own
(``metrics.merge_expositions``); a worker that does not answer within ``timeout`` (being
restarted) is left out of that scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from postline.schedule.shares import WorkerShare

__all__ = ["WorkerLink"]

log = logging.getLogger(__name__)


class WorkerLink:
    """One worker's end: ``serve`` its figures, ``gather`` the others'."""

    def __init__(self, data_dir: Path, share: WorkerShare, *, timeout: float = 2.0) -> None:
        digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:20]
        self._prefix = f"\0postline-node-{digest}"
        self.share = share
        self.timeout = timeout
        self._server: asyncio.Server | None = None

    def _address(self, index: int) -> str:
        return f"{self._prefix}-{index}"

    async def serve(self, answer: Callable[[], Awaitable[bytes]]) -> None:
        """Answer the other workers with ``answer()`` from now on."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                writer.write(await answer())
                await writer.drain()
            except Exception:
                log.exception("worker link answer failed", extra={"action": "workers.link"})
            finally:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self._address(self.share.index))
        sock.listen(64)
        sock.setblocking(False)
        self._server = await asyncio.start_unix_server(handle, sock=sock)

    async def _ask(self, index: int) -> bytes | None:
        try:
            async with asyncio.timeout(self.timeout):
                # Connected here: libuv's pipes (uvloop) take no abstract names.
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    await asyncio.get_running_loop().sock_connect(sock, self._address(index))
                except BaseException:
                    sock.close()
                    raise
                reader, writer = await asyncio.open_unix_connection(sock=sock)
                try:
                    return await reader.read()
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            return None

    async def gather(self) -> list[bytes]:
        """Every other worker's answer (those that gave one)."""
        others = [i for i in range(self.share.count) if i != self.share.index]
        answers = await asyncio.gather(*(self._ask(i) for i in others))
        return [a for a in answers if a is not None]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
