"""Retry timing: exponential backoff with jitter, capped, bounded by the message's age.

Pure functions; the random source is passed in so tests can pin it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

__all__ = ["RetryPolicy", "backoff", "next_attempt"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first: float = 60.0
    multiplier: float = 2.0
    max_interval: float = 3600.0
    max_age: float = 3 * 86400.0
    jitter: Literal["full", "none"] = "full"


def backoff(attempts: int, policy: RetryPolicy, rng: random.Random | None = None) -> float:
    """Delay before the next attempt after ``attempts`` failed ones (``attempts`` ≥ 1).

    The ceiling grows as ``first × multiplier^(attempts-1)`` up to ``max_interval``. With
    full jitter the delay is uniform between ``first`` and that ceiling, so retries of
    many recipients spread out instead of arriving together, and none comes back sooner
    than ``first``.
    """
    n = max(1, attempts)
    exponent = min(n - 1, 64)
    ceiling = min(policy.max_interval, policy.first * policy.multiplier**exponent)
    ceiling = max(ceiling, policy.first)
    if policy.jitter == "none" or ceiling <= policy.first:
        return ceiling
    r = rng or random
    return r.uniform(policy.first, ceiling)


def next_attempt(
    attempts: int,
    *,
    now: float,
    expires_at: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> float | None:
    """When to try again after ``attempts`` failures, or None when the recipient expires.

    A recipient past ``expires_at`` expires; otherwise the next attempt is never later
    than ``expires_at`` (one last try at the deadline).
    """
    if now >= expires_at:
        return None
    return min(now + backoff(attempts, policy, rng), expires_at)
