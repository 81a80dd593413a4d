"""Webhook records from rows, by column name, the same way for every backend."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from postline.store._rows import NamedRow
from postline.store.base import WEBHOOK_FIELDS, Webhook, WebhookDelivery

__all__ = ["delivery_of", "delivery_row", "update_columns", "webhook_of", "webhook_row"]


def _events(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = json.loads(value)
    return tuple(value)


def webhook_of(row: NamedRow) -> Webhook:
    return Webhook(
        id=row["id"],
        tenant_id=row["tenant_id"],
        url=row["url"],
        events=_events(row["events"]),
        description=row["description"],
        batch_size=row["batch_size"],
        secret=row["secret"],
        old_secret=row["old_secret"],
        old_secret_until=row["old_secret_until"],
        status=row["status"],
        disabled_reason=row["disabled_reason"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        cursor=row["cursor"],
        batch_id=row["batch_id"],
        batch_last=row["batch_last"],
        batch_started=row["batch_started"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        lease_owner=row["lease_owner"],
        lease_until=row["lease_until"],
    )


def webhook_row(hook: Webhook) -> dict[str, Any]:
    """Column → value of a new endpoint (``events`` as a JSON array)."""
    row = {name: getattr(hook, name) for name in Webhook.__slots__}
    row["events"] = json.dumps(list(hook.events))
    return row


def delivery_of(row: NamedRow) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"],
        webhook_id=row["webhook_id"],
        tenant_id=row["tenant_id"],
        status=row["status"],
        first_event=row["first_event"],
        last_event=row["last_event"],
        count=row["count"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        response_code=row["response_code"],
        latency_ms=row["latency_ms"],
        error=row["error"],
    )


def delivery_row(delivery: WebhookDelivery) -> dict[str, Any]:
    return {name: getattr(delivery, name) for name in WebhookDelivery.__slots__}


def update_columns(changes: Mapping[str, Any]) -> dict[str, Any]:
    """The columns an update writes (``events`` as a JSON array); refuses other fields."""
    unknown = set(changes) - WEBHOOK_FIELDS
    if unknown:
        raise ValueError(f"webhook fields that cannot be changed: {sorted(unknown)}")
    out = dict(changes)
    if "events" in out:
        out["events"] = json.dumps(list(out["events"]))
    return out
