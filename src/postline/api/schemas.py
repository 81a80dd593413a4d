"""Response shapes of API v1 (for the OpenAPI document; handlers build plain dicts)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "BatchItemOut",
    "BatchOut",
    "CancelOut",
    "EventOut",
    "EventsOut",
    "MessageAccepted",
    "MessageOut",
    "ProblemOut",
    "QueueOut",
    "QueuesOut",
    "RecipientAccepted",
    "iso",
]


def iso(ts: float | None) -> str | None:
    """RFC 3339 UTC with milliseconds, or None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ProblemOut(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    fix: str | None = None
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


class RecipientAccepted(BaseModel):
    id: str = Field(description="Recipient id: '<message id>.<index>'.")
    address: str
    status: str = Field(description="'queued' or 'scheduled'.")


class MessageAccepted(BaseModel):
    id: str
    message_id: str = Field(description="The Message-ID header of the stored message.")
    recipients: list[RecipientAccepted]


class BatchItemOut(BaseModel):
    index: int
    status: str = Field(description="'accepted' or 'rejected'.")
    id: str | None = None
    message_id: str | None = None
    recipients: list[RecipientAccepted] | None = None
    error: ProblemOut | None = None


class BatchOut(BaseModel):
    accepted: int
    rejected: int
    results: list[BatchItemOut]


class AttemptOut(BaseModel):
    type: str
    at: str
    code: int | None = None
    enhanced: str | None = None
    text: str | None = None
    mx: str | None = None
    ip: str | None = None


class RecipientOut(BaseModel):
    id: str
    address: str
    status: str = Field(
        description="queued, scheduled, sending, deferred, delivered, bounced, expired, cancelled"
    )
    attempts: int
    next_attempt_at: str | None
    expires_at: str
    updated_at: str
    last_reply: dict[str, Any] | None
    events: list[AttemptOut]


class MessageOut(BaseModel):
    id: str
    created_at: str
    status: str
    from_: str = Field(alias="from")
    subject: str
    message_id: str
    source: str
    stream: str
    size: int
    tags: list[str]
    metadata: dict[str, Any]
    recipients: list[RecipientOut]


class CancelOut(BaseModel):
    id: str
    cancelled: int = Field(description="Recipients cancelled by this request.")
    recipients: list[dict[str, Any]]


class EventOut(BaseModel):
    id: str
    type: str
    at: str
    message_id: str | None
    recipient_id: str | None
    recipient: str | None
    node: str | None
    data: dict[str, Any]


class EventsOut(BaseModel):
    events: list[EventOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= to get the next page.")


class QueueOut(BaseModel):
    domain: str
    depth: int
    deferred: int
    oldest_at: str | None
    next_attempt_at: str | None
    paused: bool
    throttle: dict[str, Any] | None


class QueuesOut(BaseModel):
    queues: list[QueueOut]
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page.")
