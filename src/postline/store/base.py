"""The ``Store`` interface every backend implements, and the records it exchanges.

The queue is a table of recipients partitioned by recipient domain. A *queue* is one
tenant's recipients in one domain; a node leases due recipients queue by queue (many
queues in one call), and a lease moves ``next_attempt_at`` to the lease's expiry, so rows
of a node that died become due again by themselves. Queue sizes and recipients per state
are counters kept in the transactions that change them, so views never count rows. Every
write that is acknowledged to a client is durable (fsync'd) when the call returns.

Backends: ``postline.store.sqlite`` (embedded default). Every backend passes the contract
suite in ``tests/contract/test_store_contract.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from postline.model import EventType, RecipientState
from postline.store.health import StoreHealth

__all__ = [
    "QUEUE_START",
    "WEBHOOK_FIELDS",
    "ActivityCount",
    "ActivityStore",
    "AdminToken",
    "ApiKey",
    "AttemptRecord",
    "AuditEntry",
    "ControlStore",
    "DkimKeyRecord",
    "DomainStore",
    "Event",
    "EventLog",
    "EventQuery",
    "IdempotencyClaim",
    "IdempotencyRecord",
    "InboundMessage",
    "InboundStore",
    "KeyIdentity",
    "LeaseRequest",
    "LeasedMessage",
    "LeasedRecipient",
    "LimitOverrides",
    "MessageMatch",
    "MessageView",
    "NewAuditEntry",
    "NewEvent",
    "NewMessage",
    "NewRecipient",
    "QueueCursor",
    "QueueDepths",
    "QueueDue",
    "QueueKey",
    "QueueLease",
    "QueuePause",
    "QueueStat",
    "QueueStore",
    "Quota",
    "RecipientView",
    "ReputationCount",
    "ReputationStore",
    "ReputationTotals",
    "Reroute",
    "RetentionStore",
    "SenderDomain",
    "Store",
    "Suppression",
    "SuppressionStore",
    "Tenant",
    "TenantQueue",
    "TenantRemoval",
    "TenantStatus",
    "TenantStore",
    "Usage",
    "Webhook",
    "WebhookDelivery",
    "WebhookStore",
]


@dataclass(frozen=True, slots=True)
class Tenant:
    id: str
    name: str
    created_at: float
    deleted_at: float | None = None
    """When an operator deleted it (a tombstone kept for the audit log and the data of
    the retention period); None while it exists."""


@dataclass(frozen=True, slots=True)
class TenantRemoval:
    """What :meth:`TenantStore.delete_tenant` removed with the tenant."""

    keys_revoked: int
    domains: int
    webhooks: int


@dataclass(frozen=True, slots=True)
class LimitOverrides:
    """A tenant's (or, rate and burst only, an API key's) own sending limits; None: the
    ``[limits]`` default applies, 0: unlimited."""

    rate: int | None = None
    """Recipients per second (a message to N recipients counts N)."""
    burst: int | None = None
    """Recipients that may go at once from an idle bucket."""
    daily: int | None = None
    """Recipients per UTC calendar day."""
    monthly: int | None = None
    """Recipients per UTC calendar month."""

    def as_dict(self) -> dict[str, int | None]:
        return {
            "rate": self.rate,
            "burst": self.burst,
            "daily": self.daily,
            "monthly": self.monthly,
        }


@dataclass(frozen=True, slots=True)
class Quota:
    """The quotas an enqueue is held to (0: unlimited): the store counts every accepted
    recipient per tenant and UTC day, and refuses a call that would take the tenant's
    day or month over its limit (``postline.errors.QuotaExceeded``)."""

    daily: int = 0
    monthly: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """Recipients a tenant has had accepted in one UTC day and in its month."""

    day: str
    """``YYYY-MM-DD`` (UTC)."""
    day_used: int
    month_used: int


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    tenant_id: str
    prefix: str
    created_at: float
    name: str = ""
    scopes: tuple[str, ...] | None = None
    """The scopes the key was given, sorted; None: every tenant scope (keys made before
    scopes existed, or made without naming any)."""
    last_used_at: float | None = None
    """Noted at most once a minute."""
    revoked_at: float | None = None
    rate: int | None = None
    """The key's own rate limit in recipients per second (None: ``[limits] key_rate``;
    0: none), on top of its tenant's."""
    burst: int | None = None
    """The burst of :attr:`rate` (None: ``[limits] key_burst``)."""


@dataclass(frozen=True, slots=True)
class KeyIdentity:
    """Who a live API key speaks for: its tenant, the key itself and what it may do."""

    tenant: Tenant
    key_id: str
    prefix: str
    scopes: tuple[str, ...] | None
    """As :attr:`ApiKey.scopes` (None: every tenant scope)."""
    last_used_at: float | None = None
    rate: int | None = None
    """As :attr:`ApiKey.rate`."""
    burst: int | None = None
    """As :attr:`ApiKey.burst`."""

    def allows(self, scope: str) -> bool:
        return self.scopes is None or scope in self.scopes


@dataclass(frozen=True, slots=True)
class AdminToken:
    """An operator's token for the admin API (stored as its SHA-256 only)."""

    id: str
    name: str
    prefix: str
    """The first characters of the token: shown and logged, reveals nothing."""
    created_at: float
    last_used_at: float | None = None
    revoked_at: float | None = None


