"""Response shapes of API v1 (for the OpenAPI document; handlers build plain dicts), and
the request shapes of the suppression list."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from postline.events import iso
from postline.ingest.addresses import InvalidAddress, parse_address
from postline.limits import PeriodUsage, UsageReport

__all__ = [
    "BatchItemOut",
    "BatchOut",
    "CancelOut",
    "EventOut",
    "EventsOut",
    "MessageAccepted",
    "MessageOut",
    "PeriodUsageOut",
    "ProblemOut",
    "QueueOut",
    "QueuesOut",
    "ReadyOut",
    "ReadyReason",
    "RecipientAccepted",
    "ReputationCountsOut",
    "ReputationOut",
    "ReputationRatesOut",
    "ReputationStreamOut",
    "ReputationThresholdsOut",
    "SuppressionIn",
    "SuppressionOut",
    "SuppressionsAdded",
    "SuppressionsIn",
    "SuppressionsOut",
    "TenantUsageOut",
    "ThresholdOut",
    "UsageLimitsOut",
    "UsageOut",
    "iso",
    "usage_out",
]


class ProblemOut(BaseModel):
    """RFC 9457 problem details. Some types add members of their own: rate-limited
    ('limit': tenant or key, 'rate', 'burst', 'retry_after'), quota-exceeded ('quota':
    daily or monthly, 'limit', 'used', 'requested', 'resets_at')."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    fix: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None


class ReadyReason(BaseModel):
    component: Literal["store", "throttle", "ingest"] = Field(
        description="What cannot work: 'store' (the message store does not answer), "
        "'throttle' (the throttle backend, e.g. Redis, does not answer: nothing is sent), "
        "'ingest' (accepting a message takes longer than [node] ready_ack_budget)."
    )
    detail: str = Field(description="The last error, or what is slow.")
    since: str = Field(description="When it started (ISO 8601, UTC).")


class ReadyOut(BaseModel):
    status: Literal["ready", "starting", "stopping", "unavailable"] = Field(
        description="'ready' (HTTP 200); otherwise HTTP 503: 'starting', 'stopping' "
        "(SIGTERM: draining), or 'unavailable' with the reasons."
    )
    reasons: list[ReadyReason] | None = Field(
        None, description="Why the node cannot accept mail now (status 'unavailable')."
    )


class RecipientAccepted(BaseModel):
    id: str = Field(description="Recipient id: '<message id>.<index>'.")
    address: str
    status: str = Field(
        description="'queued', 'scheduled', or 'suppressed' when the address is on the "
        "tenant's (or the global) suppression list: that recipient is not sent to."
    )
    reason: str | None = Field(
        None, description="Why a 'suppressed' recipient is on the list (hard_bounce, ...)."
    )


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
    body_deleted_at: str | None = Field(
        None, description="When the body was deleted ([retention] bodies); null while kept."
    )
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


class SuppressionOut(BaseModel):
    address: str = Field(description="The suppressed address, lower-cased, domain in ASCII.")
    reason: str = Field(description="hard_bounce, soft_bounce, complaint, unsubscribe or manual")
    created_at: str = Field(description="When the entry was added (or last replaced).")
    expires_at: str | None = Field(description="When the entry lapses; null: never.")
    source: str = Field(
        description="What added the entry: 'api', 'cli' or 'import' by hand, or postline "
        "itself (e.g. 'bounce')."
    )
    detail: str = Field(description="Free text: a note, or the reply that caused it.")
    message_id: str | None = Field(description="The message whose outcome caused the entry.")


