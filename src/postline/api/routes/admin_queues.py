"""/admin/v1/queues: every tenant's queues per destination domain, and the operator's
actions on them (suspend, resume, retry now, bounce).

Each route translates HTTP to one action of :mod:`postline.control.queues`, which does
the work in short batches and writes the audit entry.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Query

from postline.api.admin_queue_schemas import (
    AdminDomainQueueOut,
    AdminQueueActionOut,
    AdminQueueBounceIn,
    AdminQueueSelectorIn,
    AdminQueuesOut,
    AdminQueueSuspendIn,
    AdminSuspensionOut,
    AdminTenantQueueOut,
)
from postline.api.routes.admin import Control
from postline.api.schemas import ProblemOut, iso
from postline.control import queues
from postline.errors import ValidationError
from postline.ingest.addresses import InvalidAddress, parse_address
from postline.units import parse_duration

__all__ = ["router"]


_ERRORS: dict[int | str, dict[str, type[ProblemOut]]] = {
    401: {"model": ProblemOut},
    403: {"model": ProblemOut},
    422: {"model": ProblemOut},
}
_ACTION: dict[int | str, dict[str, type[ProblemOut]]] = {**_ERRORS, 404: {"model": ProblemOut}}

router = APIRouter(prefix="/admin/v1", tags=["admin"], responses=_ERRORS)


def _domain(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return parse_address(f"postmaster@{value}").domain
    except InvalidAddress:
        raise ValidationError(
            f"{value!r} is not a domain name",
            field="domain",
            fix="Use the recipient domain as GET /admin/v1/queues shows it, e.g. 'example.com'.",
        ) from None


def _selector(body: AdminQueueSelectorIn) -> queues.QueueSelector:
    return queues.QueueSelector(body.tenant or None, _domain(body.domain))


def _suspension(s: queues.Suspension | None) -> AdminSuspensionOut | None:
    if s is None:
        return None
    return AdminSuspensionOut(
        tenant=s.tenant_id,
        domain=s.domain,
        since=iso(s.since) or "",
        until=iso(s.until),
        reason=s.reason,
    )


def _domain_out(d: queues.DomainQueues, now: float) -> AdminDomainQueueOut:
    oldest = d.oldest_at
    return AdminDomainQueueOut(
        domain=d.domain,
        depth=d.depth,
        deferred=d.deferred,
        due=d.due,
        oldest_at=iso(oldest),
        oldest_age=round(max(0.0, now - oldest), 3) if oldest is not None else None,
        suspended=bool(d.tenants) and all(t.suspended is not None for t in d.tenants),
        suspensions=[s for s in map(_suspension, d.suspensions) if s is not None],
        tenants=[
            AdminTenantQueueOut(
                tenant=t.queue.tenant_id,
                depth=t.queue.depth,
                deferred=t.queue.deferred,
                due=t.queue.due,
                oldest_at=iso(t.queue.oldest_at) if t.queue.depth else None,
                next_attempt_at=iso(t.queue.next_attempt_at) if t.queue.depth else None,
                suspended=_suspension(t.suspended),
            )
            for t in d.tenants
        ],
    )


@router.get("/queues", summary="Every tenant's queues per destination domain")
async def list_queues(
    ctl: Control,
    domain: Annotated[str | None, Query(description="Only this domain.")] = None,
    tenant: Annotated[str | None, Query(description="Only this tenant's queues (its id).")] = None,
    after: Annotated[str, Query(description="next_after of the previous page.")] = "",
    limit: Annotated[int, Query(ge=1, le=queues.MAX_PAGE)] = 100,
) -> AdminQueuesOut:
    """Domains in name order, a page at a time, with their depth, age, due and deferred
    counts, holds, and each tenant's share. Read from the queue counters and index probes
    per queue shown: the cost follows the page, not the depth of the queue."""
    page, next_after = await queues.list_queues(
        ctl, domain=_domain(domain), tenant_id=tenant or None, after=after, limit=limit
    )
    now = time.time()
    return AdminQueuesOut(
        queues=[_domain_out(d, now) for d in page], due_cap=queues.DUE_CAP, next_after=next_after
    )


def _out(action: str, sel: queues.QueueSelector, count: int) -> AdminQueueActionOut:
    return AdminQueueActionOut(action=action, tenant=sel.tenant_id, domain=sel.domain, count=count)


@router.post("/queues/suspend", responses=_ACTION, summary="Hold the selected queues (for a while)")
async def suspend(body: AdminQueueSuspendIn, ctl: Control) -> AdminQueueActionOut:
    """Queued mail stays queued (and keeps ageing towards expiry) until resumed or the
    duration ends. A tenant alone holds all its queues; a domain alone, every tenant's."""
    sel = _selector(body)
    duration = None
    if body.duration:
        try:
            duration = parse_duration(body.duration)
        except ValueError:
            raise ValidationError(
                f"{body.duration!r} is not a duration",
                field="duration",
                fix="Use e.g. '30m', '2h' or '1d'.",
            ) from None
    started = time.time()
    count = await queues.suspend(ctl, sel, duration=duration)
    out = _out("suspend", sel, count)
    if duration:
        out.until = iso(started + duration)
    return out


@router.post("/queues/resume", responses=_ACTION, summary="Release the selected queues")
async def resume(body: AdminQueueSelectorIn, ctl: Control) -> AdminQueueActionOut:
    sel = _selector(body)
    return _out("resume", sel, await queues.resume(ctl, sel))


@router.post(
    "/queues/retry-now", responses=_ACTION, summary="Make the selected queued mail due now"
)
async def retry_now(body: AdminQueueSelectorIn, ctl: Control) -> AdminQueueActionOut:
    """Deferred mail is tried at once (recipients being delivered are left alone); a
    held queue stays held."""
    sel = _selector(body)
    return _out("retry-now", sel, await queues.retry_now(ctl, sel))


@router.post("/queues/bounce", responses=_ACTION, summary="Bounce the selected queued mail (final)")
async def bounce(body: AdminQueueBounceIn, ctl: Control) -> AdminQueueActionOut:
    """Each recipient not being delivered gets a ``bounced`` event of category
    ``operator`` with the reason; no address is suppressed."""
    sel = _selector(body)
    return _out("bounce", sel, await queues.bounce(ctl, sel, reason=body.reason))
