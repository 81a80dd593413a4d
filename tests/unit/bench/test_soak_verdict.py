"""bench/soak.py's verdict: trends fitted to synthetic series, no processes.

A series that stays flat (exactly, or with noise, or with one step) passes; one that keeps
growing past its limit fails, and the failure names the series.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["soak"] = module
    spec.loader.exec_module(module)
    return module


soak = _load()

MB = 1e6
MINUTES = 30
WARMUP = 300.0


def series(
    rss: Callable[[float], float] = lambda t: 300 * MB,
    fds: Callable[[float], float] = lambda t: 180,
    store: Callable[[float], float] = lambda t: 60 * MB,
    age: Callable[[float], float] = lambda t: 110.0,
    nodes: int = 1,
    leaky_rss: Callable[[float], float] | None = None,
) -> object:
    """One sample a minute for half an hour."""
    s = soak.Series()
    for i in range(1, MINUTES + 1):
        t = 60.0 * i
        s.times.append(t)
        for n in range(nodes):
            f = leaky_rss if leaky_rss is not None and n == nodes - 1 else rss
            s.rss.setdefault(f"node{n + 1}", []).append(f(t))
            s.fds.setdefault(f"node{n + 1}", []).append(fds(t))
        s.store.append(store(t))
        s.queue_age.append(age(t))
    return s


def test_flat_series_pass() -> None:
    v = soak.judge(series(), WARMUP)
    assert v.ok, v.failures
    assert v.rss_pct_per_h == 0 and v.fds_per_h == 0 and v.store_bytes_per_h == 0
    assert v.age_p95 == 110.0
    assert v.line("soak 30 min").endswith(": ok")


@pytest.mark.parametrize("seed", range(20))
def test_noisy_flat_series_pass(seed: int) -> None:
    rng = random.Random(seed)
    v = soak.judge(
        series(
            rss=lambda t: 300 * MB * (1 + rng.gauss(0, 0.03)),
            fds=lambda t: 180 + rng.randint(-12, 12),
            store=lambda t: 60 * MB * (1 + rng.gauss(0, 0.05)),
            age=lambda t: rng.uniform(0, 130),
        ),
        WARMUP,
    )
    assert v.ok, v.failures


def test_growing_rss_fails() -> None:
    # +15 % of 300 MB per hour, with noise.
    rng = random.Random(1)
    v = soak.judge(
        series(rss=lambda t: 300 * MB * (1 + 0.15 * t / 3600 + rng.gauss(0, 0.005))), WARMUP
    )
    assert not v.ok
    assert len(v.failures) == 1 and v.failures[0].startswith("node1 rss")
    assert 12 < v.rss_pct_per_h < 18
    assert "FAIL (node1 rss" in v.line("soak 30 min")


def test_slow_rss_growth_under_the_limit_passes() -> None:
    v = soak.judge(series(rss=lambda t: 300 * MB * (1 + 0.05 * t / 3600)), WARMUP)
    assert v.ok, v.failures
    assert 4 < v.rss_pct_per_h < 6


def test_leaking_file_descriptors_fail() -> None:
    # One descriptor every five minutes, under connection noise of ±5.
    rng = random.Random(2)
    v = soak.judge(series(fds=lambda t: 180 + t // 300 + rng.randint(-2, 2)), WARMUP)
    assert not v.ok
    assert any(f.startswith("node1 fds") for f in v.failures)
    assert v.fds_per_h > 4


def test_one_step_of_file_descriptors_is_no_leak() -> None:
    # A pool that grows once, early on, and stays.
    v = soak.judge(series(fds=lambda t: 180 if t < 660 else 190), WARMUP)
    assert v.ok, v.failures


def test_store_growing_past_retention_fails() -> None:
    v = soak.judge(series(store=lambda t: 60 * MB + 40 * MB * t / 3600), WARMUP)
    assert not v.ok
    assert any(f.startswith("store") for f in v.failures)
    assert v.store_bytes_per_h == pytest.approx(40 * MB)


def test_growth_during_the_warmup_is_not_judged() -> None:
    # The store fills until the retention windows are full, then stays flat.
    v = soak.judge(series(store=lambda t: min(t, 240.0) / 240 * 60 * MB), WARMUP)
    assert v.ok, v.failures


def test_rising_queue_age_fails() -> None:
    # The node falls behind: the oldest queued recipient ages with the clock.
    v = soak.judge(series(age=lambda t: 110 + 0.2 * t), WARMUP)
    assert not v.ok
    assert any(f.startswith("queue age") for f in v.failures)
    assert v.age_s_per_h == pytest.approx(720)


def test_retry_sawtooth_queue_age_passes() -> None:
    # Deferred recipients retried until max_age and expired: a sawtooth, no trend.
    v = soak.judge(series(age=lambda t: 5 + (t % 130)), WARMUP)
    assert v.ok, v.failures


def test_one_leaking_node_of_a_fleet_fails_by_name() -> None:
    v = soak.judge(series(nodes=2, leaky_rss=lambda t: 300 * MB * (1 + 0.5 * t / 3600)), WARMUP)
    assert not v.ok
    assert [f.split()[0] for f in v.failures] == ["node2"]


def test_too_few_samples_after_the_warmup_fail() -> None:
    v = soak.judge(series(), 60.0 * (MINUTES - 2))
    assert not v.ok and "samples after the warm-up" in v.failures[0]


def test_fit_and_mann_kendall() -> None:
    times = [60.0 * i for i in range(8)]
    t = soak.fit(times, [10.0 + i for i in range(8)])
    assert t.slope == pytest.approx(60.0) and t.level == pytest.approx(10.0) and t.rising
    assert soak.fit(times, [10.0 - i for i in range(8)]).z < 0
    assert soak.mann_kendall_z([5.0] * 10) == 0.0
    assert not soak.fit(times, [1.0, 3.0, 2.0, 3.0, 1.0, 2.0, 3.0, 2.0]).rising


def test_durations() -> None:
    assert soak.parse_duration("4m") == 240
    assert soak.parse_duration("90") == 90
    assert soak.parse_duration("1.5h") == 5400
    with pytest.raises(Exception, match="not a duration"):
        soak.parse_duration("soon")