class SuppressionsOut(BaseModel):
    data: list[SuppressionOut]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class SuppressionIn(BaseModel):
    """One address to add to the tenant's suppression list."""

    model_config = ConfigDict(extra="forbid")

    address: str = Field(
        description="A bare address, e.g. 'ann@example.com' (no display name); stored "
        "lower-cased with its domain in ASCII form.",
        max_length=320,
    )
    reason: Literal["manual", "unsubscribe", "complaint", "hard_bounce"] = Field(
        "manual", description="Why the address is suppressed."
    )
    expires_at: datetime | None = Field(
        None, description="When the entry lapses (RFC 3339 with a time zone); null: never."
    )
    detail: str = Field("", max_length=1000, description="A note kept with the entry.")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return parse_address(value.strip()).address
        except InvalidAddress as exc:
            raise ValueError(str(exc)) from None

    @field_validator("expires_at")
    @classmethod
    def _expires(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the time has no time zone")
        if value.timestamp() <= time.time():
            raise ValueError("the time is in the past")
        return value


class SuppressionsIn(BaseModel):
    """Entries to add to (or replace on) the tenant's suppression list, all or none."""

    model_config = ConfigDict(extra="forbid")

    suppressions: list[Any] = Field(
        description="1 to 1000 entries. Each is checked; when any is invalid, nothing is "
        "added and the problem's 'errors' lists every bad entry by index.",
        json_schema_extra={"items": SuppressionIn.model_json_schema()},
    )


class SuppressionsAdded(BaseModel):
    added: int = Field(
        description="Entries added or replaced (an address given twice counts once)."
    )


class ReputationCountsOut(BaseModel):
    delivered: int = Field(description="Recipients delivered.")
    bounced: int = Field(description="Hard bounces: the address or its domain does not exist.")
    complained: int = Field(description="Complaints from mailbox providers' feedback loops.")


class ReputationRatesOut(BaseModel):
    bounce: float | None = Field(
        description="bounced / (delivered + bounced), 0..1; null without any volume."
    )
    complaint: float | None = Field(
        description="complained / delivered, 0..1; null when nothing was delivered."
    )


class ThresholdOut(BaseModel):
    warn: float = Field(description="Rate at or above which the tenant is warned (0: never).")
    pause: float = Field(description="Rate at or above which sending is paused (0: never).")


class ReputationThresholdsOut(BaseModel):
    bounce: ThresholdOut
    complaint: ThresholdOut
    min_volume: int = Field(
        description="Least delivered + bounced recipients in the window before a verdict."
    )


class ReputationStreamOut(BaseModel):
    stream: str = Field(description="The messages' stream (e.g. transactional, bulk).")
    counts: ReputationCountsOut
    rates: ReputationRatesOut


class ReputationOut(BaseModel):
    status: Literal["ok", "warned", "paused"] = Field(
        description="'paused': new mail is refused (403) and queued mail is held until an "
        "operator resumes the tenant; 'warned': a rate is at or above a warning threshold."
    )
    reason: str = Field(description="Why the status was last changed (empty: never).")
    changed_at: str | None = Field(description="When the status was last changed.")
    changed_by: str | None = Field(description="'reputation' (automatic) or 'operator'.")
    window: str = Field(description="The rolling window of the rates, e.g. '24h'.")
    since: str = Field(
        description="Start of the outcomes judged: the window's start, or the last resume "
        "when that is later (a resumed tenant is judged on fresh outcomes only)."
    )
    judged: bool = Field(description="Whether the volume reaches min_volume (a verdict is made).")
    counts: ReputationCountsOut
    rates: ReputationRatesOut
    thresholds: ReputationThresholdsOut
    streams: list[ReputationStreamOut] = Field(description="The same, per stream.")


class PeriodUsageOut(BaseModel):
    period: str = Field(description="The UTC day (YYYY-MM-DD) or month (YYYY-MM).")
    used: int = Field(description="Recipients accepted in the period.")
    limit: int = Field(description="The quota (0: unlimited).")
    remaining: int | None = Field(description="Recipients left (null: unlimited).")
    resets_at: str = Field(description="When the period ends (UTC).")


class UsageOut(BaseModel):
    day: PeriodUsageOut
    month: PeriodUsageOut


class UsageLimitsOut(BaseModel):
    rate_per_second: int = Field(description="The tenant's recipients per second (0: unlimited).")
    burst: int
    daily_quota: int = Field(description="Recipients per UTC day (0: unlimited).")
    monthly_quota: int = Field(description="Recipients per UTC month (0: unlimited).")
    key_rate_per_second: int = Field(
        description="The calling key's own recipients per second, on top (0: none)."
    )
    key_burst: int


class TenantUsageOut(BaseModel):
    limits: UsageLimitsOut
    usage: UsageOut


def usage_out(report: UsageReport) -> UsageOut:
    """A tenant's usage report as the API shows it."""
    return UsageOut(day=_period(report.day), month=_period(report.month))


def _period(p: PeriodUsage) -> PeriodUsageOut:
    return PeriodUsageOut(
        period=p.period,
        used=p.used,
        limit=p.limit,
        remaining=p.remaining,
        resets_at=iso(p.resets_at) or "",
    )
