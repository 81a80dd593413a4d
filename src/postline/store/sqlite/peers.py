"""Due announcements between the processes that have one SQLite file open.

The workers of a node share one SQLite store, and each delivers its own share of the
queues: a worker that takes mail for another's queue tells it, as PostgreSQL's NOTIFY does
between the nodes of a fleet. Each listening process binds a datagram socket in Linux's
abstract namespace (no file to clean up, no path length limit), named after the store file
and the process's origin, and leaves a marker file of that origin in ``<store>.peers/``;
an announcer lists that directory (at most once a second) and sends each payload of
:func:`~postline.store.announce.due_payloads` to every other origin. Sends never block: a
full or vanished receiver loses the hint (its marker is removed when nothing listens any
more), and the scan finds the work anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import socket
import time
from collections.abc import Collection, Mapping
from pathlib import Path

from postline.store.announce import DueCallback, DueRelay, PendingDue
from postline.store.base import QueueKey

__all__ = ["DuePeers"]

log = logging.getLogger(__name__)

_PAYLOAD_LIMIT = 60_000  # bytes per datagram (the default socket buffer holds ~200 KB)
_LIST_EVERY = 1.0  # seconds between listings of the peers' directory


class DuePeers:
    """Announce to, and hear from, the other processes on one store file."""

    def __init__(self, store_path: Path, origin: str) -> None:
        self.origin = origin
        resolved = store_path.resolve()
        self._dir = resolved.with_name(resolved.name + ".peers")
        self._prefix = "postline-due-" + hashlib.sha256(str(resolved).encode()).hexdigest()[:20]
        self._peers: list[str] = []
        self._listed_at = -_LIST_EVERY
        self._sender: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._relay: DueRelay | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = PendingDue()
        self._flush_armed = False

    def _address(self, origin: str) -> str:
        return f"\0{self._prefix}-{origin}"

    # -- listening ---------------------------------------------------------------------
    def listen(self, callback: DueCallback) -> None:
        """Hand announcements of the other processes to ``callback`` from now on."""
        if self._listener is not None:
            raise RuntimeError("already listening")
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.bind(self._address(self.origin))
        self._dir.mkdir(mode=0o700, exist_ok=True)
        (self._dir / self.origin).touch()
        self._listener, self._relay, self._loop = sock, DueRelay(self.origin, callback), loop
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock, relay = self._listener, self._relay
        if sock is None or relay is None:
            return
        for _ in range(64):
            try:
                data = sock.recv(_PAYLOAD_LIMIT + 1024)
            except OSError:  # nothing more to read (or the socket closed)
                return
            relay.received(data.decode("utf-8", "replace"))

    # -- announcing --------------------------------------------------------------------
    def announce(
        self, now: Collection[QueueKey], later: Mapping[QueueKey, float], rescan: bool = False
    ) -> None:
        """Tell the other processes; what piles up in one loop iteration goes together."""
        if not now and not later and not rescan:
            return
        if not self.others():
            return
        self._pending.add(now, later, rescan)
        if not self._flush_armed:
            self._flush_armed = True
            asyncio.get_running_loop().call_soon(self._flush)

    def others(self) -> list[str]:
        """The origins of the other processes listening on this file (listed at most once
        a second)."""
        mono = time.monotonic()
        if mono - self._listed_at >= _LIST_EVERY:
            self._listed_at = mono
            try:
                names = os.listdir(self._dir)
            except OSError:
                names = []
            self._peers = [n for n in names if n != self.origin]
        return self._peers

    def _flush(self) -> None:
        self._flush_armed = False
        payloads = [p.encode() for p in self._pending.payloads(self.origin, limit=_PAYLOAD_LIMIT)]
        if self._sender is None:
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
        for peer in list(self._peers):
            for payload in payloads:
                try:
                    self._sender.sendto(payload, self._address(peer))
                except (BlockingIOError, InterruptedError):
                    break  # its buffer is full: it is busy; the scan finds the rest
                except (ConnectionRefusedError, FileNotFoundError):
                    # Nobody listens there any more (a process that died): forget it.
                    with contextlib.suppress(OSError):
                        (self._dir / peer).unlink()
                    with contextlib.suppress(ValueError):
                        self._peers.remove(peer)
                    break
                except OSError as exc:
                    log.warning(
                        "due announcement to %s failed: %s",
                        peer,
                        exc,
                        extra={"action": "store.notify_failed"},
                    )
                    break

    def close(self) -> None:
        if self._relay is not None:
            self._relay.close()
        if self._listener is not None:
            if self._loop is not None and not self._loop.is_closed():
                with contextlib.suppress(Exception):
                    self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                (self._dir / self.origin).unlink()
        if self._sender is not None:
            self._sender.close()
            self._sender = None
