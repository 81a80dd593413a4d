"""/admin/v1/queues: every tenant's queues per destination domain, and the operator's
actions on them (suspend, resume, retry now, bounce, reroute).

Each route translates HTTP to one action of :mod:`postline.control.queues` or
:mod:`postline.control.reroutes`, which does the work in short batches and writes the
audit entry.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from postline.api.admin_queue_schemas import (
    AdminDomainQueueOut,
    AdminQueueActionOut,
    AdminQueueBounceIn,
    AdminQueueNarrowIn,
    AdminQueueResumeIn,
    AdminQueueSelectorIn,
    AdminQueuesOut,
    AdminQueueSuspendIn,
    AdminRerouteIn,
    AdminRerouteOut,
    AdminSiteQueueOut,
    AdminSitesOut,
    AdminSiteTenantOut,
    AdminSiteThrottleOut,
    AdminSuspensionOut,
    AdminTenantQueueOut,
    AdminUnroutedOut,
    AdminWorkerOut,
)
from postline.api.context import ApiContext
from postline.api.routes.admin import Control
from postline.api.schemas import ProblemOut, iso
from postline.control import queues, reroutes, sites
from postline.errors import ValidationError
from postline.ingest.addresses import InvalidAddress, parse_address
from postline.store.base import Reroute
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
    provider = body.provider if isinstance(body, AdminQueueResumeIn) else None
    stream = tag = None
    if isinstance(body, AdminQueueNarrowIn):
        stream, tag = _narrow("stream", body.stream), _narrow("tag", body.tag)
    return queues.QueueSelector(
        body.tenant or None, _domain(body.domain), provider or None, stream, tag
    )


def _narrow(field: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not value.strip():
        raise ValidationError(
            f"{field} is empty",
            field=field,
            fix=f"Leave {field} out for every message, or give the message's {field}.",
        )
    return value.strip()


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise ValidationError(
            f"{value!r} is not a duration", field="duration", fix="Use e.g. '30m', '2h' or '1d'."
        ) from None


def _reroute(r: Reroute) -> AdminRerouteOut:
    return AdminRerouteOut(
        id=r.id,
        domain=r.domain or None,
        provider=r.provider or None,
        host=r.host,
        port=r.port,
        since=iso(r.created_at) or "",
        until=iso(r.until) or "",
        reason=r.reason,
    )


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


def _age(oldest: float | None, now: float) -> float | None:
    return round(max(0.0, now - oldest), 3) if oldest is not None else None


def _domain_out(d: queues.DomainQueues, now: float, rerouted: list[Reroute]) -> AdminDomainQueueOut:
    oldest = d.oldest_at
    rerouted_here = [r for r in rerouted if r.domain == d.domain]
    return AdminDomainQueueOut(
        domain=d.domain,
        depth=d.depth,
        deferred=d.deferred,
        due=d.due,
        oldest_at=iso(oldest),
        oldest_age=_age(oldest, now),
        suspended=d.suspended,
        suspensions=[s for s in map(_suspension, d.suspensions) if s is not None],
        rerouted=_reroute(rerouted_here[-1]) if rerouted_here else None,
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
    rerouted = await reroutes.list_reroutes(ctl)
    now = time.time()
    return AdminQueuesOut(
        queues=[_domain_out(d, now, rerouted) for d in page],
        due_cap=queues.DUE_CAP,
        next_after=next_after,
        reroutes=[_reroute(r) for r in rerouted],
    )


def _throttle(state: dict[str, Any]) -> AdminSiteThrottleOut:
    if state.get("unavailable"):
        return AdminSiteThrottleOut(source=state.get("source"), key=None, unavailable=True)
    suspended_for = float(state.get("suspended_for") or 0.0)
    barred = float(state.get("barred_until") or 0.0)
    return AdminSiteThrottleOut(
        source=state.get("source"),
        key=state.get("key"),
        connections=state.get("connections"),
        connection_limit=state.get("connection_limit"),
        rate_limit=state.get("rate_limit"),
        rate_factor=state.get("rate_factor"),
        suspended_until=iso(time.time() + suspended_for) if suspended_for > 0 else None,
        barred_until=iso(barred) if barred else None,
        buffered=int(state.get("buffered") or 0),
    )


def _site_out(s: sites.SiteQueues, now: float) -> AdminSiteQueueOut:
    by_depth = sorted(s.domains, key=lambda d: (-d.depth, d.domain))
    return AdminSiteQueueOut(
        key=s.key,
        provider=s.provider,
        rule=s.rule,
        scope=s.scope,
        relay=s.relay,
        mx_sites=s.mx_sites[: sites.SHOWN_DOMAINS],
        domains=len(s.domains),
        domain_names=[d.domain for d in by_depth[: sites.SHOWN_DOMAINS]],
        depth=s.depth,
        deferred=s.deferred,
        due=s.due,
        oldest_at=iso(s.oldest_at),
        oldest_age=_age(s.oldest_at, now),
        suspended=s.suspended,
        rate_limit=s.rate_limit,
        burst=s.burst,
        connection_limit=s.connection_limit,
        throttle=[_throttle(t) for t in s.throttle],
        tenants=[
            AdminSiteTenantOut(
                tenant=t.tenant_id,
                depth=t.depth,
                deferred=t.deferred,
                due=t.due,
                oldest_at=iso(t.oldest_at),
                domains=t.domains,
                suspended=t.suspended,
            )
            for t in s.tenants
        ],
    )


def _unrouted_out(u: sites.UnroutedDomain, now: float) -> AdminUnroutedOut:
    d = u.queues
    return AdminUnroutedOut(
        domain=d.domain,
        reason=u.reason,
        reply=u.reply or None,
        depth=d.depth,
        deferred=d.deferred,
        due=d.due,
        oldest_age=_age(d.oldest_at, now),
    )


@router.get("/queues/sites", summary="Every tenant's queues per MX site and provider")
async def list_sites(
    ctl: Control,
    request: Request,
    tenant: Annotated[str | None, Query(description="Only this tenant's queues (its id).")] = None,
    after: Annotated[str, Query(description="next_after of the previous page.")] = "",
    limit: Annotated[
        int, Query(ge=1, le=queues.MAX_PAGE, description="Domains per page (then grouped).")
    ] = 100,
    resolve: Annotated[
        bool,
        Query(
            description="Look up the routes the answering worker does not know yet, "
            f"waiting at most {sites.ROUTE_WAIT:g} s in all; false: answer at once, those "
            "domains under 'unrouted' (looked up in the background for the next view)."
        ),
    ] = True,
) -> AdminSitesOut:
    """A page of destination domains (in name order, as ``GET /admin/v1/queues`` pages
    them) grouped by the throttle bucket their route leads to — an MX site, or a
    provider's rule-wide bucket — with the queues of its domains summed (depth, due,
    deferred, oldest, each tenant's share) and the bucket's limits and live state. Routes
    are the answering worker's (learnt lazily: see ``resolve`` and ``unrouted``); the
    throttle state is the node's, read from the throttle backend all its workers share."""
    api: ApiContext = request.app.state.ctx
    share = api.extra.get("worker") or (0, 1)
    page = await sites.list_sites(
        ctl,
        api.extra.get("sites_of"),
        tenant_id=tenant or None,
        after=after,
        limit=limit,
        resolve=resolve,
    )
    now = time.time()
    return AdminSitesOut(
        sites=[_site_out(s, now) for s in page.sites],
        unrouted=[_unrouted_out(u, now) for u in page.unrouted],
        domains=page.domains,
        due_cap=queues.DUE_CAP,
        next_after=page.next_after,
        worker=AdminWorkerOut(node=api.node_id, index=share[0], count=share[1]),
    )


