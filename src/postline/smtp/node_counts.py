"""Open SMTP connections counted for a whole node of several worker processes.

The workers of a node accept on the same listening sockets, so a client's connections
spread over them, and limits counted by each worker alone would let a node hold workers ×
each limit. The supervisor therefore maps one table of counters in memory shared with the
workers it forks (an anonymous ``MAP_SHARED`` mapping, inherited across ``fork``):

    [listener][worker][0]          connections open at that worker
    [listener][worker][1 + bucket] connections open there from the addresses of a bucket

Each worker writes only its own rows (one event loop: no lock), and reads every worker's
to decide: two workers admitting at the same instant may both see room for one more, so a
limit can be passed by at most one connection per other worker for that instant. Client
addresses are counted in :data:`BUCKETS` buckets by CRC-32; two addresses that share a
bucket share its count. A worker that dies has its rows zeroed by the supervisor before
as soon as it is reaped (the kernel closed its connections).
"""

from __future__ import annotations

import mmap
import zlib

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
        self._map = mmap.mmap(-1, len(LISTENERS) * workers * _ROW * 4)
        self._cells = memoryview(self._map).cast("I")

    def _row(self, listener: str, worker: int) -> int:
        if not 0 <= worker < self.workers:
            raise ValueError(f"no worker {worker} in a node of {self.workers}")
        return (LISTENERS.index(listener) * self.workers + worker) * _ROW

    def worker(self, listener: str, worker: int) -> WorkerCounts:
        """What worker ``worker`` counts at ``listener`` (and reads of the others)."""
        return WorkerCounts(self, self._row(listener, 0), self._row(listener, worker))

    def forget(self, worker: int) -> None:
        """Zero a dead worker's counters at every listener."""
        for listener in LISTENERS:
            start = self._row(listener, worker)
            self._cells[start : start + _ROW] = memoryview(bytes(_ROW * 4)).cast("I")


class WorkerCounts:
    """One worker's view of one listener's counters."""

    def __init__(self, table: NodeConnections, first: int, own: int) -> None:
        self._cells = table._cells
        self._rows = range(first, first + table.workers * _ROW, _ROW)
        self._own = own

    @staticmethod
    def bucket(address: str) -> int:
        return 1 + zlib.crc32(address.encode("utf-8", "surrogateescape")) % BUCKETS

    def total(self) -> int:
        """Connections open at this listener over every worker."""
        cells = self._cells
        return sum(cells[row] for row in self._rows)

    def from_bucket(self, bucket: int) -> int:
        """Connections open over every worker from the addresses of ``bucket``."""
        cells = self._cells
        return sum(cells[row + bucket] for row in self._rows)

    def add(self, bucket: int | None, delta: int) -> None:
        """Count (``delta`` 1) or forget (-1) a connection of this worker, from an address
        of ``bucket`` (None: counted in the total only)."""
        cells = self._cells
        for at in (self._own,) if bucket is None else (self._own, self._own + bucket):
            # Never below zero: the counters are unsigned (and a worker's row may have
            # been zeroed while it was thought dead).
            cells[at] = max(0, cells[at] + delta)
