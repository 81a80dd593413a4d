"""Admission: which queues get leased next, and how much, so that a node leases only what
its delivery lanes can send soon — shared fairly by every queue waiting for the same lane.

A *queue* is one tenant's mail to one domain; a *lane* is where leased work waits to be
sent (the buffers of the sites of every source towards one destination, the path that
fails mail without a route). Many queues share a lane: every domain hosted by one
provider, or everything a smarthost relays. Each lane keeps a ring of its queues that
have due work, and each round of admission:

1. visits the lanes with due queues in turn (the lane served last goes to the back);
2. gives a lane at most its free room — what it can take now (``Lane.room``, a few
   seconds of sending) minus what is already being leased for it — and never more than
   the node's budget left (``[queue] max_leased`` less what the node holds);
3. splits that room over the lane's ring, round-robin: each queue gets a quantum of
   ``room / queues`` (at least ``min_quantum``, at most ``max_quantum``), starting where
   the last round stopped.

So 10,000 due domains behind one relay share its ~1,000 buffered recipients, a few at a
time each, and none starves; however deep the queue, what is leased at once is bounded
by the lanes and the budget. A queue stays in its ring until a lease says it is drained
(fewer recipients came back than asked).

Pure and synchronous: the engine does the leasing and tells :class:`Admission` what came
back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

__all__ = ["Admission", "Grant", "Lane"]

K = TypeVar("K", bound=Hashable)


class Lane(Protocol):
    """Where leased work waits to be sent."""

    @property
    def lane_key(self) -> str:
        """Names the lane (two lanes with one key are one lane)."""
        ...

    reserved: int
    """Recipients being leased for this lane right now (kept by :class:`Admission`, and
    by direct hand-offs from ingest)."""

    def room(self) -> int:
        """How many more recipients the lane could take now (reservations not counted)."""
        ...


class _LaneState(Generic[K]):
    __slots__ = ("lane", "ring")

    def __init__(self, lane: Lane) -> None:
        self.lane = lane
        self.ring: OrderedDict[K, None] = OrderedDict()


@dataclass(slots=True)
class Grant(Generic[K]):
    """Lease up to ``limit`` recipients of queue ``key`` for ``lane``."""

    key: K
    lane: Lane
    limit: int


class Admission(Generic[K]):
    """Rings of due queues per lane, and fair rounds over them (see module docstring)."""

    def __init__(self, *, min_quantum: int = 10, max_quantum: int = 1000) -> None:
        self.min_quantum = min_quantum
        self.max_quantum = max(min_quantum, max_quantum)
        self._lanes: OrderedDict[str, _LaneState[K]] = OrderedDict()
        self._where: dict[K, _LaneState[K]] = {}
        self._leasing: set[K] = set()
        self._again: set[K] = set()

    def __len__(self) -> int:
        """Queues waiting in rings."""
        return len(self._where)

    def __contains__(self, key: object) -> bool:
        return key in self._where

    def has_lane(self, lane_key: str) -> bool:
        """True while queues wait in the ring of the lane named ``lane_key``."""
        return lane_key in self._lanes

    def lane_of(self, key: K) -> Lane | None:
        state = self._where.get(key)
        return state.lane if state is not None else None

    def leasing(self, key: K) -> bool:
        return key in self._leasing

    def ready(self, key: K, lane: Lane) -> None:
        """``key`` has due work for ``lane``: into the lane's ring (moved there from
        another lane's when its route changed). While a lease of ``key`` is running,
        its result will not drop it from the ring."""
        if key in self._leasing:
            self._again.add(key)
        state = self._where.get(key)
        if state is not None:
            if state.lane.lane_key == lane.lane_key:
                state.lane = lane
                return
            self._drop(key, state)
        state = self._lanes.get(lane.lane_key)
        if state is None:
            state = _LaneState(lane)
            self._lanes[lane.lane_key] = state
        else:
            state.lane = lane
        state.ring[key] = None
        self._where[key] = state

    def discard(self, key: K) -> None:
        """Forget ``key`` (cancelled, paused, routed elsewhere)."""
        state = self._where.get(key)
        if state is not None:
            self._drop(key, state)

    def _drop(self, key: K, state: _LaneState[K]) -> None:
        del state.ring[key]
        del self._where[key]
        if not state.ring:
            self._lanes.pop(state.lane.lane_key, None)

    def queues(self) -> list[K]:
        """Every queue waiting in a ring."""
        return list(self._where)

    def plan(self, budget: int, *, max_rows: int = 5000, max_queues: int = 1000) -> list[Grant[K]]:
        """One round: grants for up to ``budget`` recipients (and at most ``max_rows`` and
        ``max_queues`` in all), reserved on their lanes until :meth:`done`."""
        grants: list[Grant[K]] = []
        left = min(budget, max_rows)
        served: list[str] = []
        for name, state in list(self._lanes.items()):
            if left <= 0 or len(grants) >= max_queues:
                break
            lane = state.lane
            room = lane.room() - lane.reserved
            free = min(room, left)
            if free <= 0:
                continue
            ring = state.ring
            quantum = min(self.max_quantum, max(self.min_quantum, free // len(ring)))
            # Walk the ring from its front only as far as the room goes: granted queues
            # move to the back, so a round costs what it grants, not the ring's length.
            picked: list[K] = []
            taken = 0
            for key in ring:
                if free - taken <= 0 or len(grants) + len(picked) >= max_queues:
                    break
                if key in self._leasing:
                    continue
                n = min(quantum, free - taken)
                picked.append(key)
                grants.append(Grant(key, lane, n))
                taken += n
            if not picked:
                continue
            for key in picked:
                self._leasing.add(key)
                ring.move_to_end(key)
            lane.reserved += taken
            left -= taken
            if taken >= room:
                # Served in full: to the back. A lane cut short by the budget keeps its
                # place and comes first next round.
                served.append(name)
        for name in served:
            self._lanes.move_to_end(name)
        return grants

    def done(self, grant: Grant[K], *, drained: bool) -> None:
        """The lease of ``grant`` came back; a drained queue leaves its ring unless it was
        made ready again meanwhile."""
        grant.lane.reserved -= grant.limit
        key = grant.key
        self._leasing.discard(key)
        again = key in self._again
        self._again.discard(key)
        if drained and not again:
            self.discard(key)
