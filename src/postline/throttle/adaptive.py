"""Adaptive slow-down: recognise "slow down" replies and turn them into a rate factor.

Pure policy, no I/O. A destination starts at factor 1.0 (its configured rate). Each
throttling reply cuts the factor multiplicatively (``decrease``, never below ``floor``);
the factor then recovers additively, ``recover_step`` per ``recover_interval`` since the
last cut, up to 1.0 (AIMD, as TCP does). Replies that arrive within ``cut_cooldown`` of the
last cut belong to the same episode (every open session tends to hear the same 421) and
change nothing. ``strikes`` cuts within ``strike_window`` suspend the destination for
``suspend_for`` seconds; recovery resumes when the suspension ends.

Backends keep one ``AdaptiveState`` per bucket and apply these functions atomically (the
Redis backend mirrors them in Lua, so keep them simple arithmetic on the state's fields).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from postline.throttle._shipped import shipped_data

__all__ = [
    "DEFAULT_PARAMS",
    "AdaptiveParams",
    "AdaptiveState",
    "current_factor",
    "is_idle",
    "is_throttling_reply",
    "on_throttled",
    "reply_patterns",
]


@dataclass(frozen=True, slots=True)
class AdaptiveParams:
    """The knobs of the slow-down. The defaults halve the rate per episode, regain the full
    rate within about five minutes of the last cut from 0.5, and suspend a destination for
    five minutes after three episodes in a minute."""

    decrease: float = 0.5
    """Multiply the factor by this on each throttling episode (0 < decrease < 1)."""
    floor: float = 0.05
    """The factor never drops below this (0 < floor ≤ 1)."""
    recover_step: float = 0.1
    """Add this to the factor ..."""
    recover_interval: float = 60.0
    """... for each full interval (seconds) since the last cut."""
    cut_cooldown: float = 5.0
    """Replies within this many seconds of the last cut are the same episode."""
    strikes: int = 3
    """This many episodes ..."""
    strike_window: float = 60.0
    """... within this many seconds ..."""
    suspend_for: float = 300.0
    """... suspend the destination for this many seconds."""

    def __post_init__(self) -> None:
        if not 0 < self.decrease < 1:
            raise ValueError(f"decrease must be between 0 and 1, got {self.decrease!r}")
        if not 0 < self.floor <= 1:
            raise ValueError(f"floor must be in (0, 1], got {self.floor!r}")
        if self.recover_step <= 0 or self.recover_interval <= 0:
            raise ValueError("recover_step and recover_interval must be positive")
        if self.cut_cooldown < 0 or self.strike_window < 0 or self.suspend_for < 0:
            raise ValueError("cut_cooldown, strike_window and suspend_for must not be negative")
        if isinstance(self.strikes, bool) or not isinstance(self.strikes, int) or self.strikes < 1:
            raise ValueError(f"strikes must be a positive whole number, got {self.strikes!r}")


DEFAULT_PARAMS = AdaptiveParams()


@dataclass(frozen=True, slots=True)
class AdaptiveState:
    """The slow-down state of one bucket.

    ``factor`` is the factor right after the last cut; ``current_factor`` adds the recovery
    since ``last_update``, the time recovery counts from (the last cut, or the end of a
    suspension). ``strikes`` holds the times of recent episodes (fewer than
    ``params.strikes``). While ``now < suspended_until`` nothing may be sent.
    """

    factor: float = 1.0
    strikes: tuple[float, ...] = ()
    suspended_until: float = 0.0
    last_update: float = 0.0

    def suspended(self, now: float) -> bool:
        return now < self.suspended_until


def current_factor(
    state: AdaptiveState, now: float, params: AdaptiveParams = DEFAULT_PARAMS
) -> float:
    """The factor at ``now``: the cut factor plus ``recover_step`` per whole interval."""
    if state.factor >= 1.0:
        return 1.0
    elapsed = max(0.0, now - state.last_update)
    steps = math.floor(elapsed / params.recover_interval)
    return min(1.0, state.factor + steps * params.recover_step)


def on_throttled(
    state: AdaptiveState, now: float, params: AdaptiveParams = DEFAULT_PARAMS
) -> AdaptiveState:
    """The state after a throttling reply at ``now``.

    Unchanged while suspended or within ``cut_cooldown`` of the last cut; otherwise the
    factor is cut and a strike recorded, and the ``strikes``-th strike within
    ``strike_window`` suspends the destination (its strikes then start over).
    """
    if state.suspended(now):
        return state
    if state.strikes and now - state.strikes[-1] < params.cut_cooldown:
        return state
    factor = max(params.floor, current_factor(state, now, params) * params.decrease)
    strikes = (*(t for t in state.strikes if now - t < params.strike_window), now)
    if len(strikes) >= params.strikes:
        until = now + params.suspend_for
        return AdaptiveState(factor=factor, strikes=(), suspended_until=until, last_update=until)
    return replace(state, factor=factor, strikes=strikes, last_update=now)


def is_idle(state: AdaptiveState, now: float, params: AdaptiveParams = DEFAULT_PARAMS) -> bool:
    """True when ``state`` is as good as a fresh one at ``now`` and may be forgotten."""
    return (
        not state.suspended(now)
        and current_factor(state, now, params) >= 1.0
        and all(now - t >= params.strike_window for t in state.strikes)
    )


# --- recognising throttling replies -------------------------------------------------------


@functools.cache
def reply_patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """The shipped (throttling, not-throttling) patterns of ``defaults.toml``, compiled."""
    data = shipped_data()
    return _combine(tuple(data["throttle_replies"])), _combine(tuple(data["not_throttle_replies"]))


@functools.lru_cache(maxsize=256)
def _combine(patterns: tuple[str, ...]) -> re.Pattern[str]:
    if not patterns:
        return re.compile(r"(?!)")
    return re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)


def is_throttling_reply(
    code: int, enhanced: str | None, text: str, extra_patterns: Iterable[str] = ()
) -> bool:
    """Whether a reply asks the sender to slow down for the whole destination.

    Patterns are searched in ``"CODE ENHANCED text"`` (whitespace collapsed,
    case-insensitive), in this order; the first rule that decides wins:

    1. a permanent or positive reply (not 4xx) is never throttling — 5xx replies are the
       bounce classifier's business;
    2. ``extra_patterns`` (per rule or configuration) → throttling;
    3. shipped ``not_throttle_replies`` (one mailbox or address, protocol, content,
       network trouble, a receiver's local error, greylisting) → not throttling;
    4. ``421``, or an enhanced code ``4.7.x`` or ``4.4.5`` (congestion) → throttling;
    5. shipped ``throttle_replies`` (provider texts, "too many connections", ...) →
       throttling; anything else is an ordinary transient failure.
    """
    if not 400 <= code < 500:
        return False
    line = " ".join(f"{code} {enhanced or ''} {text}".split())
    extra = tuple(extra_patterns)
    if extra and _combine(extra).search(line):
        return True
    throttle, not_throttle = reply_patterns()
    if not_throttle.search(line):
        return False
    if code == 421 or (
        enhanced is not None and (enhanced.startswith("4.7.") or enhanced == "4.4.5")
    ):
        return True
    return throttle.search(line) is not None
