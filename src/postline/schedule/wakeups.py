"""When each queue falls due next: one timer per queue, the earliest time known.

The delivery engine learns due times from several places — ingest (new mail, ``send_at``),
outcomes (a deferral's retry time), leases (a drained queue's next due recipient, told by
the store) and the periodic queue scan. Only the earliest pending time of a queue is
kept: when it fires, the queue is leased, and a queue that gives fewer recipients than
asked comes with the due time of its next one, so no later time is lost. Memory is one
entry per queue with work, never one per recipient.

Pure and synchronous; the engine's timer task sleeps until :meth:`Wakeups.next_at`.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Wakeups"]

K = TypeVar("K", bound=Hashable)

TICK = 0.25
"""Due times closer than this share one wake-up."""


class Wakeups(Generic[K]):
    """The earliest pending wake-up per key, popped in time order."""

    def __init__(self, tick: float = TICK) -> None:
        self._tick = tick
        self._heap: list[tuple[float, int, K]] = []
        self._at: dict[K, float] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, key: object) -> bool:
        return key in self._at

    def schedule(self, key: K, at: float) -> bool:
        """Wake ``key`` at ``at`` unless it wakes earlier already; True when this is now
        its earliest wake-up (the caller's timer may need to wake sooner)."""
        at = math.ceil(at / self._tick) * self._tick
        current = self._at.get(key)
        if current is not None and current <= at:
            return False
        self._at[key] = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, key))
        if len(self._heap) > 2 * len(self._at) + 1024:
            self._compact()
        return True

    def cancel(self, key: K) -> None:
        self._at.pop(key, None)

    def pop_due(self, now: float, limit: int = 100_000) -> list[K]:
        """Keys whose wake-up time has come (at most ``limit``), forgotten here."""
        out: list[K] = []
        heap = self._heap
        while heap and heap[0][0] <= now and len(out) < limit:
            at, _, key = heapq.heappop(heap)
            if self._at.get(key) == at:
                del self._at[key]
                out.append(key)
        return out

    def next_at(self) -> float | None:
        """The earliest pending wake-up, or None."""
        heap = self._heap
        while heap and self._at.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # superseded by an earlier time, or cancelled
        return heap[0][0] if heap else None

    def _compact(self) -> None:
        self._heap = [(at, i, key) for i, (key, at) in enumerate(self._at.items())]
        heapq.heapify(self._heap)
        self._seq = len(self._heap)