def _out(action: str, sel: queues.QueueSelector, count: int) -> AdminQueueActionOut:
    return AdminQueueActionOut(
        action=action,
        tenant=sel.tenant_id,
        domain=sel.domain,
        provider=sel.provider,
        stream=sel.stream,
        tag=sel.tag,
        count=count,
    )


@router.post("/queues/suspend", responses=_ACTION, summary="Hold the selected queues (for a while)")
async def suspend(body: AdminQueueSuspendIn, ctl: Control) -> AdminQueueActionOut:
    """Queued mail stays queued (and keeps ageing towards expiry) until resumed or the
    duration ends (then the nodes lift it by themselves, with one ``queue.resume`` audit
    entry marked ``expired``). A tenant alone holds all its queues; a domain alone, every
    tenant's. Whole queues only: a hold by stream or tag could not be honoured exactly."""
    sel = _selector(body)
    duration = _duration(body.duration) if body.duration else None
    started = time.time()
    count = await queues.suspend(ctl, sel, duration=duration)
    out = _out("suspend", sel, count)
    if duration:
        out.until = iso(started + duration)
    return out


@router.post("/queues/resume", responses=_ACTION, summary="Resume the selected queues")
async def resume(body: AdminQueueResumeIn, ctl: Control) -> AdminQueueActionOut:
    """Lifts the suspension of the selection; a domain or a provider alone also ends its
    reroute."""
    sel = _selector(body)
    return _out("resume", sel, await queues.resume(ctl, sel))


