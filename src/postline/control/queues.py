"""Queues across tenants: the operator's view per destination domain, and actions on a
selection of queues — suspend, resume, retry now, bounce (and reroute, in
:mod:`postline.control.reroutes`).

A selection names a tenant, a domain or both; ``resume`` may name a ``provider`` instead,
to end the reroute of that provider (suspensions, retries and bounces are per queue, and
a queue is a tenant's mail to one domain, so a provider selects none of them exactly).
``retry-now`` and ``bounce`` may narrow the selection to the mail of one ``stream`` and/or
one ``tag`` (the message's); ``suspend`` and ``resume`` may not: a hold is a row of the
pause table that the lease honours per queue, and the lease takes a queue's recipients
oldest due first without reading their messages, so a hold of part of a queue cannot be
honoured exactly (held mail would sit at the head of the queue and be looked at again on
every lease).

Suspending holds the selected queues with a row of the pause table (tenant ``*``: a
domain for every tenant; domain ``*``: every domain of a tenant), the same hold as
``POST /v1/queues/{domain}/pause``; a suspension with a duration says until when in its
reason and is lifted when that time comes, by any node (:func:`expire`, run by every
node's control chores, and by the first queue view or action after that time), with a
``queue.resume`` audit entry marked ``expired``. Retry now and bounce touch the queued
recipients no delivery holds a lease on, a batch (:data:`BATCH`) per write transaction,
so the queue is never locked for long; by stream or tag, each transaction looks at a
batch of the queue's recipients whatever their message. Each action writes an audit
entry with the selection and its count.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from postline.control import audit, reroutes
from postline.control.context import ControlContext
from postline.control.tenants import find_tenant
from postline.errors import ValidationError
from postline.store.base import QUEUE_START, MessageMatch, QueuePause, TenantQueue

__all__ = [
    "BATCH",
    "DUE_CAP",
    "MAX_PAGE",
    "OPERATOR",
    "DomainQueues",
    "QueueSelector",
    "Suspension",
    "TenantQueueView",
    "bounce",
    "expire",
    "hold",
    "list_queues",
    "resume",
    "retry_now",
    "suspend",
    "suspensions",
]

BATCH = 1000
"""Recipients changed per write transaction."""
DUE_CAP = 10_000
"""Recipients due now are counted up to this many per queue (``due_capped`` beyond)."""
MAX_PAGE = 200
OPERATOR = "operator"
"""The reason of a suspension (and the category of a bounce) an operator made."""

_UNTIL = re.compile(r" until=(\d+(?:\.\d+)?)$")


@dataclass(frozen=True, slots=True)
class QueueSelector:
    """The queues an action applies to: a tenant's, a domain's, or one tenant's queue of a
    domain."""

    tenant_id: str | None = None
    domain: str | None = None
    provider: str | None = None
    """A throttle rule or site (see :mod:`postline.control.reroutes`); ``resume`` only."""
    stream: str | None = None
    """Only the mail of this stream (``retry-now`` and ``bounce``)."""
    tag: str | None = None
    """Only the mail carrying this tag (``retry-now`` and ``bounce``)."""

    def __post_init__(self) -> None:
        if self.provider and (self.stream or self.tag):
            raise ValidationError(
                "a provider selects a reroute alone, without stream or tag",
                field="provider",
                fix='Send {"provider": "google"} alone to end its reroute.',
            )
        if self.provider and (self.tenant_id or self.domain):
            raise ValidationError(
                "a provider selects a reroute alone, without tenant or domain",
                field="provider",
                fix='Send {"provider": "google"} alone to end its reroute.',
            )
        if not self.tenant_id and not self.domain and not self.provider:
            raise ValidationError(
                "a queue selection needs a tenant, a domain or both",
                field="tenant",
                fix='Send {"tenant": "<tenant id>"}, {"domain": "example.com"} or both.',
            )

    @property
    def match(self) -> MessageMatch:
        """The messages selected within the queues (everything when empty)."""
        return MessageMatch(self.stream, self.tag)

    @property
    def target(self) -> str:
        """``tenant/domain`` for the audit log, ``*`` for the part not given, then the
        stream and tag when given."""
        if self.provider:
            return f"provider:{self.provider}"
        narrowed = "".join(
            f" {k}={v}" for k, v in (("stream", self.stream), ("tag", self.tag)) if v is not None
        )
        return f"{self.tenant_id or '*'}/{self.domain or '*'}{narrowed}"

    def as_detail(self) -> dict[str, str | None]:
        if self.provider:
            return {"provider": self.provider}
        out = {"tenant": self.tenant_id, "domain": self.domain}
        if self.stream is not None:
            out["stream"] = self.stream
        if self.tag is not None:
            out["tag"] = self.tag
        return out

    def whole_queues(self, action: str) -> None:
        """Refuse a stream or tag for an action that holds whole queues or lifts their holds."""
        if self.stream is not None or self.tag is not None:
            raise ValidationError(
                f"{action} applies to whole queues: a stream or tag cannot be held exactly",
                field="stream" if self.stream is not None else "tag",
                fix=f"{action.capitalize()} the tenant's queue of the domain (tenant and/or "
                "domain only); retry-now and bounce take a stream or tag. To stop a "
                "stream's mail for good, bounce it by stream.",
            )

    def per_queue(self, action: str) -> None:
        """Refuse a provider for an action on queues (only ``resume`` takes one)."""
        if self.provider:
            raise ValidationError(
                f"{action} applies to queues (a tenant's mail to a domain), not to a provider",
                field="provider",
                fix="Select a tenant, a domain or both; a provider selects only a reroute "
                "(POST /admin/v1/queues/reroute, ended by resume).",
            )


@dataclass(frozen=True, slots=True)
class Suspension:
    """A hold on queues: tenant ``*`` holds a domain for every tenant, domain ``*`` every
    domain of a tenant."""

    tenant_id: str
    domain: str
    since: float
    until: float | None
    reason: str

    @classmethod
    def of(cls, p: QueuePause) -> Suspension:
        found = _UNTIL.search(p.reason)
        until = float(found.group(1)) if found else None
        reason = p.reason[: found.start()] if found else p.reason
        return cls(p.tenant_id, p.domain, p.paused_at, until, reason)

    def holds(self, tenant_id: str, domain: str) -> bool:
        return self.tenant_id in (tenant_id, "*") and self.domain in (domain, "*")


@dataclass(frozen=True, slots=True)
class TenantQueueView:
    queue: TenantQueue
    suspended: Suspension | None


@dataclass(frozen=True, slots=True)
class DomainQueues:
    """One destination domain: every selected tenant's queue, and the holds on it."""

    domain: str
    tenants: list[TenantQueueView]
    suspensions: list[Suspension] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return sum(t.queue.depth for t in self.tenants)

    @property
    def deferred(self) -> int:
        return sum(t.queue.deferred for t in self.tenants)

    @property
    def due(self) -> int:
        return sum(t.queue.due for t in self.tenants)

    @property
    def oldest_at(self) -> float | None:
        return min((t.queue.oldest_at for t in self.tenants if t.queue.depth), default=None)

    @property
    def suspended(self) -> bool:
        """Every selected tenant's queue of the domain is held."""
        return bool(self.tenants) and all(t.suspended is not None for t in self.tenants)