@dataclass(frozen=True, slots=True)
class NewAuditEntry:
    """An action to write to the audit log: who did what, to which tenant and object."""

    at: float
    actor_kind: str
    """``admin_token``, ``config_token``, ``tenant_key`` or ``cli``."""
    actor_id: str
    tenant_id: str | None
    action: str
    """``<object>.<verb>``: ``tenant.create``, ``tenant.pause``, ``admin_token.revoke``…"""
    target: str
    """The id of the object acted on."""
    request_id: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    """What changed; never a secret."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """A written audit log entry; ``id`` grows with every entry."""

    id: int
    at: float
    actor_kind: str
    actor_id: str
    tenant_id: str | None
    action: str
    target: str
    request_id: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewRecipient:
    idx: int
    address: str
    domain: str
    suppressed: str | None = None
    """The suppression reason when the address is suppressed: the row is stored final
    (state ``suppressed``, a ``suppressed`` event) and never queued."""


@dataclass(frozen=True, slots=True)
class NewMessage:
    """One message to enqueue: the body is stored once, one queue row per recipient."""

    id: str
    tenant_id: str
    mail_from: str
    body: bytes
    recipients: Sequence[NewRecipient]
    created_at: float
    next_attempt_at: float
    expires_at: float
    source: str = "api"
    message_id_header: str = ""
    subject: str = ""
    stream: str = "transactional"
    tags: Sequence[str] = ()
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """Written with the enqueue, in the same transaction."""

    key: str
    request_hash: str
    status: int
    response: str
    created_at: float


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """What an earlier request with the same key stored."""

    request_hash: str
    status: int
    response: str


QueueKey = tuple[str, str]
"""A queue: (tenant id, recipient domain)."""


@dataclass(frozen=True, slots=True)
class QueueDue:
    """A queue with queued recipients and when the first of them falls due."""

    tenant_id: str
    domain: str
    next_attempt_at: float | None
    """None: every queued recipient is held by the caller (it knows their times)."""


@dataclass(frozen=True, slots=True)
class LeaseRequest:
    """Lease up to ``limit`` due recipients of one queue."""

    tenant_id: str
    domain: str
    limit: int


@dataclass(frozen=True, slots=True)
class LeasedRecipient:
    message_id: str
    idx: int
    tenant_id: str
    address: str
    domain: str
    attempts: int
    created_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class LeasedMessage:
    """Leased recipients of one message in one domain, with the body they share."""

    id: str
    tenant_id: str
    mail_from: str
    body: bytes
    message_id_header: str
    recipients: list[LeasedRecipient]
    source: str = "api"
    stream: str = "transactional"


@dataclass(frozen=True, slots=True)
class QueueLease:
    """What one :class:`LeaseRequest` got."""

    tenant_id: str
    domain: str
    messages: list[LeasedMessage]
    count: int
    """Recipients leased (over all ``messages``)."""
    drained: bool = False
    """Fewer than asked were due: the queue has nothing more to lease now."""
    next_due: float | None = None
    """When drained: when its next recipient the caller does not hold falls due (None:
    it has none)."""


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """The outcome of one attempt (or a decision without one) for one leased recipient.

    ``state`` is where the recipient goes; ``QUEUED`` with ``next_attempt_at`` means a
    deferral (or a release when ``counted`` is False). ``event`` is appended to the log
    with ``data`` (reply code, enhanced code, text, MX, IP, ...); None appends nothing
    (a lease handed back unused).
    """

    message_id: str
    idx: int
    tenant_id: str
    address: str
    state: RecipientState
    event: EventType | None
    at: float
    next_attempt_at: float = 0.0
    counted: bool = True
    code: int | None = None
    enhanced: str | None = None
    text: str | None = None
    mx: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    domain: str | None = None
    """The recipient's domain when known: partitioned stores then touch one partition."""
    suppress: str | None = None
    """A suppression reason (``hard_bounce``...) to add for the address with the outcome,
    in the same transaction."""
    suppress_until: float | None = None
    """When that suppression lapses; None: never."""
    owner: str | None = None
    """The node whose lease the attempt ran under. A deferral or release applies only
    while that node still holds the recipient's lease: once it expired and another node
    leased the recipient, the stale holder must not reset the new lease."""
    stream: str = ""
    """The message's stream (``transactional``...) when known; not stored with the
    outcome, but read by observers of outcomes (reputation counts per stream)."""
    source: str = ""
    """Where the message came from (``api``, ``smtp``, ``dsn``) when known; read by
    observers only: a DSN postline sends for a tenant is not the tenant's own mail."""


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    at: float
    tenant_id: str
    type: str
    message_id: str | None
    recipient_idx: int | None
    recipient: str | None
    node_id: str | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EventQuery:
    tenant_id: str
    after: int = 0
    limit: int = 100
    types: Sequence[str] = ()
    message_id: str | None = None
    recipient: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(frozen=True, slots=True)
class RecipientView:
    idx: int
    address: str
    domain: str
    state: RecipientState
    attempts: int
    next_attempt_at: float | None
    expires_at: float
    updated_at: float
    last_code: int | None
    last_enhanced: str | None
    last_text: str | None
    last_mx: str | None
    leased: bool


@dataclass(frozen=True, slots=True)
class MessageView:
    id: str
    tenant_id: str
    created_at: float
    mail_from: str
    subject: str
    message_id_header: str
    source: str
    stream: str
    size: int
    tags: list[str]
    metadata: dict[str, Any]
    recipients: list[RecipientView]
    body_deleted_at: float | None = None
    """When the body was deleted ([retention] bodies); None while it is kept."""


@dataclass(frozen=True, slots=True)
class QueueStat:
    domain: str
    depth: int
    deferred: int
    oldest_at: float
    next_attempt_at: float
    paused: bool


