"""Events as JSON objects (``GET /v1/events``, webhook payloads)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from postline.model.ids import recipient_id
from postline.store.base import Event

__all__ = ["event_object", "iso"]


_second: list[Any] = [None, ""]
"""The last whole second formatted, and its text (events come in runs of one second)."""


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


def _times(data: dict[str, Any]) -> dict[str, Any]:
    """Event data keeps Unix times; the API shows them as RFC 3339 like every other time."""
    return {
        k: iso(v) if k.endswith("_at") and isinstance(v, int | float) else v
        for k, v in data.items()
    }


def event_object(e: Event) -> dict[str, Any]:
    """The object ``GET /v1/events`` lists for an event."""
    return {
        "id": str(e.id),
        "type": e.type,
        "at": iso(e.at),
        "message_id": e.message_id,
        "recipient_id": recipient_id(e.message_id, e.recipient_idx)
        if e.message_id and e.recipient_idx is not None
        else None,
        "recipient": e.recipient,
        "node": e.node_id,
        "data": _times(e.data),
    }
