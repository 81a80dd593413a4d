"""GCRA as a pure function, and the rate a factor leaves."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postline.throttle.gcra import effective_rate, gcra
from postline.throttle.rules import Limits


def test_an_idle_bucket_grants_the_burst_then_spaces_by_the_interval() -> None:
    tat, now = -math.inf, 100.0
    for _ in range(3):
        tat, wait = gcra(tat, now, 0.5, 3)
        assert wait == 0.0
    same, wait = gcra(tat, now, 0.5, 3)
    assert same == tat
    assert wait == pytest.approx(0.5)
    tat, wait = gcra(tat, now + 0.5, 0.5, 3)
    assert wait == 0.0


def test_a_request_larger_than_the_burst_waits_for_an_idle_bucket() -> None:
    tat, wait = gcra(-math.inf, 0.0, 1.0, 2, n=5)
    assert (tat, wait) == (5.0, 0.0)
    _, wait = gcra(tat, 1.0, 1.0, 2, n=5)
    assert wait == pytest.approx(4.0)
    _, wait = gcra(tat, 4.0, 1.0, 2, n=1)  # the debt delays what follows
    assert wait == 0.0
    _, wait = gcra(tat, 2.0, 1.0, 2, n=1)
    assert wait == pytest.approx(2.0)


def test_n_must_be_positive() -> None:
    with pytest.raises(ValueError):
        gcra(0.0, 0.0, 1.0, 1, n=0)


def test_effective_rate_scales_interval_and_burst() -> None:
    limits = Limits(messages=600, period=60, burst=8)
    assert effective_rate(limits, 1.0) == pytest.approx((0.1, 8))
    assert effective_rate(limits, 0.5) == pytest.approx((0.2, 4))
    assert effective_rate(limits, 0.05) == pytest.approx((2.0, 1))
    assert effective_rate(Limits(connections=3), 0.5) is None


@given(
    interval=st.floats(0.01, 10.0),
    burst=st.integers(1, 10),
    requests=st.lists(st.tuples(st.floats(0.0, 5.0), st.integers(1, 10)), max_size=60),
)
def test_no_window_admits_more_than_burst_plus_its_length_in_intervals(
    interval: float, burst: int, requests: list[tuple[float, int]]
) -> None:
    tat, now = -math.inf, 0.0
    granted: list[tuple[float, int]] = []
    for dt, n in requests:
        now += dt
        n = min(n, burst)
        tat, wait = gcra(tat, now, interval, burst, n)
        if wait == 0.0:
            granted.append((now, n))
        else:
            # the announced wait is exact: retrying then succeeds
            assert gcra(tat, now + wait, interval, burst, n)[1] == 0.0
    for i, (start, _) in enumerate(granted):
        total = 0
        for t, n in granted[i:]:
            total += n
            assert total <= burst + (t - start) / interval + 1e-6
