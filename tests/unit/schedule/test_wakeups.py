"""Wake-ups: one pending time per queue, the earliest, popped in order."""

from __future__ import annotations

from postline.schedule.wakeups import Wakeups


def test_only_the_earliest_time_of_a_key_is_kept() -> None:
    w: Wakeups[str] = Wakeups(tick=1.0)
    assert w.schedule("a", 10.0)
    assert not w.schedule("a", 20.0)  # later: the earlier one stands
    assert w.schedule("a", 5.0)  # earlier: replaces it
    assert w.schedule("b", 7.0)
    assert w.next_at() == 5.0
    assert w.pop_due(6.0) == ["a"]
    assert w.pop_due(6.0) == []
    assert w.next_at() == 7.0
    assert w.pop_due(100.0) == ["b"]
    assert w.next_at() is None and len(w) == 0


def test_times_round_up_to_the_tick_and_cancel_forgets() -> None:
    w: Wakeups[str] = Wakeups(tick=0.25)
    w.schedule("a", 1.1)
    assert w.next_at() == 1.25
    assert w.pop_due(1.2) == []
    w.cancel("a")
    assert w.next_at() is None and w.pop_due(2.0) == []


def test_memory_follows_the_keys_not_the_reschedules() -> None:
    w: Wakeups[int] = Wakeups(tick=1.0)
    for round_ in range(50):
        for key in range(1000):
            w.schedule(key, 10_000.0 - round_)  # each time earlier: a new heap entry
    assert len(w) == 1000
    assert len(w._heap) <= 2 * len(w) + 1024
    assert sorted(w.pop_due(20_000.0)) == list(range(1000))
