"""Times as the API, the logs and /readyz write them."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any, overload

__all__ = ["iso"]


_second: list[Any] = [None, ""]
"""The last whole second formatted, and its text (events come in runs of one second)."""


@overload
def iso(ts: float) -> str: ...
@overload
def iso(ts: None) -> None: ...
@overload
def iso(ts: float | None) -> str | None: ...


def iso(ts: float | None) -> str | None:
    """RFC 3339 UTC with milliseconds, or None: what ``datetime.fromtimestamp(ts, UTC)
    .isoformat(timespec="milliseconds")`` gives (microseconds rounded as it rounds them,
    then cut to milliseconds), with the second's text reused across calls."""
    if ts is None:
        return None
    frac, whole = math.modf(ts)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole += 1
        us -= 1_000_000
    elif us < 0:
        whole -= 1
        us += 1_000_000
    second = int(whole)
    if _second[0] != second:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second[0], _second[1] = second, text
    return f"{_second[1]}.{us // 1000:03d}Z"