@dataclass(frozen=True, slots=True)
class TenantQueue:
    """One tenant's queue of a domain, as operators see it."""

    tenant_id: str
    depth: int
    deferred: int
    """Queued recipients attempted at least once."""
    due: int
    """Queued recipients due now and not leased, counted up to the cap asked for."""
    oldest_at: float
    next_attempt_at: float


QueueCursor = tuple[float, str, int]
"""Where a walk through one queue's queued recipients stands: the last recipient looked
at, as (created_at, message id, index); :data:`QUEUE_START` before the first."""
QUEUE_START: QueueCursor = (-1.0, "", -1)


@dataclass(frozen=True, slots=True)
class MessageMatch:
    """Queued recipients selected by their message: its stream and/or one of its tags
    (None: any)."""

    stream: str | None = None
    tag: str | None = None

    def __bool__(self) -> bool:
        return self.stream is not None or self.tag is not None

    def matches(self, stream: str, tags: Sequence[str]) -> bool:
        return (self.stream is None or stream == self.stream) and (
            self.tag is None or self.tag in tags
        )


@dataclass(frozen=True, slots=True)
class QueuePause:
    """A row of the pause table: tenant ``*`` holds a domain for every tenant, domain
    ``*`` every domain of a tenant."""

    tenant_id: str
    domain: str
    paused_at: float
    reason: str


@dataclass(frozen=True, slots=True)
class Reroute:
    """An operator's temporary static route: mail to ``domain`` (or to every domain whose
    mail exchangers match the throttle rule or provider ``provider``) goes to ``host``:
    ``port`` until ``until``. Exactly one of ``domain`` and ``provider`` is set."""

    id: str
    domain: str
    provider: str
    host: str
    port: int
    created_at: float
    until: float
    reason: str = ""

    def active(self, now: float) -> bool:
        return self.until > now


@dataclass(frozen=True, slots=True)
class QueueDepths:
    """Queued recipients in the whole store and in its deepest domains (every tenant),
    and when the oldest recipient still queued in each of those domains was accepted."""

    total: int
    top: list[tuple[str, int]]
    oldest: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Suppression:
    """An address the tenant (or, with tenant ``*``, everyone) must not mail."""

    tenant_id: str
    address: str
    reason: str
    created_at: float
    expires_at: float | None = None
    source: str = "api"
    detail: str = ""
    message_id: str | None = None


@dataclass(frozen=True, slots=True)
class DkimKeyRecord:
    """A DKIM key of a sender domain; the private key only ever sealed (encrypted)."""

    selector: str
    algorithm: str
    public_key: str
    private_sealed: bytes
    created_at: float
    state: str = "active"
    """``active`` (signs), ``pending`` (a rotation's key, signing once its record is
    published) or ``retired``."""


@dataclass(frozen=True, slots=True)
class SenderDomain:
    """A domain a tenant sends from, its keys and the last DNS check of its records."""

    tenant_id: str
    domain: str
    created_at: float
    status: str = "pending"
    """``pending`` (never verified), ``verified`` or ``failed`` (was, and no longer is)."""
    verified_at: float | None = None
    checked_at: float | None = None
    check: str = "[]"
    """The last check's per-record results, as JSON."""
    keys: tuple[DkimKeyRecord, ...] = ()


def assemble_domains(
    domain_rows: Sequence[Sequence[Any]], key_rows: Sequence[Sequence[Any]]
) -> list[SenderDomain]:
    """SenderDomain records from rows of ``sender_domains`` and ``dkim_keys`` (both
    backends select the same columns)."""
    keys: dict[tuple[str, str], list[DkimKeyRecord]] = {}
    for t, d, selector, algorithm, public, sealed, created, state in key_rows:
        keys.setdefault((t, d), []).append(
            DkimKeyRecord(selector, algorithm, public, bytes(sealed), created, state)
        )
    return [
        SenderDomain(t, d, created, status, verified, checked, check, tuple(keys.get((t, d), ())))
        for t, d, created, status, verified, checked, check in domain_rows
    ]


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event that changes no recipient row (a complaint, an auto-reply...)."""

    at: float
    tenant_id: str
    type: EventType
    message_id: str | None
    recipient_idx: int | None
    recipient: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A report received by the inbound server, stored before it was acknowledged."""

    id: str
    received_at: float
    mail_from: str
    rcpt_to: list[str]
    peer: str
    body: bytes
    attempts: int = 0


@dataclass(frozen=True, slots=True)
class ReputationCount:
    """Outcomes of one tenant's stream within one time bucket. Stored counts are sums:
    adding a count for an existing (tenant, stream, bucket) adds to it (several nodes
    count the same tenant at once)."""

    tenant_id: str
    stream: str
    bucket: float
    """Start of the bucket (epoch seconds)."""
    delivered: int = 0
    bounced: int = 0
    """Hard bounces (the address or domain does not exist)."""
    complained: int = 0


@dataclass(frozen=True, slots=True)
class ActivityCount:
    """Recipients of every tenant accepted and with an outcome within one minute. Stored
    counts are sums: adding a count for an existing bucket adds to it (every node adds
    its own share)."""

    bucket: float
    """Start of the minute (epoch seconds)."""
    accepted: int = 0
    delivered: int = 0
    deferred: int = 0
    bounced: int = 0
    """Final failures (bounced or expired), hard and soft."""
    complained: int = 0


@dataclass(frozen=True, slots=True)
class ReputationTotals:
    """Sums of the counts of one tenant's stream over a window."""

    tenant_id: str
    stream: str
    delivered: int
    bounced: int
    complained: int


