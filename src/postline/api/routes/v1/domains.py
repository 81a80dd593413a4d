"""/v1/domains: the tenant's sender domains — DKIM keys, records to publish, verification.

Private keys never appear in a response: only selectors, algorithms and public keys.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from postline.api.context import ApiContext, audited, require
from postline.api.problems import Problem
from postline.api.schemas import ProblemOut, iso
from postline.dkim import RecordStatus
from postline.domains.service import ALGORITHMS, DomainService, record_json, statuses
from postline.errors import ValidationError
from postline.store.base import SenderDomain, Tenant

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["domains"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemOut, "description": "Missing or invalid API key"},
    404: {"model": ProblemOut, "description": "The tenant has no such domain"},
    422: {"model": ProblemOut, "description": "Invalid domain or algorithm"},
}


class DomainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domain: str = Field(description="The domain of your From addresses, e.g. shop.example.com.")
    algorithm: str | None = Field(
        None,
        description=f"DKIM key type: one of {', '.join(ALGORITHMS)}; default from "
        "[domains] dkim_algorithm.",
    )


class RotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    algorithm: str | None = Field(None, description="Key type of the new key; default: as now.")


class RecordOut(BaseModel):
    type: str
    name: str
    value: str
    purpose: str = Field(description="dkim, spf, dmarc or return_path.")
    strings: list[str] = Field(
        description="A TXT value as DNS carries it: character-strings of at most 255 bytes "
        "(a 2048-bit DKIM key needs two). Paste them as separate quoted strings of one "
        "record where your DNS host asks for them; most DNS consoles split a long value by "
        "themselves. For MX and CNAME: the value."
    )
    zone: str = Field(description="The record as a line of a zone file (BIND syntax).")
    status: str | None = Field(
        None, description="ok, missing, wrong or error (lookup failed) at the last check."
    )
    found: list[str] = Field(default_factory=list, description="What DNS answered.")
    fix: str = Field("", description="What to publish or change when not ok.")


class NoteOut(BaseModel):
    purpose: str = Field(description="spf or return_path: a record not asked for.")
    detail: str = Field(description="Why this node asks for no such record.")
    fix: str = Field(description="What to configure on the node to get one.")


class KeyOut(BaseModel):
    selector: str
    algorithm: str
    state: str = Field(description="active (signs), pending (rotation) or retired.")
    created_at: str | None
    public_key: str


class DomainOut(BaseModel):
    domain: str
    status: str = Field(
        description="pending (records not found yet), verified (DKIM record published: mail "
        "from it is signed), failed (was verified, the record is gone)."
    )
    created_at: str | None
    verified_at: str | None
    checked_at: str | None
    keys: list[KeyOut]
    records: list[RecordOut]
    notes: list[NoteOut] = Field(
        description="Records this node does not ask the domain to publish, and why."
    )


class DomainsOut(BaseModel):
    data: list[DomainOut]


def _service(request: Request) -> DomainService:
    ctx: ApiContext = request.app.state.ctx
    service = ctx.extra.get("domains")
    if not isinstance(service, DomainService):
        raise Problem(503, "unavailable", "Sender domains are not available on this node.")
    return service


def _out(
    service: DomainService, d: SenderDomain, results: list[RecordStatus] | None = None
) -> dict[str, Any]:
    last = {(r["type"], r["name"], r["purpose"]): r for r in statuses(d)}
    if results is not None:
        last = {
            (r.record.type, r.record.name, r.record.purpose): {
                "status": r.status,
                "found": list(r.found),
                "fix": r.fix,
            }
            for r in results
        }
    records = []
    for rec in service.records(d):
        out = record_json(rec)
        seen = last.get((rec.type, rec.name, rec.purpose))
        out["status"] = seen.get("status") if seen else None
        out["found"] = list(seen.get("found", [])) if seen else []
        out["fix"] = seen.get("fix", "") if seen else ""
        records.append(out)
    return {
        "domain": d.domain,
        "status": d.status,
        "created_at": iso(d.created_at),
        "verified_at": iso(d.verified_at),
        "checked_at": iso(d.checked_at),
        "keys": [
            {
                "selector": k.selector,
                "algorithm": k.algorithm,
                "state": k.state,
                "created_at": iso(k.created_at),
                "public_key": k.public_key,
            }
            for k in d.keys
        ],
        "records": records,
        "notes": service.notes(),
    }


def _not_found(domain: str) -> Problem:
    return Problem(
        404,
        "not-found",
        f"This account has no sender domain {domain!r}.",
        fix="Add it with POST /v1/domains; list yours with GET /v1/domains.",
    )


def _invalid(exc: ValidationError) -> Problem:
    return Problem(
        422,
        "validation",
        str(exc),
        fix=exc.fix,
        errors=[{"field": exc.field or "body", "message": str(exc)}],
    )


def _keys(d: SenderDomain) -> dict[str, Any]:
    """What the audit log keeps of a domain: its status and keys' selectors (no key)."""
    return {"status": d.status, "selectors": [k.selector for k in d.keys]}


