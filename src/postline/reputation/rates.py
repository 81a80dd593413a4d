"""Rates, thresholds and the status a tenant moves to: pure functions, no I/O.

* bounce rate = hard bounces / (delivered + hard bounces)
* complaint rate = complaints / delivered

A tenant is judged only once ``delivered + hard bounces`` in the window reaches the
minimum volume. A rate at or above a pause threshold pauses it; at or above a warning
threshold warns it. Statuses move ``ok → warned → paused`` and back from ``warned`` to
``ok`` when the rates recover; ``paused`` is left only by an operator's resume.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from postline.config import ReputationConfig
from postline.units import format_duration

__all__ = [
    "OK",
    "PAUSED",
    "STATUSES",
    "WARNED",
    "Counts",
    "Crossing",
    "Thresholds",
    "Verdict",
    "bucket_of",
    "bucket_width",
    "judge",
    "percent",
    "transition",
]

OK = "ok"
WARNED = "warned"
PAUSED = "paused"
STATUSES = (OK, WARNED, PAUSED)

BUCKETS_PER_WINDOW = 48
MIN_BUCKET = 60.0


def bucket_width(window: float) -> float:
    """Width of the counting buckets of a window: 1/48 of it, at least a minute."""
    return max(MIN_BUCKET, window / BUCKETS_PER_WINDOW)


def bucket_of(at: float, width: float) -> float:
    """Start of the bucket holding time ``at``."""
    return math.floor(at / width) * width


def percent(rate: float) -> str:
    """``0.1234`` → ``'12.3 %'``; small rates keep their significant digits."""
    value = rate * 100
    if value == 0 or value >= 10:
        text = f"{value:.1f}"
    elif value >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.2g}" if value >= 0.01 else f"{value:.1g}"
    if "." in text and "e" not in text:
        text = text.rstrip("0").rstrip(".")
    return f"{text} %"


@dataclass(frozen=True, slots=True)
class Counts:
    delivered: int = 0
    bounced: int = 0
    """Hard bounces."""
    complained: int = 0

    @property
    def volume(self) -> int:
        """What the bounce rate is taken over: delivered + hard-bounced recipients."""
        return self.delivered + self.bounced

    @property
    def bounce_rate(self) -> float | None:
        return self.bounced / self.volume if self.volume else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complained / self.delivered if self.delivered else None

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.delivered + other.delivered,
            self.bounced + other.bounced,
            self.complained + other.complained,
        )

    @staticmethod
    def total(items: Iterable[Counts]) -> Counts:
        out = Counts()
        for c in items:
            out = out + c
        return out


@dataclass(frozen=True, slots=True)
class Thresholds:
    bounce_warn: float = 0.05
    bounce_pause: float = 0.10
    complaint_warn: float = 0.001
    complaint_pause: float = 0.005
    min_volume: int = 500
    window: float = 86400.0

    @classmethod
    def from_config(cls, cfg: ReputationConfig) -> Thresholds:
        return cls(
            bounce_warn=cfg.bounce_warn,
            bounce_pause=cfg.bounce_pause,
            complaint_warn=cfg.complaint_warn,
            complaint_pause=cfg.complaint_pause,
            min_volume=cfg.min_volume,
            window=cfg.window,
        )


@dataclass(frozen=True, slots=True)
class Crossing:
    """One rate at or above one of its thresholds."""

    rate: str
    """``bounce`` or ``complaint``."""
    level: str
    """``warn`` or ``pause``."""
    value: float
    threshold: float
    count: int
    of: int

    def describe(self, window: float) -> str:
        if self.rate == "bounce":
            what = f"hard-bounce rate {percent(self.value)} ({self.count} of {self.of} "
            what += "delivered or hard-bounced recipients)"
        else:
            what = f"complaint rate {percent(self.value)} ({self.count} complaints for "
            what += f"{self.of} delivered)"
        kind = "pause" if self.level == "pause" else "warning"
        return (
            f"{what} over the last {format_duration(window)} is at or above the {kind} "
            f"threshold of {percent(self.threshold)}"
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    level: str | None
    """None: too little volume to judge; else ``ok``, ``warn`` or ``pause``."""
    counts: Counts
    crossings: tuple[Crossing, ...] = ()

    def reason(self, window: float) -> str:
        """The crossings of the verdict's level, in words (empty when there are none)."""
        return "; ".join(c.describe(window) for c in self.crossings if c.level == self.level)


def _crossing(
    rate: str, value: float | None, warn: float, pause: float, count: int, of: int
) -> Crossing | None:
    if value is None:
        return None
    if pause > 0 and value >= pause:
        return Crossing(rate, "pause", value, pause, count, of)
    if warn > 0 and value >= warn:
        return Crossing(rate, "warn", value, warn, count, of)
    return None


def judge(counts: Counts, t: Thresholds) -> Verdict:
    """The verdict on a tenant's counts over the window."""
    if counts.volume < t.min_volume:
        return Verdict(None, counts)
    crossings = [
        c
        for c in (
            _crossing(
                "bounce",
                counts.bounce_rate,
                t.bounce_warn,
                t.bounce_pause,
                counts.bounced,
                counts.volume,
            ),
            _crossing(
                "complaint",
                counts.complaint_rate,
                t.complaint_warn,
                t.complaint_pause,
                counts.complained,
                counts.delivered,
            ),
        )
        if c is not None
    ]
    if any(c.level == "pause" for c in crossings):
        level = "pause"
    elif crossings:
        level = "warn"
    else:
        level = "ok"
    return Verdict(level, counts, tuple(crossings))


def transition(current: str, verdict: Verdict) -> str | None:
    """The status a tenant moves to on ``verdict``, or None when it stays where it is.

    A paused tenant stays paused whatever its rates (only an operator resumes it); too
    little volume changes nothing; a warned tenant whose rates recovered is ``ok`` again.
    """
    if current == PAUSED or verdict.level is None:
        return None
    if verdict.level == "pause":
        return PAUSED
    if verdict.level == "warn":
        return WARNED if current == OK else None
    return OK if current == WARNED else None