@dataclass(frozen=True, slots=True)
class TenantStatus:
    """Where a tenant stands with its sending reputation (no stored row: ``ok``)."""

    tenant_id: str
    status: str
    """``ok``, ``warned`` (a rate crossed a warning threshold) or ``paused`` (no new
    mail is accepted and queued mail is held until an operator resumes the tenant)."""
    reason: str = ""
    changed_at: float = 0.0
    changed_by: str = ""
    """``reputation`` (the automatic judgement) or ``operator``."""
    judged_since: float = 0.0
    """Only counts of buckets starting at or after this time are judged (set when an
    operator resumes the tenant, so the outcomes that paused it are not judged again)."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """A tenant's webhook endpoint, with where its delivery stands."""

    id: str
    tenant_id: str
    url: str
    events: tuple[str, ...]
    """Event types sent; empty: every type."""
    description: str
    batch_size: int
    secret: str
    old_secret: str | None
    """The secret before the last rotation: it keeps signing until ``old_secret_until``."""
    old_secret_until: float | None
    status: str
    """``active`` or ``disabled`` (by the tenant, or by a 410 Gone)."""
    disabled_reason: str
    created_at: float
    updated_at: float
    cursor: int
    """Id of the last event handled (delivered or given up on, dead)."""
    batch_id: str | None = None
    """The batch being retried: its ``webhook-id``; it ends at event ``batch_last``."""
    batch_last: int | None = None
    batch_started: float | None = None
    attempts: int = 0
    next_attempt_at: float = 0.0
    lease_owner: str | None = None
    lease_until: float | None = None


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One batch POSTed to an endpoint: its last attempt and how it ended."""

    id: str
    """The ``webhook-id`` header: the same on every attempt of the batch."""
    webhook_id: str
    tenant_id: str
    status: str
    """``ok``, ``failed`` (retrying, or the endpoint was disabled) or ``dead``."""
    first_event: int
    last_event: int
    count: int
    attempts: int
    created_at: float
    updated_at: float
    response_code: int | None
    latency_ms: float | None
    error: str


WEBHOOK_FIELDS = frozenset(
    {
        "url",
        "events",
        "description",
        "batch_size",
        "secret",
        "old_secret",
        "old_secret_until",
        "status",
        "disabled_reason",
        "cursor",
        "batch_id",
        "batch_last",
        "batch_started",
        "attempts",
        "next_attempt_at",
    }
)
"""Fields :meth:`WebhookStore.update_webhook` may change."""


class TenantStore(Protocol):
    """Tenants, their API keys and their sending status."""

    async def create_tenant(self, name: str) -> Tenant: ...

    async def get_tenant(
        self, *, name: str | None = None, id: str | None = None
    ) -> Tenant | None: ...

    async def list_tenants(self, *, deleted: bool = False) -> list[Tenant]:
        """Every tenant in name order; with ``deleted``, only the deleted ones."""
        ...

    async def delete_tenant(self, tenant_id: str, *, now: float) -> TenantRemoval | None:
        """Delete a tenant, in one short transaction: mark it deleted, revoke its keys,
        pause it (status ``paused``: new mail refused, every queue held), remove its
        sender domains (and DKIM keys), webhooks and its own queue pauses. None when there
        is no such tenant or it was deleted already. Its queued mail is cancelled with
        :meth:`QueueStore.cancel_queued`, its suppressions removed with
        :meth:`purge_tenant_data`; its messages and events stay for the retention period.
        """
        ...

    async def purge_tenant_data(self, tenant_id: str, *, limit: int = 1000) -> int:
        """Remove up to ``limit`` of a tenant's suppressions and soft-bounce runs in one
        short transaction; how many (call again until it returns less than ``limit``)."""
        ...

    async def add_api_key(
        self,
        tenant_id: str,
        key_hash: str,
        prefix: str,
        *,
        name: str = "",
        scopes: Collection[str] | None = None,
        rate: int | None = None,
        burst: int | None = None,
    ) -> ApiKey:
        """Store a key by its hash; ``scopes`` None gives it every tenant scope; ``rate``
        and ``burst`` its own rate limit (None: the configured default)."""
        ...

    async def tenant_limits(self, tenant_id: str | None = None) -> dict[str, LimitOverrides]:
        """The limits stored for one tenant (or for every tenant), by tenant id; a tenant
        without any is absent."""
        ...

    async def set_tenant_limits(self, tenant_id: str, limits: LimitOverrides) -> bool:
        """Replace a tenant's stored limits (every field; None: the default); False when
        there is no such tenant."""
        ...

    async def usage(self, tenant_id: str, *, now: float) -> Usage:
        """Recipients accepted for the tenant on the UTC day of ``now`` and in its month
        (calls with a quota and without are counted alike; delivery reports postline
        sends itself are not)."""
        ...

    async def tenant_for_key(self, key_hash: str) -> Tenant | None: ...

    async def key_identity(self, key_hash: str) -> KeyIdentity | None:
        """The live (unrevoked) key with this hash, its tenant and scopes."""
        ...

    async def api_keys(self, tenant_id: str) -> list[ApiKey]:
        """A tenant's keys, revoked ones too, oldest first."""
        ...

    async def revoke_api_key(self, tenant_id: str, prefix: str) -> bool: ...

    async def revoke_api_key_id(self, tenant_id: str, key_id: str, *, now: float) -> bool:
        """Revoke the tenant's live key with this id; False if there is none."""
        ...

    async def update_api_key(
        self,
        tenant_id: str,
        key_id: str,
        *,
        scopes: Collection[str] | None,
        rate: int | None,
        burst: int | None,
    ) -> bool:
        """Replace the scopes and the own rate limit of the tenant's live key with this id
        (None: every tenant scope, the configured default rate or burst); False if there is
        no such live key."""
        ...

    async def touch_api_key(self, key_id: str, *, now: float) -> None:
        """Note that the key was used at ``now``."""
        ...

    async def tenant_statuses(self, tenant_id: str | None = None) -> list[TenantStatus]:
        """The stored statuses (of one tenant or of all); a tenant without one is ``ok``."""
        ...

    async def set_tenant_status(
        self,
        status: TenantStatus,
        *,
        expected: Collection[str] | None = None,
        event: NewEvent | None = None,
        node_id: str = "",
    ) -> bool:
        """Store a tenant's status, in one transaction with ``event`` and its queue hold.

        With ``expected``, only when the current status (``ok`` without a row) is one of
        them; returns whether it was stored. A ``paused`` status holds every queue of the
        tenant (a pause of domain ``*`` in :meth:`paused_queues`, which :meth:`lease`
        honours); any other status lifts that hold.
        """
        ...