async def _lift(ctx: ControlContext, p: QueuePause, s: Suspension) -> None:
    """Lift a suspension whose time is up. Idempotent over a fleet: the node whose store
    call removed the row writes the audit entry; every node applies the lift."""
    if await ctx.store.lift_pause(p.tenant_id, p.domain, reason=p.reason):
        await audit.record(
            ctx,
            "queue.resume",
            f"{s.tenant_id}/{s.domain}",
            tenant_id=None if s.tenant_id == "*" else s.tenant_id,
            detail={"expired": True, "until": s.until},
        )
    elif any(
        (q.tenant_id, q.domain) == (p.tenant_id, p.domain) for q in await ctx.store.queue_pauses()
    ):
        return  # held again since (a new suspension): nothing to lift
    if ctx.on_pause is not None:
        ctx.on_pause(s.tenant_id, s.domain, False)


async def _suspensions(ctx: ControlContext, now: float) -> list[Suspension]:
    """Every hold, after lifting the suspensions whose time is up."""
    out = []
    for p in await ctx.store.queue_pauses():
        s = Suspension.of(p)
        if s.until is not None and s.until <= now:
            await _lift(ctx, p, s)
            continue
        out.append(s)
    return out


async def expire(ctx: ControlContext, now: float | None = None) -> float | None:
    """Lift the suspensions whose time is up (each with a ``queue.resume`` audit entry
    marked ``expired``, written once over a fleet); when the next one ends, None when no
    suspension has an end."""
    holds = await _suspensions(ctx, time.time() if now is None else now)
    return min((s.until for s in holds if s.until is not None), default=None)


