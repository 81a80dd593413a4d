"""/v1/suppressions: the tenant's suppression list — list, look up, add, remove.

A tenant sees and changes only its own entries. Entries of the global list (tenant ``*``,
managed with ``postline suppress --global``) also stop the tenant's mail but are neither
listed nor changed here.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError as PydanticValidationError

from postline.api.context import ApiContext, audited, require
from postline.api.problems import Problem, bad_cursor
from postline.api.schemas import (
    ProblemOut,
    SuppressionIn,
    SuppressionsAdded,
    SuppressionsIn,
    SuppressionsOut,
    iso,
)
from postline.ingest.addresses import InvalidAddress, parse_address
from postline.store.base import Suppression, Tenant

__all__ = ["MAX_ENTRIES", "REASONS", "router"]

router = APIRouter(prefix="/v1", tags=["suppressions"])

#: Every reason an entry can have; a client may add all but ``soft_bounce``.
REASONS = ("hard_bounce", "soft_bounce", "complaint", "unsubscribe", "manual")
#: Entries per POST.
MAX_ENTRIES = 1000

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemOut, "description": "Missing or invalid API key"},
    422: {"model": ProblemOut, "description": "Invalid query or entries"},
}
_FIXES = {
    "address": "Give a bare address such as 'ann@example.com' (no display name).",
    "reason": "Use manual, unsubscribe, complaint or hard_bounce (soft_bounce entries are "
    "added by postline itself), or leave it out for manual.",
    "expires_at": "Use a future RFC 3339 time with a time zone (2026-12-01T00:00:00Z), or "
    "null for an entry that never lapses.",
    "detail": "Keep the note to 1000 characters or fewer.",
}


def _address(value: str) -> str:
    """The address as entries store it: domain in ASCII, all lower-cased. A value that is
    no valid address is only lower-cased (it matches nothing)."""
    text = value.strip()
    try:
        return parse_address(text).address.lower()
    except InvalidAddress:
        return text.lower()


def _encode_cursor(address: str) -> str:
    return base64.urlsafe_b64encode(address.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        text = cursor.strip()
        address = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
        if "@" not in address:
            raise ValueError(cursor)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_cursor(cursor) from None
    return address


def _out(s: Suppression) -> dict[str, Any]:
    return {
        "address": s.address,
        "reason": s.reason,
        "created_at": iso(s.created_at),
        "expires_at": iso(s.expires_at),
        "source": s.source,
        "detail": s.detail,
        "message_id": s.message_id,
    }


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json"
    )


@router.get(
    "/suppressions",
    response_model=SuppressionsOut,
    responses=_ERRORS,
    summary="The tenant's suppression list, in address order, one page at a time",
)
async def list_suppressions(
    request: Request,
    tenant: Annotated[Tenant, require("suppressions")],
    reason: Annotated[
        str | None,
        Query(description="Keep only entries with this reason: " + ", ".join(REASONS)),
    ] = None,
    address: Annotated[
        str | None,
        Query(description="Look up one address (case-insensitive); cursor is then ignored."),
    ] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Live entries (not expired) of this tenant. Entries of the operator's global list
    are not included, even though they stop the tenant's mail too."""
    ctx: ApiContext = request.app.state.ctx
    if reason is not None and reason not in REASONS:
        raise Problem(
            422,
            "validation",
            f"reason={reason!r} is not a suppression reason.",
            fix=f"Use one of: {', '.join(REASONS)}.",
            errors=[{"field": "reason", "message": "unknown reason"}],
        )
    now = time.time()
    if address is not None:
        found = await ctx.store.suppressed(tenant.id, [_address(address)], now=now)
        entries = [
            s
            for s in found.values()
            if s.tenant_id == tenant.id and (reason is None or s.reason == reason)
        ]
        return _json(200, {"data": [_out(s) for s in entries], "next_cursor": None})
    after = _decode_cursor(cursor) if cursor else ""
    page = await ctx.store.list_suppressions(
        tenant.id, after=after, limit=limit + 1, reason=reason, now=now
    )
    more = len(page) > limit
    page = page[:limit]
    return _json(
        200,
        {
            "data": [_out(s) for s in page],
            "next_cursor": _encode_cursor(page[-1].address) if more else None,
        },
    )