class QueueStore(Protocol):
    """Ingest and the queue: messages in, leases out, outcomes back, counts and pauses."""

    async def enqueue(
        self,
        messages: Sequence[NewMessage],
        *,
        idempotency: IdempotencyClaim | None = None,
        tenant_id: str | None = None,
        node_id: str = "",
        leased: Mapping[str, Collection[int]] | None = None,
        lease_until: float = 0.0,
        quota: Quota | None = None,
    ) -> IdempotencyRecord | None:
        """Store messages, recipients and ``accepted`` events durably, in one transaction.

        The same transaction adds the recipients (of messages not of source ``dsn``) to
        the tenant's usage of the UTC day of the first message's ``created_at``. With
        ``quota``, a call that would take that day or its month over a limit stores
        nothing and raises :class:`~postline.errors.QuotaExceeded` (a replayed
        idempotency key answers its record instead, counting nothing).

        With ``idempotency`` (and ``tenant_id``), an existing record for the key is
        returned instead and nothing is stored; otherwise the claim is stored with the
        messages and ``None`` is returned. ``leased`` (message id → recipient indexes)
        names recipients that are stored already leased to ``node_id`` until
        ``lease_until``: the node hands them to its delivery engine without a lease round.
        """
        ...

    async def get_idempotency(self, tenant_id: str, key: str) -> IdempotencyRecord | None: ...

    async def purge_idempotency(self, older_than: float) -> int: ...

    async def due_queues(
        self, *, owner: str, limit: int = 5000, after: QueueKey = ("", "")
    ) -> list[QueueDue]:
        """Queues with queued recipients, not paused, and when the first recipient of each
        that ``owner`` does not hold falls due (leases of other nodes count: a dead node's
        work is due when its lease ends; None when ``owner`` holds them all).

        One page, in (tenant, domain) order, of the queues after ``after``: call again
        with the last queue of a full page to get the next one. The cost is one index
        probe per queue, never a scan of the recipients.
        """
        ...

    async def lease_many(
        self, requests: Sequence[LeaseRequest], *, now: float, lease_time: float, owner: str
    ) -> list[QueueLease]:
        """Lease due recipients of several queues at once, one :class:`QueueLease` per
        request in order (oldest due first within each queue).

        Paused queues (tenant, domain), domains paused for every tenant (tenant ``*``)
        and tenants paused as a whole (domain ``*``) give nothing. Recipients of one
        message come back together in one :class:`LeasedMessage`.
        """
        ...

    async def lease(
        self, domain: str, *, now: float, limit: int, lease_time: float, owner: str
    ) -> list[LeasedMessage]:
        """Lease up to ``limit`` due recipients of ``domain``, every tenant's (oldest due
        first). For tools and tests: the delivery engine leases with :meth:`lease_many`.

        Pauses are honoured as in :meth:`lease_many`.
        """
        ...

    async def record(self, records: Sequence[AttemptRecord], *, node_id: str = "") -> None:
        """Apply attempt outcomes and append their events, durably.

        A deferral or release only applies to a recipient still queued (a cancelled one
        stays cancelled) and, when the record names an ``owner``, still leased by it;
        delivered, bounced and expired outcomes always apply.
        """
        ...

    async def renew_leases(
        self, owner: str, refs: Sequence[tuple[str, int, str]], *, until: float
    ) -> list[tuple[str, int]]:
        """Extend ``owner``'s leases of ``refs`` (message id, index, domain) to ``until``.

        Returns the (message id, index) pairs renewed: recipients no longer queued or no
        longer leased by ``owner`` are left alone and not returned.
        """
        ...

    async def release_leases(self, owner: str, *, now: float) -> int:
        """Hand back every queued recipient leased by ``owner`` (due at ``now``).

        For a node starting up: whatever it leased before it stopped is not in its memory.
        """
        ...

    async def cancel(
        self, tenant_id: str, message_id: str, *, now: float, node_id: str = ""
    ) -> int:
        """Cancel every queued recipient of a message; returns how many."""
        ...

    async def queue_stats(
        self,
        tenant_id: str | None = None,
        *,
        after: str = "",
        limit: int = 1000,
        domain: str | None = None,
    ) -> list[QueueStat]:
        """Queues in domain order, one page of up to ``limit`` after ``after`` (or only
        ``domain``): a tenant's, with the domains paused for it that have nothing queued;
        ``tenant_id`` None sums every tenant's queue of each domain. Read from counters
        and one index probe per value shown: the cost follows the page, not the queue."""
        ...

    async def queue_depths(self, top: int = 50) -> QueueDepths:
        """Queued recipients in all, and the ``top`` deepest domains (for metrics)."""
        ...

    async def state_counts(self) -> dict[str, int]:
        """Recipients per state over the whole store (for metrics and the demo), from
        counters kept as recipients change state."""
        ...

    async def set_paused(
        self, tenant_id: str, domain: str, paused: bool, *, now: float, reason: str = ""
    ) -> None: ...

    async def lift_pause(self, tenant_id: str, domain: str, *, reason: str) -> bool:
        """Remove the pause of (tenant, domain) only while its reason is still ``reason``
        (a timed hold whose time is up, not one set since); whether this call removed it.
        Of several nodes lifting the same pause at once, one gets True."""
        ...

    async def paused_queues(self) -> set[tuple[str, str]]:
        """Every paused (tenant id, domain); tenant id ``*`` pauses a domain for all,
        domain ``*`` every domain of a tenant (see :meth:`set_tenant_status`)."""
        ...

    async def queue_pauses(self) -> list[QueuePause]:
        """Every pause with when and why it was set, in (tenant, domain) order."""
        ...

    async def domain_queues(
        self, domain: str, *, now: float, due_cap: int = 10_000
    ) -> list[TenantQueue]:
        """Every tenant's queue of ``domain`` with something queued, in tenant order: the
        counts from counters, age and next attempt by one index probe each, and the
        recipients due at ``now`` counted in the index up to ``due_cap``."""
        ...

    async def retry_queued(
        self, tenant_id: str, domain: str, *, now: float, limit: int = 1000
    ) -> int:
        """Make up to ``limit`` queued, not leased recipients of one queue that are not
        due yet due at ``now``, in one short transaction; returns how many (call again
        until it returns less than ``limit``)."""
        ...

    async def bounce_queued(
        self,
        tenant_id: str,
        domain: str,
        *,
        now: float,
        data: Mapping[str, Any],
        text: str = "",
        node_id: str = "",
        limit: int = 1000,
    ) -> int:
        """Bounce up to ``limit`` queued, not leased recipients of one queue (a final
        failure decided by an operator), each with a ``bounced`` event carrying ``data``,
        in one short transaction; returns how many. Adds no suppression and counts
        nothing towards the tenant's reputation."""
        ...

    async def retry_matching(
        self,
        tenant_id: str,
        domain: str,
        match: MessageMatch,
        *,
        now: float,
        after: QueueCursor = QUEUE_START,
        limit: int = 1000,
    ) -> tuple[int, QueueCursor | None]:
        """:meth:`retry_queued` for the recipients whose message ``match`` selects: looks
        at up to ``limit`` queued recipients of one queue after ``after`` (oldest first)
        in one short transaction, whatever their message, so a call's work is bounded
        however few match. Returns how many it made due and where to go on from (None:
        the end of the queue)."""
        ...

    async def bounce_matching(
        self,
        tenant_id: str,
        domain: str,
        match: MessageMatch,
        *,
        now: float,
        data: Mapping[str, Any],
        text: str = "",
        node_id: str = "",
        after: QueueCursor = QUEUE_START,
        limit: int = 1000,
    ) -> tuple[int, QueueCursor | None]:
        """:meth:`bounce_queued` for the recipients whose message ``match`` selects, a
        bounded walk like :meth:`retry_matching`."""
        ...

    async def cancel_queued(
        self, tenant_id: str, domain: str, *, now: float, node_id: str = "", limit: int = 1000
    ) -> int:
        """Cancel up to ``limit`` queued recipients of one queue, leased ones too (as
        :meth:`cancel` does for a message), each with a ``cancelled`` event, in one short
        transaction; returns how many (call again until it returns less than ``limit``).
        A delivery on the wire still records its outcome; a deferral is not applied."""
        ...

    async def listen_due(self, callback: Callable[[frozenset[QueueKey]], None]) -> None:
        """Call ``callback`` with queues other writers (nodes) announce work for.

        An empty set means "rescan everything" (after a lost connection). A hint only:
        callers keep polling :meth:`due_queues`, since nobody announces expiring leases.
        A single-node store may never call back.
        """
        ...

    async def drop_empty_queues(self) -> int:
        """Forget the counters of queues with nothing queued (housekeeping)."""
        ...


