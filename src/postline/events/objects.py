"""Events as JSON objects (``GET /v1/events``, webhook payloads)."""

from __future__ import annotations

from typing import Any

from postline.model.ids import recipient_id
from postline.model.times import iso
from postline.store.base import Event

__all__ = ["event_object", "iso"]


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
