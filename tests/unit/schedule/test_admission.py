"""Admission: bounded, fair rounds of leasing over the queues that share a lane."""

from __future__ import annotations

from collections import Counter

from postline.schedule.admission import Admission


class FakeLane:
    """A lane whose buffer drains by ``drain`` recipients between rounds."""

    def __init__(self, key: str, capacity: int) -> None:
        self.lane_key = key
        self.capacity = capacity
        self.buffered = 0
        self.reserved = 0

    def room(self) -> int:
        return self.capacity - self.buffered


def test_ten_thousand_queues_share_one_lane_and_none_starves() -> None:
    lane = FakeLane("relay", 1000)
    admission: Admission[tuple[str, str]] = Admission(min_quantum=10, max_quantum=200)
    backlog = {("t", f"d{i:05d}.test"): 30 for i in range(10_000)}
    for key in backlog:
        admission.ready(key, lane)
    leased: Counter[tuple[str, str]] = Counter()
    rounds = 0
    first_served: dict[tuple[str, str], int] = {}
    while len(admission) and rounds < 10_000:
        rounds += 1
        grants = admission.plan(budget=20_000, max_rows=5000)
        # Never more than the lane can take, however many queues wait.
        assert sum(g.limit for g in grants) <= lane.room()
        assert lane.reserved == sum(g.limit for g in grants)
        for g in grants:
            got = min(g.limit, backlog.get(g.key, 0))
            if got:
                backlog[g.key] -= got
                leased[g.key] += got
            first_served.setdefault(g.key, rounds)
            lane.buffered += got
            admission.done(g, drained=got < g.limit)
        assert lane.reserved == 0
        lane.buffered = 0  # the lane sent everything before the next round
    assert not any(backlog.values()) and len(admission) == 0
    assert set(leased.values()) == {30}
    # Round-robin: every queue had its first turn within the first pass over the ring.
    assert max(first_served.values()) <= 10_000 * 10 // 1000 + 1


def test_lanes_take_turns_and_a_full_lane_gets_nothing() -> None:
    a, b, full = FakeLane("a", 100), FakeLane("b", 100), FakeLane("full", 100)
    full.buffered = 100
    admission: Admission[str] = Admission(min_quantum=10)
    for i in range(50):
        admission.ready(f"a{i}", a)
        admission.ready(f"b{i}", b)
        admission.ready(f"f{i}", full)
    grants = admission.plan(budget=150)
    by_lane = Counter(g.lane.lane_key for g in grants)
    assert by_lane["full"] == 0
    assert sum(g.limit for g in grants) == 150
    # The next round starts with the lane that waited.
    for g in grants:
        admission.done(g, drained=False)
    again = admission.plan(budget=10)
    assert [g.lane.lane_key for g in again] == ["b"]


def test_budget_and_quantum_bound_each_grant() -> None:
    lane = FakeLane("big", 5000)
    admission: Admission[str] = Admission(min_quantum=10, max_quantum=200)
    admission.ready("only", lane)
    [grant] = admission.plan(budget=20_000)
    assert grant.limit == 200  # one queue never takes a whole lane in one go
    admission.done(grant, drained=False)
    assert [g.limit for g in admission.plan(budget=35)] == [35]


def test_a_queue_made_ready_while_leased_stays_in_its_ring() -> None:
    lane = FakeLane("l", 100)
    admission: Admission[str] = Admission()
    admission.ready("q", lane)
    [grant] = admission.plan(budget=100)
    assert admission.leasing("q")
    assert admission.plan(budget=100) == []  # one lease of a queue at a time
    admission.ready("q", lane)  # new mail arrived meanwhile
    admission.done(grant, drained=True)
    assert "q" in admission
    [grant] = admission.plan(budget=100)
    admission.done(grant, drained=True)
    assert "q" not in admission


def test_a_queue_whose_route_changed_moves_to_its_new_lane() -> None:
    old, new = FakeLane("old", 100), FakeLane("new", 100)
    admission: Admission[str] = Admission()
    admission.ready("q", old)
    admission.ready("q", new)
    assert admission.lane_of("q") is new
    [grant] = admission.plan(budget=100)
    assert grant.lane is new
