"""Warm-up plans: how much a new source may send to each destination, day by day.

Pure arithmetic, no I/O. A plan (``[[delivery.warmup]]``, or the shipped ``default``,
``warmup_default.toml``) lists per provider the most recipients a source may send in a
UTC day to one destination, for day 1, 2, ... of the plan, and optionally per clock hour
(else the day's cap × ``hourly_share``, rounded up). Day 1 is the source's
``warmup_start``; before it the source sends nothing; after ``days`` it is warmed and
uncapped. A provider is a throttle rule name (``google``); ``*`` covers the rest.

The engine counts against the caps through the throttle backend, in fixed windows named
by :func:`windows` (one counter per UTC day, one per UTC hour), per source and
destination (``Destination.provider``), so a fleet on Redis shares one count.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import resources
from typing import Literal

from postline.config import DEFAULT_WARMUP, WarmupConfig

__all__ = [
    "Caps",
    "WarmupPlan",
    "Windows",
    "plan_day",
    "plans",
    "shipped_plan",
    "windows",
]

Overflow = Literal["warmed", "wait"]


@dataclass(frozen=True, slots=True)
class Caps:
    """The caps of one day towards one destination."""

    day: int
    """Most recipients in the UTC day (0: the plan has not started)."""
    hour: int | None
    """Most recipients in one UTC hour; None: only the day's cap."""


@dataclass(frozen=True, slots=True)
class Windows:
    """The counter windows at one moment: names and when they end (epoch seconds)."""

    day: str
    hour: str
    day_ends: float
    hour_ends: float


def windows(now: float) -> Windows:
    """The day and hour windows (UTC) that ``now`` falls in.

    >>> w = windows(1_793_538_000.0 + 59)  # 2026-11-01 13:00:59 UTC
    >>> (w.day, w.hour, w.hour_ends - 1_793_538_000.0)
    ('d=2026-11-01', 'h=2026-11-01T13', 3600.0)
    """
    at = datetime.fromtimestamp(now, UTC)
    hour = at.replace(minute=0, second=0, microsecond=0)
    day = hour.replace(hour=0)
    return Windows(
        day=f"d={day:%Y-%m-%d}",
        hour=f"h={hour:%Y-%m-%dT%H}",
        day_ends=(day + timedelta(days=1)).timestamp(),
        hour_ends=(hour + timedelta(hours=1)).timestamp(),
    )


def plan_day(start: date, now: float) -> int:
    """Day of the plan at ``now``: 1 on ``start`` (UTC), 0 or less before it.

    >>> plan_day(date(2026, 11, 1), datetime(2026, 11, 3, 23, 59, tzinfo=UTC).timestamp())
    3
    """
    today = datetime.fromtimestamp(now, UTC).date()
    return (today - start).days + 1


@dataclass(frozen=True, slots=True)
class _Row:
    day_caps: tuple[int, ...]
    hour_caps: tuple[int, ...]


class WarmupPlan:
    """One schedule: caps per provider and day, the plan's length and its overflow."""

    __slots__ = ("_rows", "days", "hourly_share", "name", "overflow")

    def __init__(
        self,
        name: str,
        rows: Mapping[str, tuple[Sequence[int], Sequence[int]]],
        *,
        days: int = 0,
        overflow: Overflow = "warmed",
        hourly_share: float = 0.1,
    ) -> None:
        if not rows:
            raise ValueError(f"warm-up plan '{name}' has no caps")
        if not 0 < hourly_share <= 1:
            raise ValueError("hourly_share must be in (0, 1]")
        self.name = name
        self._rows = {
            provider: _Row(tuple(day), tuple(hour)) for provider, (day, hour) in rows.items()
        }
        if any(not row.day_caps for row in self._rows.values()):
            raise ValueError(f"warm-up plan '{name}': every provider needs day caps")
        self.days = days or max(len(row.day_caps) for row in self._rows.values())
        self.overflow: Overflow = overflow
        self.hourly_share = hourly_share

    def __repr__(self) -> str:
        return f"WarmupPlan({self.name!r}, days={self.days}, providers={sorted(self._rows)})"

    @classmethod
    def from_config(cls, cfg: WarmupConfig) -> WarmupPlan:
        return cls(
            cfg.name,
            {c.provider: (c.day_caps, c.hour_caps) for c in cfg.caps},
            days=cfg.days,
            overflow=cfg.overflow,
            hourly_share=cfg.hourly_share,
        )

    @property
    def providers(self) -> tuple[str, ...]:
        return tuple(self._rows)

    def warmed(self, day: int) -> bool:
        """True once the plan is over (the source sends uncapped)."""
        return day > self.days

    def caps(self, day: int, rule: str) -> Caps | None:
        """The caps on ``day`` towards a destination of throttle rule ``rule``; None when
        nothing caps it (the plan is over, or neither ``rule`` nor ``*`` has caps).

        >>> plan = WarmupPlan("p", {"*": ([50, 100], []), "google": ([10], [2])}, days=10)
        >>> plan.caps(1, "yahoo"), plan.caps(5, "yahoo"), plan.caps(3, "google")
        (Caps(day=50, hour=5), Caps(day=100, hour=10), Caps(day=10, hour=2))
        >>> plan.caps(0, "google"), plan.caps(11, "google")
        (Caps(day=0, hour=None), None)
        """
        if day > self.days:
            return None
        row = self._rows.get(rule) or self._rows.get("*")
        if row is None:
            return None
        if day < 1:
            return Caps(0, None)
        day_cap = row.day_caps[min(day, len(row.day_caps)) - 1]
        hour_cap: int | None
        if row.hour_caps:
            hour_cap = row.hour_caps[min(day, len(row.hour_caps)) - 1]
        else:
            hour_cap = math.ceil(day_cap * self.hourly_share)
        if hour_cap >= day_cap:
            hour_cap = None
        return Caps(day_cap, hour_cap)


@functools.cache
def shipped_plan() -> WarmupPlan:
    """The ``default`` plan of ``warmup_default.toml`` (45 days, after SES)."""
    text = resources.files("postline.deliver").joinpath("warmup_default.toml").read_text("utf-8")
    return WarmupPlan.from_config(WarmupConfig.model_validate(tomllib.loads(text)))


def plans(configured: Sequence[WarmupConfig]) -> dict[str, WarmupPlan]:
    """Every schedule a source may name: the configured ones, and ``default`` (the
    shipped plan) unless one of them is called that."""
    out = {cfg.name: WarmupPlan.from_config(cfg) for cfg in configured}
    out.setdefault(DEFAULT_WARMUP, shipped_plan())
    return out
