"""/v1/webhooks: endpoints that receive the tenant's events, signed (Standard Webhooks),
batched, retried, with a log of every batch and replay (see docs/webhooks.md)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from postline.api.context import ApiContext, audited, require
from postline.api.problems import Problem
from postline.api.schemas import ProblemOut
from postline.events import iso
from postline.store.base import Tenant, Webhook, WebhookDelivery
from postline.webhooks.service import Invalid, WebhookService, WebhookState

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["webhooks"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemOut, "description": "Missing or invalid API key"},
    404: {"model": ProblemOut, "description": "No such webhook"},
    422: {"model": ProblemOut, "description": "Invalid request"},
}
_STATUSES = ("ok", "failed", "dead")


class WebhookIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(description="https:// URL that receives POSTs of event batches.")
    events: list[str] | None = Field(None, description="Event types to send; omit for all.")
    description: str = Field("", max_length=1000)
    batch_size: int = Field(100, description="Most events per POST (1-1000).")


class WebhookPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = None
    events: list[str] | None = None
    description: str | None = Field(None, max_length=1000)
    batch_size: int | None = None
    enabled: bool | None = Field(None, description="false pauses deliveries; true resumes.")


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    since: str | float = Field(
        description="An event id (as in GET /v1/events) or a time (RFC 3339 or Unix "
        "seconds): every event from there on is sent again, in order."
    )


def _service(request: Request) -> WebhookService:
    ctx: ApiContext = request.app.state.ctx
    if ctx.webhooks is None:
        raise Problem(503, "unavailable", "Webhooks are not available on this node.")
    return ctx.webhooks


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json"
    )


def _invalid(exc: Invalid) -> Problem:
    return Problem(
        422,
        "validation",
        str(exc),
        fix=exc.fix,
        errors=[{"field": exc.field, "message": str(exc)}],
    )


def _not_found(hook_id: str) -> Problem:
    return Problem(
        404,
        "not-found",
        f"No webhook {hook_id!r} for this tenant.",
        fix="List your webhooks with GET /v1/webhooks.",
    )


def _hook(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "description": hook.description,
        "batch_size": hook.batch_size,
        "status": hook.status,
        "disabled_reason": hook.disabled_reason or None,
        "created_at": iso(hook.created_at),
        "updated_at": iso(hook.updated_at),
        "last_event_id": str(hook.cursor),
        "retrying": {
            "batch_id": hook.batch_id,
            "attempts": hook.attempts,
            "next_attempt_at": iso(hook.next_attempt_at),
        }
        if hook.batch_id and hook.attempts
        else None,
    }


def _state(state: WebhookState) -> dict[str, Any]:
    return {
        **_hook(state.hook),
        "lag_seconds": None if state.lag_seconds is None else round(state.lag_seconds, 3),
        "oldest_pending_event_id": None if state.pending_from is None else str(state.pending_from),
        "deliveries": {s: state.deliveries.get(s, 0) for s in _STATUSES},
    }


def _delivery(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "status": d.status,
        "first_event_id": str(d.first_event),
        "last_event_id": str(d.last_event),
        "events": d.count,
        "attempts": d.attempts,
        "created_at": iso(d.created_at),
        "last_attempt_at": iso(d.updated_at),
        "response_code": d.response_code,
        "latency_ms": d.latency_ms,
        "error": d.error or None,
    }


async def _get(service: WebhookService, tenant: Tenant, hook_id: str) -> Webhook:
    hook = await service.get(tenant.id, hook_id)
    if hook is None:
        raise _not_found(hook_id)
    return hook


def _audit(hook: Webhook) -> dict[str, Any]:
    """What the audit log keeps of an endpoint: where it posts (scheme, host and path; no
    query, no credentials), what and whether (never its secret)."""
    url = urlsplit(hook.url)
    port = f":{url.port}" if url.port else ""
    return {
        "url": f"{url.scheme}://{url.hostname or ''}{port}{url.path}",
        "events": list(hook.events),
        "status": hook.status,
    }


@router.post(
    "/webhooks",
    status_code=201,
    responses=_ERRORS,
    summary="Register an endpoint; the answer holds its signing secret, shown only once",
)
async def create_webhook(
    request: Request, body: WebhookIn, tenant: Annotated[Tenant, require("webhooks")]
) -> Response:
    service = _service(request)
    try:
        hook, secret = await service.create(
            tenant.id,
            url=body.url,
            events=body.events,
            description=body.description,
            batch_size=body.batch_size,
        )
    except Invalid as exc:
        raise _invalid(exc) from None
    await audited(request, tenant, "webhook.create", hook.id, _audit(hook))
    return _json({**_hook(hook), "secret": secret}, 201)


@router.get("/webhooks", responses=_ERRORS, summary="The tenant's endpoints and their state")
async def list_webhooks(
    request: Request, tenant: Annotated[Tenant, require("webhooks")]
) -> Response:
    service = _service(request)
    hooks = await service.endpoints(tenant.id)
    return _json({"webhooks": [_state(await service.state(h)) for h in hooks]})


@router.get("/webhooks/{hook_id}", responses=_ERRORS, summary="One endpoint and its state")
async def get_webhook(
    request: Request, hook_id: str, tenant: Annotated[Tenant, require("webhooks")]
) -> Response:
    service = _service(request)
    return _json(_state(await service.state(await _get(service, tenant, hook_id))))


@router.patch("/webhooks/{hook_id}", responses=_ERRORS, summary="Change an endpoint")
async def patch_webhook(
    request: Request,
    hook_id: str,
    body: WebhookPatch,
    tenant: Annotated[Tenant, require("webhooks")],
) -> Response:
    service = _service(request)
    changes = body.model_dump(exclude_unset=True)
    for name in ("url", "batch_size", "enabled", "description"):
        if name in changes and changes[name] is None:
            raise _invalid(Invalid(name, f"{name} cannot be null.", f"Give a {name} or omit it."))
    try:
        hook = await service.update(tenant.id, hook_id, changes)
    except Invalid as exc:
        raise _invalid(exc) from None
    if hook is None:
        raise _not_found(hook_id)
    await audited(
        request, tenant, "webhook.update", hook.id, {**_audit(hook), "changed": sorted(changes)}
    )
    return _json(_state(await service.state(hook)))


@router.delete(
    "/webhooks/{hook_id}", status_code=204, responses=_ERRORS, summary="Remove an endpoint"
)
async def delete_webhook(
    request: Request, hook_id: str, tenant: Annotated[Tenant, require("webhooks")]
) -> Response:
    service = _service(request)
    hook = await _get(service, tenant, hook_id)
    if not await service.delete(tenant.id, hook_id):
        raise _not_found(hook_id)
    await audited(request, tenant, "webhook.delete", hook.id, _audit(hook))
    return Response(status_code=204)


@router.post(
    "/webhooks/{hook_id}/rotate-secret",
    responses=_ERRORS,
    summary="A new signing secret; the old one keeps signing beside it for 24 hours",
)
async def rotate_secret(
    request: Request, hook_id: str, tenant: Annotated[Tenant, require("webhooks")]
) -> Response:
    rotated = await _service(request).rotate(tenant.id, hook_id)
    if rotated is None:
        raise _not_found(hook_id)
    hook, secret = rotated
    await audited(request, tenant, "webhook.rotate_secret", hook.id, _audit(hook))
    return _json(
        {"id": hook.id, "secret": secret, "old_secret_expires_at": iso(hook.old_secret_until)}
    )


@router.post(
    "/webhooks/{hook_id}/test",
    responses=_ERRORS,
    summary="POST one 'test' event to the endpoint now and report how it answered",
)
async def test_webhook(
    request: Request, hook_id: str, tenant: Annotated[Tenant, require("webhooks")]
) -> Response:
    service = _service(request)
    attempt = await service.test(await _get(service, tenant, hook_id))
    return _json(
        {
            "ok": attempt.ok,
            "response_code": attempt.status,
            "latency_ms": attempt.latency_ms,
            "error": attempt.error or None,
        }
    )


@router.get(
    "/webhooks/{hook_id}/deliveries",
    responses=_ERRORS,
    summary="Batches sent to the endpoint, newest first",
)
async def list_deliveries(
    request: Request,
    hook_id: str,
    tenant: Annotated[Tenant, require("webhooks")],
    status: Annotated[str | None, Query(description="ok, failed or dead")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    service = _service(request)
    await _get(service, tenant, hook_id)
    if status is not None and status not in _STATUSES:
        raise _invalid(Invalid("status", f"Unknown status {status!r}.", "Use ok, failed or dead."))
    before = None
    if cursor is not None:
        try:
            before = float(cursor)
        except ValueError:
            raise _invalid(
                Invalid("cursor", "Not a cursor from this API.", "Pass next_cursor unchanged.")
            ) from None
    found = await service.deliveries(tenant.id, hook_id, status=status, before=before, limit=limit)
    next_cursor = repr(found[-1].updated_at) if len(found) == limit else None
    return _json({"deliveries": [_delivery(d) for d in found], "next_cursor": next_cursor})


@router.post(
    "/webhooks/{hook_id}/replay",
    status_code=202,
    responses=_ERRORS,
    summary="Send the endpoint's events again from an event id or a time on",
)
async def replay(
    request: Request,
    hook_id: str,
    body: ReplayIn,
    tenant: Annotated[Tenant, require("webhooks")],
) -> Response:
    service = _service(request)
    since_event: int | None = None
    since: float | None = None
    if isinstance(body.since, str) and body.since.isdigit() and len(body.since) <= 18:
        since_event = int(body.since)
    else:
        since = _time(body.since)
    replayed = await service.replay(tenant.id, hook_id, since_event=since_event, since=since)
    if replayed is None:
        raise _not_found(hook_id)
    _, first = replayed
    return _json({"id": hook_id, "from_event_id": str(first)}, 202)


def _time(value: str | float) -> float:
    if isinstance(value, int | float):
        return float(value)

    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        dt = None
    if dt is None or dt.tzinfo is None:
        raise _invalid(
            Invalid(
                "since",
                f"since={value!r} is neither an event id nor a time with a time zone.",
                "Give an event id (digits) or RFC 3339 (2026-12-01T10:00:00Z).",
            )
        )
    return min(dt.timestamp(), time.time())