@router.post(
    "/domains",
    status_code=201,
    response_model=DomainOut,
    responses={**_ERRORS, 409: {"model": ProblemOut, "description": "Already added"}},
    summary="Add a sender domain",
)
async def add_domain(
    payload: DomainIn, request: Request, tenant: Annotated[Tenant, require("domains")]
) -> Response:
    """Create a DKIM key for the domain and return the DNS records to publish. Then call
    ``POST /v1/domains/{domain}/verify``."""
    service = _service(request)
    try:
        created = await service.create(tenant.id, payload.domain, payload.algorithm)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    if created is None:
        raise Problem(
            409,
            "conflict",
            f"The domain {payload.domain!r} was added already.",
            fix="GET /v1/domains/{domain} shows its records; POST .../rotate makes a new key.",
        )
    await audited(request, tenant, "domain.add", created.domain, _keys(created))
    return JSONResponse(_out(service, created), status_code=201)


@router.get("/domains", response_model=DomainsOut, responses=_ERRORS, summary="List sender domains")
async def list_domains(
    request: Request, tenant: Annotated[Tenant, require("domains")]
) -> dict[str, Any]:
    service = _service(request)
    return {"data": [_out(service, d) for d in await service.all(tenant.id)]}


async def _get(service: DomainService, tenant: Tenant, domain: str) -> SenderDomain:
    try:
        found = await service.get(tenant.id, domain)
    except ValidationError as exc:
        raise _not_found(domain) from exc
    if found is None:
        raise _not_found(domain)
    return found


@router.get(
    "/domains/{domain}",
    response_model=DomainOut,
    responses=_ERRORS,
    summary="A sender domain, its keys and records",
)
async def get_domain(
    domain: str, request: Request, tenant: Annotated[Tenant, require("domains")]
) -> dict[str, Any]:
    """The records to publish, each with the result of the last check."""
    service = _service(request)
    return _out(service, await _get(service, tenant, domain))


@router.post(
    "/domains/{domain}/verify",
    response_model=DomainOut,
    responses=_ERRORS,
    summary="Look the records up now",
)
async def verify_domain(
    domain: str, request: Request, tenant: Annotated[Tenant, require("domains")]
) -> dict[str, Any]:
    """Query DNS for every record and report each as ok / missing / wrong / error with the
    fix. The domain is verified (and its mail signed) once its DKIM record is published."""
    service = _service(request)
    found = await _get(service, tenant, domain)
    result = await service.verify(tenant.id, found.domain)
    if result is None:
        raise _not_found(domain)
    updated, results = result
    if updated.status != found.status:
        await audited(
            request,
            tenant,
            "domain.verify",
            updated.domain,
            {"previous": found.status, "status": updated.status},
        )
    return _out(service, updated, results)


@router.post(
    "/domains/{domain}/rotate",
    response_model=DomainOut,
    responses=_ERRORS,
    summary="Start a DKIM key rotation",
)
async def rotate_domain(
    domain: str,
    request: Request,
    tenant: Annotated[Tenant, require("domains")],
    payload: RotateIn | None = None,
) -> dict[str, Any]:
    """Add a pending key with a new selector. Publish its DKIM record and verify: it then
    signs, and the old key is retired (leave the old record published for a few days)."""
    service = _service(request)
    found = await _get(service, tenant, domain)
    try:
        rotated = await service.rotate(
            tenant.id, found.domain, payload.algorithm if payload else None
        )
    except ValidationError as exc:
        raise _invalid(exc) from exc
    if rotated is None:
        raise _not_found(domain)
    await audited(request, tenant, "domain.rotate", rotated.domain, _keys(rotated))
    return _out(service, rotated)


@router.delete(
    "/domains/{domain}", status_code=204, responses=_ERRORS, summary="Remove a sender domain"
)
async def delete_domain(
    domain: str, request: Request, tenant: Annotated[Tenant, require("domains")]
) -> Response:
    """Remove the domain and its keys: mail from it is no longer signed."""
    service = _service(request)
    found = await _get(service, tenant, domain)
    await service.remove(tenant.id, found.domain)
    await audited(request, tenant, "domain.remove", found.domain, _keys(found))
    return Response(status_code=204)
