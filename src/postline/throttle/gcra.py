"""GCRA, the generic cell rate algorithm, as one pure function.

A bucket stores one number, its theoretical arrival time (TAT): the time at which it would
be empty again if nothing more were sent. Granting ``n`` messages pushes the TAT ``n``
emission intervals further; a request is refused while the TAT lies further ahead than
the burst tolerates. Backends store the TAT and call ``gcra`` (the Redis backend runs the
same arithmetic in one Lua script).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from postline.throttle.rules import Limits

__all__ = ["EPSILON", "effective_rate", "gcra"]

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
