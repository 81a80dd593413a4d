"""Which worker of a node delivers which queue.

A node's worker processes split delivery by recipient domain: worker ``i`` of ``n`` takes
the queues whose domain hashes to ``i`` (CRC-32, the same in every process and on every
run). Scans and announcements of due queues reach only the owner, so no two workers
ever lease the same queue from the store and the split needs no lock. Fresh mail is the
exception: the worker that took it sends it at once when its own lane to that destination
has room (no round trip through the store), whoever owns the domain; what it defers or
hands back is announced to the owner. Limits hold across the workers through the node's
throttle backend.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

__all__ = ["WorkerShare"]


@dataclass(frozen=True, slots=True)
class WorkerShare:
    """Worker ``index`` of ``count`` (``WorkerShare(0, 1)``: the whole node)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"no worker {self.index} of {self.count}")

    def owns(self, domain: str) -> bool:
        """True when this worker delivers ``domain``'s queues."""
        return self.count == 1 or self.owner(domain) == self.index

    def owner(self, domain: str) -> int:
        """The worker that delivers ``domain``'s queues."""
        return zlib.crc32(domain.encode("utf-8", "surrogatepass")) % self.count

    def part(self, total: int) -> int:
        """This worker's share of a node-wide budget (at least 1)."""
        return max(1, -(-total // self.count))
