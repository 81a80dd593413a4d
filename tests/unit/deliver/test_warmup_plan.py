"""Warm-up plan arithmetic: day of the plan, caps per provider and day, windows."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from postline.deliver.warmup import Caps, WarmupPlan, plan_day, shipped_plan, windows


def _at(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def test_the_day_of_the_plan_counts_utc_days_from_the_start() -> None:
    start = date(2026, 11, 1)
    assert plan_day(start, _at(2026, 11, 1, 0, 0)) == 1
    assert plan_day(start, _at(2026, 11, 1, 23, 59, 59)) == 1
    assert plan_day(start, _at(2026, 11, 2)) == 2
    assert plan_day(start, _at(2026, 12, 15, 12)) == 45
    assert plan_day(start, _at(2026, 10, 31, 23, 59)) == 0  # not started yet
    assert plan_day(date(2026, 12, 31), _at(2027, 1, 1, 0, 30)) == 2


def test_windows_are_utc_days_and_hours() -> None:
    w = windows(_at(2026, 11, 1, 13, 59, 59))
    assert (w.day, w.hour) == ("d=2026-11-01", "h=2026-11-01T13")
    assert w.hour_ends == _at(2026, 11, 1, 14)
    assert w.day_ends == _at(2026, 11, 2)
    assert windows(_at(2026, 11, 1, 14)).hour == "h=2026-11-01T14"


PLAN = WarmupPlan(
    "p",
    {"*": ([50, 100, 500], []), "google": ([10, 20], [2, 4, 8]), "apple": ([5], [])},
    days=6,
    hourly_share=0.25,
)


@pytest.mark.parametrize(
    ("day", "rule", "caps"),
    [
        (1, "default", Caps(50, 13)),  # hourly: 50 × 0.25 rounded up
        (2, "default", Caps(100, 25)),
        (3, "corp", Caps(500, 125)),
        (6, "corp", Caps(500, 125)),  # the last value holds until the plan ends
        (1, "google", Caps(10, 2)),
        (3, "google", Caps(20, 8)),  # day caps and hour caps run out independently
        (5, "google", Caps(20, 8)),
        (1, "apple", Caps(5, 2)),
        (0, "google", Caps(0, None)),  # before the start: nothing
        (-3, "default", Caps(0, None)),
    ],
)
def test_caps_by_provider_and_day(day: int, rule: str, caps: Caps) -> None:
    assert PLAN.caps(day, rule) == caps


def test_after_the_plan_and_without_a_row_nothing_is_capped() -> None:
    assert PLAN.caps(7, "google") is None
    assert PLAN.warmed(7) and not PLAN.warmed(6)
    only_google = WarmupPlan("g", {"google": ([10], [])})
    assert only_google.days == 1  # the longest day_caps list
    assert only_google.caps(1, "yahoo") is None
    # an hourly cap of at least the day's cap is no cap
    assert WarmupPlan("h", {"*": ([4], [])}, hourly_share=1.0).caps(1, "x") == Caps(4, None)
    assert WarmupPlan("h", {"*": ([4], [9])}).caps(1, "x") == Caps(4, None)


def test_invalid_plans() -> None:
    with pytest.raises(ValueError, match="no caps"):
        WarmupPlan("x", {})
    with pytest.raises(ValueError, match="day caps"):
        WarmupPlan("x", {"*": ([], [])})
    with pytest.raises(ValueError, match="hourly_share"):
        WarmupPlan("x", {"*": ([1], [])}, hourly_share=0.0)


def test_the_shipped_plan_ramps_over_45_days() -> None:
    plan = shipped_plan()
    assert (plan.name, plan.days, plan.overflow) == ("default", 45, "warmed")
    assert set(plan.providers) == {"*", "google", "microsoft", "yahoo", "apple"}
    for rule in ("google", "microsoft", "yahoo", "apple", "default"):
        caps = [plan.caps(day, rule) for day in range(1, 46)]
        days = [c.day for c in caps if c is not None]
        assert len(days) == 45
        assert days == sorted(days)  # never shrinks
        assert days[-1] >= 100 * days[0]  # and grows by orders of magnitude
        first = caps[0]
        assert first is not None and first.hour is not None
        assert first.hour * 8 <= first.day  # a day's volume is spread over hours
    assert plan.caps(1, "google") == Caps(50, 5)
    assert plan.caps(46, "google") is None