class EventLog(Protocol):
    """What happened to messages: their views and the append-only event log."""

    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageView | None:
        """A message of ``tenant_id``; None looks in every tenant (inbound reports only,
        which name a message by its signed id)."""
        ...

    async def events(self, query: EventQuery) -> list[Event]: ...

    async def find_messages(
        self,
        *,
        recipient: str | None = None,
        tag: str | None = None,
        scan: int = 10_000,
        limit: int = 50,
    ) -> list[str]:
        """Ids of messages (every tenant's) with ``recipient`` (any case) and ``tag`` among
        the latest ``scan`` messages, newest first, at most ``limit``: a bounded walk of
        the creation-time index, one recipient probe per message looked at."""
        ...

    async def append_events(self, events: Sequence[NewEvent], *, node_id: str = "") -> None: ...


class SuppressionStore(Protocol):
    """Addresses not to send to, per tenant or global."""

    async def suppressed(
        self, tenant_id: str, addresses: Sequence[str], *, now: float
    ) -> dict[str, Suppression]:
        """The live suppressions (the tenant's or global) of ``addresses``, by lower-cased
        address."""
        ...

    async def add_suppressions(self, entries: Sequence[Suppression]) -> int:
        """Add (or replace) entries; addresses are stored lower-cased. Returns how many."""
        ...

    async def remove_suppression(self, tenant_id: str, address: str) -> bool: ...

    async def list_suppressions(
        self,
        tenant_id: str,
        *,
        after: str = "",
        limit: int = 100,
        reason: str | None = None,
        now: float,
    ) -> list[Suppression]:
        """Live suppressions of a tenant in address order, after ``after``."""
        ...

    async def note_soft_bounces(
        self,
        tenant_id: str,
        addresses: Sequence[str],
        *,
        now: float,
        window: float,
        limit: int,
        expires_at: float | None,
    ) -> list[str]:
        """Count a soft bounce for each address (a run older than ``window`` starts
        again); the addresses that reached ``limit`` are suppressed (reason
        ``soft_bounce``) and returned."""
        ...