@router.post(
    "/queues/retry-now", responses=_ACTION, summary="Make the selected queued mail due now"
)
async def retry_now(body: AdminQueueNarrowIn, ctl: Control) -> AdminQueueActionOut:
    """Deferred mail is tried at once (recipients being delivered are left alone); a
    held queue stays held. ``stream`` and/or ``tag`` narrow it to the mail of that stream
    or with that tag (a batch of the queue looked at per transaction)."""
    sel = _selector(body)
    return _out("retry-now", sel, await queues.retry_now(ctl, sel))


@router.post("/queues/bounce", responses=_ACTION, summary="Bounce the selected queued mail (final)")
async def bounce(body: AdminQueueBounceIn, ctl: Control) -> AdminQueueActionOut:
    """Each recipient not being delivered gets a ``bounced`` event of category
    ``operator`` with the reason; no address is suppressed. ``stream`` and/or ``tag``
    narrow it to the mail of that stream or with that tag."""
    sel = _selector(body)
    return _out("bounce", sel, await queues.bounce(ctl, sel, reason=body.reason))


@router.post(
    "/queues/reroute",
    status_code=201,
    responses=_ERRORS,
    summary="Send a destination's mail to a static host for a while",
)
async def reroute(body: AdminRerouteIn, ctl: Control) -> AdminRerouteOut:
    """Like a temporary ``[[delivery.routes]]`` entry, before the configured ones: mail
    to the domain (or to every domain whose MX hosts match the provider's throttle rule)
    goes to ``host:port`` until the duration ends, ``resume`` names the same domain or
    provider, or the reroute is deleted. Every node follows within ``[queue]
    scan_interval`` (this one at once); a new reroute of the same destination replaces
    the old one. Mail being delivered at the change finishes where it went."""
    found = await reroutes.reroute(
        ctl,
        domain=_domain(body.domain) if body.domain else None,
        provider=(body.provider or "").strip().lower() or None,
        host=body.host,
        port=body.port,
        duration=_duration(body.duration),
        reason=body.reason,
    )
    return _reroute(found)


@router.delete(
    "/queues/reroute/{reroute_id}",
    responses=_ACTION,
    summary="End a reroute now",
)
async def end_reroute(reroute_id: str, ctl: Control) -> AdminRerouteOut:
    return _reroute(await reroutes.remove(ctl, reroute_id))