def _entry_errors(index: int, exc: PydanticValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        name = loc[0] if loc else ""
        field = f"suppressions[{index}]" + (f".{'.'.join(loc)}" if loc else "")
        kind = err.get("type")
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        fix = _FIXES.get(name, "Correct the entry.")
        if kind == "model_type":
            msg = "an entry must be a JSON object"
            fix = 'Send {"address": "ann@example.com", "reason": "manual"}.'
        elif kind == "extra_forbidden":
            msg = "unknown field"
            fix = "Use only address, reason, expires_at and detail."
        elif kind == "missing":
            msg = "this field is required"
        out.append({"index": index, "field": field, "message": msg, "fix": fix})
    return out


_AUDITED = 20  # addresses of one request named in its audit entry (the rest counted)


@router.post(
    "/suppressions",
    response_model=SuppressionsAdded,
    responses={
        **_ERRORS,
        400: {"model": ProblemOut, "description": "Malformed JSON"},
        413: {"model": ProblemOut, "description": "Body too large"},
    },
    summary="Add addresses to the tenant's suppression list",
)
async def add_suppressions(
    payload: SuppressionsIn,
    request: Request,
    tenant: Annotated[Tenant, require("suppressions")],
) -> Response:
    """Add up to 1000 entries, or replace the entries of addresses already on the list.

    The request is all or nothing: when any entry is invalid, nothing is added and the
    422 problem's ``errors`` lists each bad entry with its ``index``, the ``field``, what
    is wrong (``message``) and how to fix it (``fix``). Mail to a suppressed address is
    not sent: its recipient ends as ``suppressed``.
    """
    ctx: ApiContext = request.app.state.ctx
    count = len(payload.suppressions)
    if not count or count > MAX_ENTRIES:
        raise Problem(
            422,
            "validation",
            f"The request has {count} entries; 1 to {MAX_ENTRIES} are allowed.",
            fix="Put at least one entry in 'suppressions'."
            if not count
            else f"Split the list into requests of {MAX_ENTRIES} entries or fewer.",
            errors=[{"field": "suppressions", "message": f"1 to {MAX_ENTRIES} entries"}],
        )
    now = time.time()
    errors: list[dict[str, Any]] = []
    entries: dict[str, Suppression] = {}
    for i, item in enumerate(payload.suppressions):
        try:
            valid = SuppressionIn.model_validate(item)
        except PydanticValidationError as exc:
            errors.extend(_entry_errors(i, exc))
            continue
        address = valid.address.lower()
        entries.pop(address, None)  # a repeated address: the last entry wins
        entries[address] = Suppression(
            tenant_id=tenant.id,
            address=address,
            reason=valid.reason,
            created_at=now,
            expires_at=valid.expires_at.timestamp() if valid.expires_at else None,
            source="api",
            detail=valid.detail,
        )
    if errors:
        bad = len({e["index"] for e in errors})
        summary = "; ".join(f"{e['field']}: {e['message'].rstrip('.')}" for e in errors[:5])
        raise Problem(
            422,
            "validation",
            f"{bad} of the {count} entries are invalid, so none was added: {summary}.",
            fix="Correct the entries listed in 'errors' (by index) and send the request again.",
            errors=errors,
        )
    await ctx.store.add_suppressions(list(entries.values()))
    shown = sorted(entries)[:_AUDITED]
    detail = {"count": len(entries), "addresses": shown, "more": len(entries) - len(shown)}
    await audited(request, tenant, "suppression.add", tenant.id, detail)
    return _json(200, {"added": len(entries)})


@router.delete(
    "/suppressions/{address:path}",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Removed"},
        401: {"model": ProblemOut, "description": "Missing or invalid API key"},
        404: {"model": ProblemOut, "description": "The address is not on the tenant's list"},
    },
    summary="Remove an address from the tenant's suppression list",
)
async def remove_suppression(
    address: str, request: Request, tenant: Annotated[Tenant, require("suppressions")]
) -> Response:
    """The address is URL-encoded in the path (``ann%40example.com``) and matched without
    regard to case. Mail to it is sent again from then on, unless the global list holds
    it."""
    ctx: ApiContext = request.app.state.ctx
    removed = _address(address)
    if not await ctx.store.remove_suppression(tenant.id, removed):
        raise Problem(
            404,
            "not-found",
            f"{address!r} is not on this tenant's suppression list.",
            fix="Check the address with GET /v1/suppressions?address=...; entries of the "
            "global list are removed by the operator ('postline suppress remove --global').",
        )
    await audited(request, tenant, "suppression.remove", removed)
    return Response(status_code=204)