class InboundStore(Protocol):
    """Received reports (bounces, complaints) waiting to be processed."""

    async def store_inbound(self, message: InboundMessage) -> None:
        """Durably keep a received report (before the server answers 250)."""
        ...

    async def pending_inbound(
        self, limit: int = 100, *, now: float, claim_for: float = 60.0
    ) -> list[InboundMessage]:
        """Claim up to ``limit`` unprocessed reports for ``claim_for`` seconds (several
        nodes share the work; a claim that lapses, e.g. its node died, is taken again)."""
        ...

    async def finish_inbound(
        self, inbound_id: str, *, result: str, now: float, state: str = "done"
    ) -> None:
        """Record a processing attempt: ``done``, ``failed`` (given up) or still
        ``pending`` (retried later; attempts counted)."""
        ...


class ReputationStore(Protocol):
    """Outcome counts per tenant, stream and time bucket."""

    async def add_reputation_counts(self, counts: Sequence[ReputationCount]) -> None:
        """Add counts to the stored ones of the same (tenant, stream, bucket)."""
        ...

    async def reputation_totals(
        self, *, since: float, tenant_id: str | None = None
    ) -> list[ReputationTotals]:
        """Per (tenant, stream), the sums of the buckets starting at or after ``since``
        and at or after the tenant's ``judged_since``; one tenant or all of them."""
        ...

    async def purge_reputation_counts(self, older_than: float) -> int:
        """Drop buckets starting before ``older_than``; returns how many."""
        ...


class ActivityStore(Protocol):
    """Traffic per minute over every tenant (the operator's charts): one small row a
    minute, so reading hours of it never touches the message or event tables."""

    async def add_activity(self, counts: Sequence[ActivityCount]) -> None:
        """Add counts to the stored ones of the same minute."""
        ...

    async def activity(self, *, since: float) -> list[ActivityCount]:
        """The minutes starting at or after ``since``, oldest first (minutes without
        traffic have no row)."""
        ...

    async def purge_activity(self, older_than: float) -> int:
        """Drop minutes starting before ``older_than``; returns how many."""
        ...


class DomainStore(Protocol):
    """Sender domains and their DKIM keys."""

    async def add_sender_domain(self, domain: SenderDomain) -> bool:
        """Add a domain with its keys; False when the tenant has it already."""
        ...

    async def get_sender_domain(self, tenant_id: str, domain: str) -> SenderDomain | None: ...

    async def list_sender_domains(self, tenant_id: str | None = None) -> list[SenderDomain]:
        """A tenant's domains in name order; None: every tenant's (the signing cache)."""
        ...

    async def update_sender_domain(
        self,
        tenant_id: str,
        domain: str,
        *,
        status: str,
        checked_at: float,
        verified_at: float | None,
        check: str,
        key_states: Mapping[str, str] | None = None,
    ) -> bool:
        """Record a check; ``key_states`` moves keys (by selector) between states."""
        ...

    async def add_dkim_key(self, tenant_id: str, domain: str, key: DkimKeyRecord) -> bool: ...

    async def remove_sender_domain(self, tenant_id: str, domain: str) -> bool: ...


