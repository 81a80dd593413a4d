"""The one path into the queue, shared by the HTTP API and SMTP submission.

validate → render (or fix up raw/SMTP bytes) → ``Store.enqueue`` (one durable transaction)
→ tell the local scheduler which domains have new work. What a tenant submits (HTTP or
SMTP) passes its rate limits first and its quotas in the store's transaction
(:class:`SendLimits`, implemented by ``postline.limits.Limiter``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from postline.errors import QuotaExceeded, RateLimited, StoreUnavailable, ValidationError
from postline.ingest.addresses import InvalidAddress, parse_address
from postline.ingest.render import HeaderInjection, fix_raw, render_message
from postline.ingest.schema import MessageIn
from postline.metrics import Metrics
from postline.model.ids import new_id
from postline.store.base import (
    IdempotencyClaim,
    IdempotencyRecord,
    KeyIdentity,
    NewMessage,
    NewRecipient,
    QueueKey,
    Quota,
    Store,
    Suppression,
)

__all__ = ["Dispatcher", "IngestLimits", "Ingestor", "SendLimits", "SendingGate"]


class Dispatcher(Protocol):
    """What ingest needs from a delivery engine (implemented by ``DeliveryEngine``).

    ``claim`` picks recipients the engine can start on at once; they are stored leased
    to this node, and ``take`` hands them over after the commit (``unclaim`` when the
    commit failed or replayed). ``notify`` wakes the other queues (tenant, domain) with
    due mail, ``schedule`` a queue whose mail is due later (``send_at``).
    """

    def claim(self, messages: Sequence[NewMessage], *, now: float) -> dict[str, dict[int, Any]]: ...

    def take(
        self,
        messages: Sequence[NewMessage],
        claims: Mapping[str, Mapping[int, Any]],
        *,
        lease_until: float,
    ) -> None: ...

    def unclaim(self, claims: Mapping[str, Mapping[int, Any]]) -> None: ...

    def notify(self, queues: Iterable[QueueKey]) -> None: ...

    def schedule(self, queue: QueueKey, at: float) -> None: ...


class SendingGate(Protocol):
    """Whether a tenant may send now (implemented by ``postline.reputation.Reputation``)."""

    async def check(self, tenant_id: str) -> None:
        """Raise :class:`~postline.errors.SendingPaused` when the tenant is paused."""
        ...


class SendLimits(Protocol):
    """A tenant's rate limits and quotas (implemented by ``postline.limits.Limiter``)."""

    async def admit(self, tenant_id: str, key: KeyIdentity | None, n: int) -> Quota | None:
        """Take ``n`` recipients from the tenant's (and the key's) rate limits or raise
        :class:`~postline.errors.RateLimited`; the quota the enqueue is held to."""
        ...


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_recipients: int = 1000
    max_age: float = 3 * 86400.0
    max_scheduled_ahead: float = 30 * 86400.0
    max_message_size: int = 26_214_400


