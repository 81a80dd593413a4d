"""/v1/events: the tenant's event log, cursor-paged and filtered."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from postline.api.context import ApiContext, require
from postline.api.problems import Problem, id_cursor
from postline.api.schemas import EventsOut, ProblemOut
from postline.events import event_object
from postline.ingest.addresses import InvalidAddress, parse_address
from postline.model import EventType
from postline.store.base import EventQuery, Tenant

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["events"])

_TYPES = {t.value for t in EventType}


def _time(name: str, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        if value.replace(".", "", 1).isdigit():
            return float(value)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(
            422,
            "validation",
            f"{name}={value!r} is not a time.",
            fix="Use RFC 3339 (2026-11-27T10:00:00Z) or Unix seconds.",
            errors=[{"field": name, "message": "not a time"}],
        ) from None
    if dt.tzinfo is None:
        raise Problem(
            422,
            "validation",
            f"{name}={value!r} has no time zone.",
            fix="Add one, e.g. 'Z' for UTC.",
            errors=[{"field": name, "message": "no time zone"}],
        )
    return dt.timestamp()


def _address(value: str | None) -> str | None:
    """The recipient filter with its domain in ASCII form, as stored; the store compares
    addresses without regard to case."""
    if value is None:
        return None
    try:
        return parse_address(value.strip()).address
    except InvalidAddress:
        return value


@router.get(
    "/events",
    response_model=EventsOut,
    responses={401: {"model": ProblemOut}, 422: {"model": ProblemOut}},
    summary="Events, oldest first, one page at a time",
)
async def list_events(
    request: Request,
    tenant: Annotated[Tenant, require("read")],
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    type: Annotated[
        list[str] | None, Query(description="Event types to keep (repeat or comma-separate)")
    ] = None,
    message_id: Annotated[str | None, Query()] = None,
    recipient: Annotated[str | None, Query(description="Recipient address")] = None,
    since: Annotated[str | None, Query(description="RFC 3339 or Unix time, inclusive")] = None,
    until: Annotated[str | None, Query(description="RFC 3339 or Unix time, exclusive")] = None,
) -> Response:
    ctx: ApiContext = request.app.state.ctx
    after = id_cursor(cursor)
    types: list[str] = []
    for item in type or []:
        types.extend(t.strip() for t in item.split(",") if t.strip())
    unknown = sorted(set(types) - _TYPES)
    if unknown:
        raise Problem(
            422,
            "validation",
            f"Unknown event type(s): {', '.join(unknown)}.",
            fix=f"Use one of: {', '.join(sorted(_TYPES))}.",
            errors=[{"field": "type", "message": "unknown event type"}],
        )
    events = await ctx.store.events(
        EventQuery(
            tenant_id=tenant.id,
            after=after,
            limit=limit,
            types=types,
            message_id=message_id,
            recipient=_address(recipient),
            since=_time("since", since),
            until=_time("until", until),
        )
    )
    out = [event_object(e) for e in events]
    next_cursor = str(events[-1].id) if events else (cursor or None)
    body = {"events": out, "next_cursor": next_cursor}
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")