async def suspensions(ctx: ControlContext) -> list[Suspension]:
    """Every hold on queues in (tenant, domain) order, after lifting those whose time is
    up (tenant pauses too: their reason is not ``operator``)."""
    return await _suspensions(ctx, time.time())


async def list_queues(
    ctx: ControlContext,
    *,
    domain: str | None = None,
    tenant_id: str | None = None,
    after: str = "",
    limit: int = 100,
) -> tuple[list[DomainQueues], str | None]:
    """One page of destination domains in name order (after ``after``), each with every
    tenant's queue (only ``tenant_id``'s when given); the cursor of the next page, if any.

    Domains come from the queue counters; each domain's split costs index probes per
    tenant queue, never a scan of the queue."""
    now = time.time()
    limit = max(1, min(limit, MAX_PAGE))
    holds = await _suspensions(ctx, now)
    if domain is not None:
        names = [domain]
    else:
        stats = await ctx.store.queue_stats(tenant_id, after=after, limit=limit + 1)
        names = [s.domain for s in stats]
    more = len(names) > limit
    names = names[:limit]
    page = []
    for name in names:
        queues = await ctx.store.domain_queues(name, now=now, due_cap=DUE_CAP)
        if tenant_id is not None:
            queues = [q for q in queues if q.tenant_id == tenant_id]
        shown = {q.tenant_id for q in queues} | ({tenant_id} if tenant_id else set())
        page.append(
            DomainQueues(
                name,
                [
                    TenantQueueView(q, next((h for h in holds if h.holds(q.tenant_id, name)), None))
                    for q in queues
                ],
                [
                    h
                    for h in holds
                    if (
                        h.domain == name
                        and (h.tenant_id == "*" or h.tenant_id in shown or tenant_id is None)
                    )
                    or (h.domain == "*" and h.tenant_id in shown)
                ],
            )
        )
    return page, names[-1] if more else None


async def _queues(ctx: ControlContext, sel: QueueSelector) -> list[tuple[str, str, int]]:
    """The selected queues with something queued: (tenant id, domain, depth)."""
    if sel.domain is not None:
        return [
            (q.tenant_id, sel.domain, q.depth)
            for q in await ctx.store.domain_queues(sel.domain, now=time.time(), due_cap=0)
            if sel.tenant_id is None or q.tenant_id == sel.tenant_id
        ]
    assert sel.tenant_id is not None
    out: list[tuple[str, str, int]] = []
    after = ""
    while True:
        stats = await ctx.store.queue_stats(sel.tenant_id, after=after, limit=1000)
        out += [(sel.tenant_id, s.domain, s.depth) for s in stats if s.depth]
        if len(stats) < 1000:
            return out
        after = stats[-1].domain


async def _check(ctx: ControlContext, sel: QueueSelector) -> None:
    if sel.tenant_id is not None:
        await find_tenant(ctx, id=sel.tenant_id)


async def suspend(ctx: ControlContext, sel: QueueSelector, *, duration: float | None = None) -> int:
    """Hold the selected queues (until ``duration`` seconds from now, or until resumed);
    returns how many queued recipients are held."""
    sel.per_queue("suspend")
    sel.whole_queues("suspend")
    await _check(ctx, sel)
    now = time.time()
    until = now + duration if duration else None
    tenant, domain = sel.tenant_id or "*", sel.domain or "*"
    reason = OPERATOR if until is None else f"{OPERATOR} until={until:.3f}"
    # A new suspension replaces the hold it overlaps exactly (a new duration).
    for p in await ctx.store.queue_pauses():
        if (p.tenant_id, p.domain) == (tenant, domain) and p.reason.startswith(OPERATOR):
            await ctx.store.set_paused(tenant, domain, False, now=now)
    await ctx.store.set_paused(tenant, domain, True, now=now, reason=reason)
    if ctx.on_pause is not None:
        ctx.on_pause(tenant, domain, True)
    count = sum(n for _t, _d, n in await _queues(ctx, sel))
    await audit.record(
        ctx,
        "queue.suspend",
        sel.target,
        tenant_id=sel.tenant_id,
        detail={"selector": sel.as_detail(), "count": count, "until": until},
    )
    return count


