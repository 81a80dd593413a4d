"""Rates, thresholds and the status rules (pure)."""

from __future__ import annotations

import pytest

from postline.config import load_config
from postline.errors import ConfigError
from postline.reputation.rates import (
    OK,
    PAUSED,
    WARNED,
    Counts,
    Thresholds,
    bucket_of,
    bucket_width,
    judge,
    percent,
    transition,
)

T = Thresholds(
    bounce_warn=0.05,
    bounce_pause=0.10,
    complaint_warn=0.001,
    complaint_pause=0.005,
    min_volume=100,
    window=86400.0,
)


def test_rates() -> None:
    c = Counts(delivered=90, bounced=10, complained=1)
    assert c.volume == 100
    assert c.bounce_rate == pytest.approx(0.10)
    assert c.complaint_rate == pytest.approx(1 / 90)
    assert Counts().bounce_rate is None
    assert Counts(bounced=3).complaint_rate is None
    assert Counts.total([Counts(1, 2, 3), Counts(10, 20, 30)]) == Counts(11, 22, 33)


@pytest.mark.parametrize(
    ("counts", "level"),
    [
        (Counts(delivered=99, bounced=0), None),  # under the minimum volume: no verdict
        (Counts(delivered=10, bounced=89), None),  # however bad the rate
        (Counts(delivered=100), "ok"),
        (Counts(delivered=96, bounced=4), "ok"),
        (Counts(delivered=95, bounced=5), "warn"),  # at the threshold counts
        (Counts(delivered=91, bounced=9), "warn"),
        (Counts(delivered=90, bounced=10), "pause"),
        (Counts(delivered=1000, complained=1), "warn"),
        (Counts(delivered=1000, complained=5), "pause"),
        (Counts(delivered=0, bounced=100), "pause"),  # no complaint rate without deliveries
    ],
)
def test_judge(counts: Counts, level: str | None) -> None:
    assert judge(counts, T).level == level


def test_a_pause_crossing_wins_and_every_crossing_is_kept() -> None:
    v = judge(Counts(delivered=900, bounced=100, complained=1), T)
    assert v.level == "pause"
    assert [(c.rate, c.level) for c in v.crossings] == [("bounce", "pause"), ("complaint", "warn")]
    # The reason names what decided the verdict: the pause-level crossing.
    assert v.reason(T.window).startswith("hard-bounce rate 10 % (100 of 1000 ")
    assert "complaint" not in v.reason(T.window)


def test_reason_names_rate_count_window_and_threshold() -> None:
    v = judge(Counts(delivered=180, bounced=20), T)
    assert v.level == "pause"
    assert v.reason(3600.0) == (
        "hard-bounce rate 10 % (20 of 200 delivered or hard-bounced recipients) over the "
        "last 1h is at or above the pause threshold of 10 %"
    )
    w = judge(Counts(delivered=2000, complained=3), T)
    assert w.reason(86400.0) == (
        "complaint rate 0.15 % (3 complaints for 2000 delivered) over the last 1d is at or "
        "above the warning threshold of 0.1 %"
    )


def test_zero_disables_a_threshold() -> None:
    t = Thresholds(bounce_warn=0.0, bounce_pause=0.0, min_volume=1)
    assert judge(Counts(bounced=50, delivered=50), t).level == "ok"


@pytest.mark.parametrize(
    ("current", "level", "new"),
    [
        (OK, "ok", None),
        (OK, "warn", WARNED),
        (OK, "pause", PAUSED),
        (WARNED, "warn", None),
        (WARNED, "pause", PAUSED),
        (WARNED, "ok", OK),  # recovered
        (PAUSED, "ok", None),  # only an operator resumes
        (PAUSED, "pause", None),
        (WARNED, None, None),  # too little volume changes nothing
        (OK, None, None),
    ],
)
def test_transitions(current: str, level: str | None, new: str | None) -> None:
    counts = {
        "ok": Counts(delivered=100),
        "warn": Counts(delivered=94, bounced=6),
        "pause": Counts(delivered=50, bounced=50),
        None: Counts(delivered=1),
    }[level]
    verdict = judge(counts, T)
    assert verdict.level == level
    assert transition(current, verdict) == new


def test_buckets() -> None:
    assert bucket_width(86400.0) == 1800.0
    assert bucket_width(600.0) == 60.0  # at least a minute
    assert bucket_of(3661.0, 1800.0) == 3600.0
    assert bucket_of(3600.0, 1800.0) == 3600.0


def test_percent() -> None:
    assert percent(0.1) == "10 %"
    assert percent(0.367) == "36.7 %"
    assert percent(0.05) == "5 %"
    assert percent(0.0525) == "5.25 %"
    assert percent(0.001) == "0.1 %"
    assert percent(0.0015) == "0.15 %"
    assert percent(0.0) == "0 %"


def test_configuration() -> None:
    cfg = load_config(
        text='[reputation]\nwindow = "1h"\nbounce_warn = "4%"\ncomplaint_pause = 0.01\n',
        environ={},
    ).reputation
    assert (cfg.window, cfg.bounce_pause, cfg.complaint_pause) == (3600.0, 0.10, 0.01)
    assert cfg.bounce_warn == pytest.approx(0.04)
    with pytest.raises(ConfigError, match=r"bounce_warn .* is above bounce_pause"):
        load_config(text="[reputation]\nbounce_warn = 0.2\n", environ={})
    with pytest.raises(ConfigError, match="window must be at least 1 minute"):
        load_config(text='[reputation]\nwindow = "30s"\n', environ={})
    with pytest.raises(ConfigError, match=r"reputation\.bounce_pause"):
        load_config(text="[reputation]\nbounce_pause = 1.5\n", environ={})
