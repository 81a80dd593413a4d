"""Open SMTP connections counted for a whole node of several worker processes.

The workers of a node accept on the same listening sockets, so a client's connections
spread over them, and limits counted by each worker alone would let a node hold workers ×
each limit. The supervisor therefore maps one table of counters in memory shared with the
workers it forks (a ``MAP_SHARED`` mapping of a memory file, inherited across ``fork``):

    [listener][worker][0]          connections open at that worker
    [listener][worker][1 + bucket] connections open there from the addresses of a bucket

Each worker writes only its own rows and reads every worker's to decide. The decision and
the count it leads to are one step under a POSIX record lock on the memory file
(``lockf``), so two workers admitting at once cannot both take the last place; the
kernel drops the lock of a process that dies holding it. Client addresses are counted in
:data:`BUCKETS` buckets by CRC-32; two addresses that share a bucket share its count. A
worker that dies has its rows zeroed by the supervisor as soon as it is reaped (the
kernel closed its connections).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import zlib
from collections.abc import Iterator
from typing import Literal

__all__ = ["BUCKETS", "LISTENERS", "NodeConnections", "WorkerCounts"]

BUCKETS = 16384
"""Buckets client addresses are counted in, per listener and worker."""

LISTENERS = ("submission", "inbound")

_ROW = 1 + BUCKETS  # counters of one worker at one listener (unsigned 32-bit)


class NodeConnections:
    """The node's table, made by the supervisor before it forks its ``workers``."""

    def __init__(self, workers: int) -> None:
        if workers < 1:
            raise ValueError("a node has at least one worker")
        self.workers = workers
        size = len(LISTENERS) * workers * _ROW * 4
        self._fd = os.memfd_create("postline-smtp-connections")
        os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)
        self._cells = memoryview(self._map).cast("I")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The table to this process alone (other processes' ``locked`` wait)."""
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def _row(self, listener: str, worker: int) -> int:
        if not 0 <= worker < self.workers:
            raise ValueError(f"no worker {worker} in a node of {self.workers}")
        return (LISTENERS.index(listener) * self.workers + worker) * _ROW

    def worker(self, listener: str, worker: int) -> WorkerCounts:
        """What worker ``worker`` counts at ``listener`` (and reads of the others)."""
        return WorkerCounts(self, self._row(listener, 0), self._row(listener, worker))

    def forget(self, worker: int) -> None:
        """Zero a dead worker's counters at every listener."""
        with self.locked():
            for listener in LISTENERS:
                start = self._row(listener, worker)
                self._cells[start : start + _ROW] = memoryview(bytes(_ROW * 4)).cast("I")


class WorkerCounts:
    """One worker's view of one listener's counters."""

    def __init__(self, table: NodeConnections, first: int, own: int) -> None:
        self._table = table
        self._cells = table._cells
        self._rows = range(first, first + table.workers * _ROW, _ROW)
        self._own = own

    @staticmethod
    def bucket(address: str) -> int:
        return 1 + zlib.crc32(address.encode("utf-8", "surrogateescape")) % BUCKETS

    def _sum(self, at: int) -> int:
        cells = self._cells
        return sum(cells[row + at] for row in self._rows)

    def from_bucket(self, bucket: int) -> int:
        """Connections open over the node from the addresses of ``bucket``."""
        return self._sum(bucket)

    def admit(
        self, bucket: int | None, *, per_address: int, total: int
    ) -> Literal["total", "address"] | None:
        """Count a connection from an address of ``bucket`` (None: one exempt from the
        per-address limit), unless the node has ``total`` open already (``"total"``) or
        ``per_address`` from the bucket (``"address"``)."""
        with self._table.locked():
            if self._sum(0) >= total:
                return "total"
            if bucket is not None and self._sum(bucket) >= per_address:
                return "address"
            self._add(bucket, 1)
            return None

    def release(self, bucket: int | None) -> None:
        """Forget a connection :meth:`admit` counted."""
        with self._table.locked():
            self._add(bucket, -1)

    def _add(self, bucket: int | None, delta: int) -> None:
        cells = self._cells
        for at in (self._own,) if bucket is None else (self._own, self._own + bucket):
            # Never below zero: the counters are unsigned (and a worker's row may have
            # been zeroed while it was thought dead).
            cells[at] = max(0, cells[at] + delta)