async def resume(ctx: ControlContext, sel: QueueSelector) -> int:
    """Lift the hold on the selected queues, and end the reroute of a domain or provider
    selected alone; returns how many queued recipients it resumed (0 for a provider). A
    tenant's whole-queue hold set by a tenant pause is left to ``tenants.resume``."""
    sel.whole_queues("resume")
    if sel.tenant_id is None:
        await reroutes.lift(ctx, domain=sel.domain, provider=sel.provider)
    if sel.provider:
        await audit.record(
            ctx, "queue.resume", sel.target, detail={"selector": sel.as_detail(), "count": 0}
        )
        return 0
    await _check(ctx, sel)
    tenant, domain = sel.tenant_id or "*", sel.domain or "*"
    if domain == "*":
        held = [
            p for p in await ctx.store.queue_pauses() if (p.tenant_id, p.domain) == (tenant, domain)
        ]
        if held and not held[0].reason.startswith(OPERATOR):
            raise ValidationError(
                f"tenant {tenant} is paused as a whole, not suspended",
                field="tenant",
                fix=f"Resume the tenant: POST /admin/v1/tenants/{tenant}/resume.",
            )
    await ctx.store.set_paused(tenant, domain, False, now=time.time())
    if ctx.on_pause is not None:
        ctx.on_pause(tenant, domain, False)
    count = sum(n for _t, _d, n in await _queues(ctx, sel))
    await audit.record(
        ctx,
        "queue.resume",
        sel.target,
        tenant_id=sel.tenant_id,
        detail={"selector": sel.as_detail(), "count": count},
    )
    return count


async def retry_now(ctx: ControlContext, sel: QueueSelector) -> int:
    """Make the selected queued recipients that no delivery holds due now; how many."""
    sel.per_queue("retry-now")
    await _check(ctx, sel)
    now = time.time()
    match = sel.match
    count = 0
    for tenant, domain, _n in await _queues(ctx, sel):
        done = 0
        if match:
            cursor: tuple[float, str, int] | None = QUEUE_START
            while cursor is not None:
                n, cursor = await ctx.store.retry_matching(
                    tenant, domain, match, now=now, after=cursor, limit=BATCH
                )
                done += n
        else:
            while True:
                n = await ctx.store.retry_queued(tenant, domain, now=now, limit=BATCH)
                done += n
                if n < BATCH:
                    break
        if done and ctx.on_due is not None:
            ctx.on_due(tenant, domain)
        count += done
    await audit.record(
        ctx,
        "queue.retry_now",
        sel.target,
        tenant_id=sel.tenant_id,
        detail={"selector": sel.as_detail(), "count": count},
    )
    return count


async def bounce(ctx: ControlContext, sel: QueueSelector, *, reason: str) -> int:
    """Bounce the selected queued recipients that no delivery holds (a final failure with
    a ``bounced`` event of category ``operator``; no suppression); how many."""
    sel.per_queue("bounce")
    await _check(ctx, sel)
    text = reason or "bounced by an operator"
    data = {"category": OPERATOR, "reason": text, "text": text}
    match = sel.match
    count = 0
    for tenant, domain, _n in await _queues(ctx, sel):
        cursor: tuple[float, str, int] | None = QUEUE_START
        while match and cursor is not None:
            n, cursor = await ctx.store.bounce_matching(
                tenant,
                domain,
                match,
                now=time.time(),
                data=data,
                text=text,
                node_id=ctx.node_id,
                after=cursor,
                limit=BATCH,
            )
            count += n
        while not match:
            n = await ctx.store.bounce_queued(
                tenant,
                domain,
                now=time.time(),
                data=data,
                text=text,
                node_id=ctx.node_id,
                limit=BATCH,
            )
            count += n
            if n < BATCH:
                break
    await audit.record(
        ctx,
        "queue.bounce",
        sel.target,
        tenant_id=sel.tenant_id,
        detail={"selector": sel.as_detail(), "count": count, "reason": text},
    )
    return count


async def hold(ctx: ControlContext, tenant_id: str, domain: str, paused: bool) -> None:
    """A tenant's own pause (or resume) of its queue of ``domain`` (``POST
    /v1/queues/{domain}/pause``): the same hold as an operator's, with reason ``api``."""
    await ctx.store.set_paused(tenant_id, domain, paused, now=time.time(), reason="api")
    if ctx.on_pause is not None:
        ctx.on_pause(tenant_id, domain, paused)
    await audit.record(
        ctx,
        "queue.pause" if paused else "queue.resume",
        f"{tenant_id}/{domain}",
        tenant_id=tenant_id,
        detail={"selector": {"tenant": tenant_id, "domain": domain}},
    )
