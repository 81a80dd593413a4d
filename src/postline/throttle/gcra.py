"""GCRA, the generic cell rate algorithm, as one pure function.

A bucket stores one number, its theoretical arrival time (TAT): the time at which it would
be empty again if nothing more were sent. Granting ``n`` messages pushes the TAT ``n``
emission intervals further; a request is refused while the TAT lies further ahead than
the burst tolerates. Backends store the TAT and call ``gcra`` (the Redis backend runs the
same arithmetic in one Lua script).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postline.throttle.rules import Limits

__all__ = ["EPSILON", "effective_rate", "gcra", "gcra_all"]

#: Waits shorter than this (float rounding) count as "granted now".
EPSILON = 1e-9


def effective_rate(limits: Limits, factor: float) -> tuple[float, int] | None:
    """The (emission interval, burst) of ``limits`` slowed by ``factor``; None if unlimited.

    The interval is ``period / messages / factor``; the burst shrinks with the factor too
    (rounded down, at least 1), so a slowed-down destination is not hit by a full burst.
    """
    if limits.messages is None:
        return None
    interval = limits.period / limits.messages / factor
    burst = max(1, math.floor(limits.effective_burst * factor + EPSILON))
    return interval, burst


def gcra(tat: float, now: float, interval: float, burst: int, n: int = 1) -> tuple[float, float]:
    """Try to send ``n`` messages at ``now``; return ``(new_tat, wait)``.

    ``wait == 0.0``: granted, store ``new_tat``. ``wait > 0``: refused, ``new_tat`` is
    ``tat`` unchanged and ``wait`` is the number of seconds until ``n`` could be granted.
    ``burst`` messages are granted at once from an idle bucket; a request larger than the
    burst is granted only when the bucket is idle, and its debt then delays what follows,
    so the long-run rate holds for any ``n``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n!r}")
    base = max(tat, now)
    wait = (base - now) - interval * max(0, burst - n)
    if wait > EPSILON:
        return tat, wait
    return base + n * interval, 0.0


def gcra_all(
    buckets: Sequence[tuple[float, Limits]], now: float, n: int
) -> tuple[float, int, list[float | None]]:
    """Take ``n`` from every bucket (its stored TAT, -inf when new, and its limits) or from
    none: ``(wait, index, new_tats)``. ``wait == 0.0``: granted, store each non-None of
    ``new_tats`` (None: an unlimited bucket). Else ``index`` is the bucket that refused
    with the longest wait, and nothing is to be stored."""
    worst, at = 0.0, -1
    new_tats: list[float | None] = []
    for i, (tat, limits) in enumerate(buckets):
        rate = effective_rate(limits, 1.0)
        if rate is None:
            new_tats.append(None)
            continue
        new_tat, wait = gcra(tat, now, rate[0], rate[1], n)
        new_tats.append(new_tat)
        if wait > worst:
            worst, at = wait, i
    return worst, at, new_tats