class Ingestor:
    """Builds queue entries from API or SMTP input and enqueues them durably."""

    def __init__(
        self,
        store: Store,
        *,
        node_id: str,
        hostname: str,
        limits: IngestLimits = IngestLimits(),
        dispatcher: Dispatcher | None = None,
        metrics: Metrics | None = None,
        lease_time: float = 300.0,
        gate: SendingGate | None = None,
        ack_budget: float = 5.0,
        send_limits: SendLimits | None = None,
    ) -> None:
        self.gate = gate
        self.send_limits = send_limits
        self.metrics = metrics
        self.lease_time = lease_time
        self.store = store
        self.node_id = node_id
        self.hostname = hostname
        self.limits = limits
        self._dispatcher = dispatcher
        # Raises ValidationError when a tenant may not send from a domain (unverified
        # sender domains; see postline.domains).
        self.sender_check: Callable[[str, str], None] | None = None
        # Observer of accepted recipients (the per-minute traffic counts): their number.
        self.on_accepted: Callable[[int], None] | None = None
        self.accepted_messages = 0
        self.accepted_recipients = 0
        # Writes the store refused (disk full, database down); the store's health
        # (Store.health) has the rest: what failed, since when, what was refused.
        self.refused_writes = 0
        # Acknowledgement latency (monotonic times): writes in progress by start, and
        # when the last write that took longer than ack_budget finished.
        self.ack_budget = ack_budget
        self._writing: dict[int, float] = {}
        self._writes = 0
        self._slow_at: float | None = None

    # -- building --------------------------------------------------------------------
    def _times(self, send_at: float | None, now: float) -> tuple[float, float]:
        due = now
        if send_at is not None:
            if send_at - now > self.limits.max_scheduled_ahead:
                raise ValidationError(
                    "send_at is too far in the future",
                    field="send_at",
                    fix=f"schedule at most {self.limits.max_scheduled_ahead / 86400:.0f} days "
                    "ahead",
                )
            due = max(now, send_at)
        return due, due + self.limits.max_age

    def _recipients(self, addresses: Sequence[str], field: str) -> list[NewRecipient]:
        if len(addresses) > self.limits.max_recipients:
            raise ValidationError(
                f"{len(addresses)} recipients is more than the limit of "
                f"{self.limits.max_recipients}",
                field=field,
                fix="split the recipients over several messages or use the batch endpoint",
            )
        out = []
        for i, raw in enumerate(addresses):
            try:
                a = parse_address(raw)
            except InvalidAddress as exc:
                raise ValidationError(str(exc), field=field, fix="correct the address") from exc
            out.append(NewRecipient(i, a.address, a.domain))
        return out

    def _message_id(self, msg_id: str, sender_domain: str) -> str:
        return f"<{msg_id}@{sender_domain or self.hostname}>"

    def build_api_message(
        self, tenant_id: str, m: MessageIn, *, now: float, check_sender: bool = True
    ) -> NewMessage:
        """A queue entry from a validated API submission. ``check_sender=False`` skips
        :attr:`sender_check` (the pre-flight check reports it as a finding instead)."""
        msg_id = new_id()
        recipients = self._recipients(m.all_recipients(), "to")
        due, expires = self._times(m.send_at.timestamp() if m.send_at else None, now)
        if m.raw is not None:
            try:
                body, mid = fix_raw(
                    m.raw_bytes(),
                    message_id=self._message_id(msg_id, self._domain_of(m)),
                    date=now,
                    postline_id=msg_id,
                )
            except ValueError as exc:
                raise ValidationError(
                    f"raw: {exc}", field="raw", fix="send a complete RFC 5322 message"
                ) from exc
            mail_from = m.from_.email if m.from_ else self._raw_from(body)
            subject = ""
        else:
            assert m.from_ is not None
            mail_from = m.from_.email
            mid = self._message_id(msg_id, mail_from.rpartition("@")[2])
            try:
                rendered = render_message(
                    message_id=mid,
                    date=now,
                    from_=(m.from_.email, m.from_.name),
                    to=[(a.email, a.name) for a in m.to],
                    cc=[(a.email, a.name) for a in m.cc],
                    reply_to=[(a.email, a.name) for a in m.reply_to],
                    subject=m.subject or "",
                    text=m.text,
                    html=m.html,
                    headers=list(m.headers.items()),
                    postline_id=msg_id,
                )
            except HeaderInjection as exc:
                raise ValidationError(str(exc), field="headers", fix="remove line breaks") from exc
            body = rendered.body
            subject = m.subject or ""
        if check_sender and self.sender_check is not None:
            self.sender_check(tenant_id, mail_from.rpartition("@")[2])
        if len(body) > self.limits.max_message_size:
            what = "the message" if m.raw is not None else "the message as sent (headers, "
            if m.raw is None:
                what += "text, HTML and attachments, encoded)"
            raise ValidationError(
                f"{what} is {len(body):,} bytes, more than this node's limit of "
                f"{self.limits.max_message_size:,} bytes ([submission] max_message_size)",
                field="raw" if m.raw is not None else None,
                fix="make the message smaller (link to large files instead of attaching them)",
            )
        return NewMessage(
            id=msg_id,
            tenant_id=tenant_id,
            mail_from=mail_from,
            body=body,
            recipients=recipients,
            created_at=now,
            next_attempt_at=due,
            expires_at=expires,
            source="api",
            message_id_header=mid,
            subject=subject[:998],
            stream=m.stream,
            tags=m.tags,
            metadata=dict(m.metadata),
        )

    def _domain_of(self, m: MessageIn) -> str:
        return m.from_.email.rpartition("@")[2] if m.from_ else ""

    def _raw_from(self, body: bytes) -> str:
        from email.parser import BytesHeaderParser
        from email.utils import parseaddr

        headers = BytesHeaderParser().parsebytes(body)
        value = headers.get("From")
        if value is None:
            raise ValidationError(
                "raw has no From header and no 'from' was given",
                field="from",
                fix="add a From header to the message or give 'from'",
            )
        _, addr = parseaddr(str(value))
        try:
            return parse_address(addr).address
        except InvalidAddress as exc:
            raise ValidationError(
                f"the From header of raw is not usable: {exc}",
                field="from",
                fix="give 'from' explicitly",
            ) from exc

    def build_smtp_message(
        self,
        tenant_id: str,
        *,
        mail_from: str,
        recipients: Sequence[str],
        data: bytes,
        received: str,
        now: float | None = None,
    ) -> NewMessage:
        """A queue entry from an SMTP submission (envelope already checked by the server)."""
        now = time.time() if now is None else now
        msg_id = new_id()
        rcpts = self._recipients(recipients, "RCPT TO")
        sender_domain = mail_from.rpartition("@")[2]
        body, mid = fix_raw(
            data,
            message_id=self._message_id(msg_id, sender_domain),
            date=now,
            postline_id=msg_id,
            prepend=[received] if received else (),
        )
        subject = ""
        return NewMessage(
            id=msg_id,
            tenant_id=tenant_id,
            mail_from=mail_from,
            body=body,
            recipients=rcpts,
            created_at=now,
            next_attempt_at=now,
            expires_at=now + self.limits.max_age,
            source="smtp",
            message_id_header=mid,
            subject=subject,
        )

    def build_report_message(
        self, tenant_id: str, *, to: str, body: bytes, now: float
    ) -> NewMessage:
        """A delivery report (DSN) postline itself sends: null return path, source
        ``dsn`` (so it is never answered by another report), the body as built."""
        msg_id = new_id()
        rcpts = self._recipients([to], "to")
        body, mid = fix_raw(
            body,
            message_id=self._message_id(msg_id, self.hostname),
            date=now,
            postline_id=msg_id,
        )
        return NewMessage(
            id=msg_id,
            tenant_id=tenant_id,
            mail_from="",
            body=body,
            recipients=rcpts,
            created_at=now,
            next_attempt_at=now,
            expires_at=now + self.limits.max_age,
            source="dsn",
            message_id_header=mid,
            subject="",
        )

    # -- tenant pause ----------------------------------------------------------------
    async def check_sending(self, tenant_id: str) -> None:
        """Raise :class:`~postline.errors.SendingPaused` when the tenant may not send
        (checked by the API and SMTP submission before they build anything; reports
        postline sends itself are not refused, they are held with the tenant's queue)."""
        if self.gate is not None:
            try:
                await self.gate.check(tenant_id)
            except StoreUnavailable as exc:
                self.store.health.failed("tenants", exc)
                raise

    # -- suppression -----------------------------------------------------------------
    async def apply_suppressions(
        self, tenant_id: str, messages: Sequence[NewMessage], *, now: float
    ) -> list[NewMessage]:
        """The messages with every recipient on the tenant's (or the global) suppression
        list marked: such a recipient is stored as ``suppressed`` with an event, never
        queued and never silently dropped."""
        addresses = sorted({r.address.lower() for m in messages for r in m.recipients})
        if not addresses:
            return list(messages)
        found = await self.suppressed(tenant_id, addresses, now=now)
        if not found:
            return list(messages)
        out = []
        for m in messages:
            if any(r.address.lower() in found for r in m.recipients):
                m = replace(
                    m,
                    recipients=[
                        replace(r, suppressed=found[r.address.lower()].reason)
                        if r.address.lower() in found
                        else r
                        for r in m.recipients
                    ],
                )
            out.append(m)
        return out

    async def suppressed(
        self, tenant_id: str, addresses: Sequence[str], *, now: float
    ) -> dict[str, Suppression]:
        """The addresses (lower case) on the tenant's or the global suppression list."""
        try:
            return await self.store.suppressed(tenant_id, addresses, now=now)
        except StoreUnavailable as exc:
            self.store.health.failed("suppressions", exc)
            raise

    def acks_healthy(self, now: float, *, hold: float = 10.0) -> bool:
        """False while accepting mail is slow: a write in progress for longer than the
        ack budget, or one that took longer finished less than ``hold`` seconds ago
        (``now``: monotonic)."""
        budget = self.ack_budget
        if any(now - started > budget for started in self._writing.values()):
            return False
        return self._slow_at is None or now - self._slow_at >= hold

    # -- enqueueing ------------------------------------------------------------------
    async def enqueue(
        self,
        tenant_id: str,
        messages: Sequence[NewMessage],
        *,
        idempotency: IdempotencyClaim | None = None,
        limited: bool = False,
        key: KeyIdentity | None = None,
    ) -> IdempotencyRecord | None:
        """Durably enqueue; returns the earlier answer when the idempotency key was used.

        ``limited``: what a tenant submitted (through ``key``, or from a trusted network
        without one): its recipients, all of them, are taken from the tenant's and the
        key's rate limits first (:class:`~postline.errors.RateLimited`: nothing stored),
        and the store holds the enqueue to the tenant's quotas
        (:class:`~postline.errors.QuotaExceeded`: nothing stored).

        The work runs in its own task, shielded: once the store has the messages, the
        hand-off to the delivery engine happens even if the caller went away.
        """
        quota = None
        if limited and self.send_limits is not None:
            n = sum(len(m.recipients) for m in messages)
            try:
                quota = await self.send_limits.admit(tenant_id, key, n)
            except RateLimited:
                self._refused("rate", messages)
                raise
        try:
            return await asyncio.shield(
                asyncio.ensure_future(self._enqueue(tenant_id, messages, idempotency, quota))
            )
        except QuotaExceeded as exc:
            self._refused(exc.period, messages)
            raise

    def _refused(self, kind: str, messages: Sequence[NewMessage]) -> None:
        """Count a submission a rate limit or a quota refused, by its channel."""
        if self.metrics is not None:
            channel = messages[0].source if messages else "api"
            self.metrics.limit_refusals.labels(kind, channel).inc()

    async def _enqueue(
        self,
        tenant_id: str,
        messages: Sequence[NewMessage],
        idempotency: IdempotencyClaim | None,
        quota: Quota | None = None,
    ) -> IdempotencyRecord | None:
        now = time.time()
        dispatcher = self._dispatcher
        claims = dispatcher.claim(messages, now=now) if dispatcher is not None else {}
        lease_until = now + self.lease_time
        started = time.monotonic()
        self._writes += 1
        token = self._writes
        self._writing[token] = started
        try:
            replay = await self.store.enqueue(
                messages,
                idempotency=idempotency,
                tenant_id=tenant_id,
                node_id=self.node_id,
                leased=claims,
                lease_until=lease_until,
                quota=quota,
            )
        except BaseException as exc:
            if dispatcher is not None:
                dispatcher.unclaim(claims)
            if isinstance(exc, StoreUnavailable):
                self.refused_writes += 1
                self.store.health.failed("enqueue", exc)
                if self.metrics is not None:
                    self.metrics.store_refusals.inc()
            raise
        finally:
            self._writing.pop(token, None)
            finished = time.monotonic()
            if finished - started > self.ack_budget:
                self._slow_at = finished
        self.store.health.ok()
        if replay is not None:
            if dispatcher is not None:
                dispatcher.unclaim(claims)
            return replay
        n_rcpts = sum(len(m.recipients) for m in messages)
        self.accepted_messages += len(messages)
        self.accepted_recipients += n_rcpts
        if self.metrics is not None and messages:
            source = messages[0].source
            self.metrics.ingested_messages.labels(source).inc(len(messages))
            self.metrics.ingested_recipients.labels(source).inc(n_rcpts)
        if self.on_accepted is not None and n_rcpts:
            self.on_accepted(n_rcpts)
        if dispatcher is not None:
            dispatcher.take(messages, claims, lease_until=lease_until)
            dispatcher.notify(
                {
                    (m.tenant_id, r.domain)
                    for m in messages
                    if m.next_attempt_at <= now
                    for r in m.recipients
                    if r.idx not in claims.get(m.id, {}) and r.suppressed is None
                }
            )
            for m in messages:
                if m.next_attempt_at > now:
                    for domain in {r.domain for r in m.recipients if r.suppressed is None}:
                        dispatcher.schedule((m.tenant_id, domain), m.next_attempt_at)
        return None