class WebhookStore(Protocol):
    """Tenants' webhook endpoints, leased to the node that sends their events, and the
    log of what was sent."""

    async def create_webhook(self, hook: Webhook) -> None: ...

    async def get_webhook(self, tenant_id: str | None, webhook_id: str) -> Webhook | None:
        """An endpoint of ``tenant_id`` (None: of any tenant)."""
        ...

    async def list_webhooks(self, tenant_id: str | None = None) -> list[Webhook]:
        """A tenant's endpoints (None: every tenant's), oldest first."""
        ...

    async def update_webhook(
        self, tenant_id: str, webhook_id: str, changes: Mapping[str, Any], *, now: float
    ) -> Webhook | None:
        """Change fields named in :data:`WEBHOOK_FIELDS`; None when there is no such
        endpoint. A lease is left alone: the node holding it sees the change on its next
        read."""
        ...

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        """Remove an endpoint and its delivery log."""
        ...

    async def claim_webhooks(
        self, owner: str, *, now: float, lease_time: float, limit: int
    ) -> list[Webhook]:
        """Lease up to ``limit`` active endpoints due at ``now`` that nobody else holds
        (leases that ran out count as free) to ``owner`` until ``now + lease_time``."""
        ...

    async def renew_webhooks(
        self, owner: str, webhook_ids: Sequence[str], *, until: float
    ) -> list[str]:
        """Extend ``owner``'s leases; returns the ids still held (the others were taken
        over, disabled or deleted)."""
        ...

    async def release_webhooks(self, owner: str, webhook_ids: Sequence[str] | None = None) -> int:
        """Hand back ``owner``'s leases (all of them with None); returns how many."""
        ...

    async def begin_webhook_batch(
        self, webhook_id: str, owner: str, *, batch_id: str, last: int, now: float
    ) -> bool:
        """Remember the batch about to be sent (so a retry, on any node, sends the same
        events under the same id) — needed only for a batch that a new event could still
        change (one shorter than the endpoint's batch size); False when ``owner`` no
        longer holds the endpoint."""
        ...

    async def finish_webhook_batch(
        self,
        webhook_id: str,
        owner: str,
        delivery: WebhookDelivery,
        *,
        done: bool,
        from_cursor: int,
        next_attempt_at: float,
        disable: str | None = None,
    ) -> bool:
        """Log an attempt and move the endpoint on, in one transaction: ``done`` (sent, or
        dead) moves the cursor to the batch's last event; otherwise the batch
        (``delivery.id``, ending at ``delivery.last_event``) is remembered for a retry at
        ``next_attempt_at``. ``disable`` disables the endpoint with that reason and hands
        back its lease. The batch is the one chosen after cursor ``from_cursor``: when the
        endpoint has moved on (a replay moved its cursor, or it remembers another batch),
        only the attempt is logged. False when ``owner`` no longer holds the endpoint
        (nothing is written)."""
        ...

    async def webhook_deliveries(
        self,
        tenant_id: str,
        webhook_id: str,
        *,
        status: str | None = None,
        before: float | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        """The endpoint's logged batches, newest first (last attempt before ``before``)."""
        ...

    async def webhook_delivery_counts(self, webhook_id: str) -> dict[str, int]:
        """Logged batches of an endpoint per status."""
        ...

    async def message_labels(
        self, message_ids: Collection[str]
    ) -> dict[str, tuple[list[str], dict[str, Any]]]:
        """The ``tags`` and ``metadata`` of messages, by id (missing ids are left out)."""
        ...

    async def latest_event_id(self, tenant_id: str) -> int:
        """The id after which a tenant's events recorded from now on will be read by
        :meth:`EventLog.events` (0 before any); an index probe, not a scan."""
        ...


class ControlStore(Protocol):
    """Admin tokens and the audit log of operator and tenant actions."""

    async def add_admin_token(self, name: str, token_hash: str, prefix: str) -> AdminToken:
        """Keep a new token (its SHA-256 ``token_hash``); :class:`IntegrityViolation` when
        the hash is known already."""
        ...

    async def admin_tokens(self) -> list[AdminToken]:
        """Every token, revoked ones too, oldest first."""
        ...

    async def admin_token_for_hash(self, token_hash: str) -> AdminToken | None:
        """The live (not revoked) token with this hash."""
        ...

    async def touch_admin_token(self, token_id: str, *, now: float) -> None:
        """Note that a token was used at ``now``."""
        ...

    async def revoke_admin_token(self, token_id: str, *, now: float) -> bool:
        """Revoke a live token; False when there is none with that id."""
        ...

    async def append_audit(self, entry: NewAuditEntry) -> int:
        """Write an entry durably; returns its id."""
        ...

    async def add_reroute(self, reroute: Reroute) -> None:
        """Store an operator's reroute; one with the same domain and provider is replaced
        in the same transaction."""
        ...

    async def reroutes(self) -> list[Reroute]:
        """Every stored reroute (expired ones too, until removed), oldest first."""
        ...

    async def remove_reroute(self, reroute_id: str) -> Reroute | None:
        """Remove a reroute; the removed row, None if there was none with that id."""
        ...

    async def audit_entries(
        self, *, tenant_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[AuditEntry]:
        """Up to ``limit`` entries with ids above ``after``, in id order: those of
        ``tenant_id``, or every entry when None."""
        ...


class RetentionStore(Protocol):
    """Deleting what is past its retention, in short transactions."""

    async def purge_bodies(self, before: float, *, limit: int, now: float) -> int:
        """Delete the bodies of up to ``limit`` messages whose recipients all became final
        before ``before`` (the message, its recipients and its events stay); returns how
        many."""
        ...

    async def purge_messages(self, before: float, *, limit: int) -> int:
        """Delete up to ``limit`` messages, with their recipients, whose recipients all
        became final before ``before``; returns how many messages."""
        ...

    async def purge_events(self, before: float, *, limit: int) -> int:
        """Delete events (and webhook delivery log rows) recorded before ``before``, about
        ``limit`` rows at a time; returns how many."""
        ...

    async def purge_inbound(self, before: float, *, limit: int) -> int:
        """Delete processed inbound reports received before ``before``; returns how many."""
        ...

    async def compact(self) -> int:
        """Hand space freed by deletions back to the file system where the backend does
        that itself (SQLite: incremental vacuum, a bounded step); returns bytes freed."""
        ...

    async def size_on_disk(self) -> int:
        """Bytes the store takes on disk (files, or the database's relations)."""
        ...


class Store(
    TenantStore,
    QueueStore,
    EventLog,
    SuppressionStore,
    InboundStore,
    ReputationStore,
    ActivityStore,
    DomainStore,
    WebhookStore,
    RetentionStore,
    ControlStore,
    Protocol,
):
    """Durable state of a node (or of a fleet, for shared backends): every role.

    Components take the role they use (a :class:`QueueStore`, an :class:`EventLog`, …);
    the node builds one object that plays them all.
    """

    health: StoreHealth
    """Whether the store answers, as this process sees it: every caller that meets
    :class:`~postline.errors.StoreUnavailable` reports it here (see
    :mod:`postline.store.health`)."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """One cheap round trip that needs the store as mail does (PostgreSQL: a query on
        a pooled connection; SQLite: an empty write transaction); raises
        :class:`~postline.errors.StoreUnavailable` when it cannot. Used only by the health
        probe while the store is down."""
        ...
