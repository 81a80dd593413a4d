"""How the workers of one node reach each other: ``/metrics`` answered for the node.

Each worker listens on a stream socket in Linux's abstract namespace named after the
node's data directory and its index (no file, so nothing is left behind by a worker that
was killed). A connection gets the worker's own exposition and is closed. The worker that
serves a scrape asks every other one at once and adds their figures to its own
(``metrics.merge_expositions``). A worker that does not answer within ``timeout`` (busy,
or being restarted) is counted with the counters and histograms of the last answer it gave
this worker, for up to ``stale_after`` seconds, so the node's counters do not step back
for one scrape because one worker was slow (its gauges are left out: they may no longer
be true); a worker silent for longer is left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from postline.metrics import counters_only
from postline.schedule.shares import WorkerShare

__all__ = ["WorkerLink"]

log = logging.getLogger(__name__)


class WorkerLink:
    """One worker's end: ``serve`` its figures, ``gather`` the others'."""

    def __init__(
        self,
        data_dir: Path,
        share: WorkerShare,
        *,
        timeout: float = 2.0,
        stale_after: float = 300.0,
    ) -> None:
        digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:20]
        self._prefix = f"\0postline-node-{digest}"
        self.share = share
        self.timeout = timeout
        self.stale_after = stale_after
        self._server: asyncio.Server | None = None
        # Each other worker's last answer and when it came (monotonic seconds).
        self._last: dict[int, tuple[float, bytes]] = {}

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
        """Every other worker's answer: a fresh one, or the counters of the last one it
        gave within ``stale_after`` seconds when it did not answer in time."""
        others = [i for i in range(self.share.count) if i != self.share.index]
        answers = await asyncio.gather(*(self._ask(i) for i in others))
        now = time.monotonic()
        out = []
        for index, answer in zip(others, answers, strict=True):
            if answer is not None:
                self._last[index] = (now, answer)
                out.append(answer)
                continue
            last = self._last.get(index)
            if last is not None and now - last[0] <= self.stale_after:
                out.append(counters_only(last[1]))
            else:
                self._last.pop(index, None)
        return out

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
