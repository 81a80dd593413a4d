"""/v1/audit: the tenant's own audit entries — the changes its keys made to its
configuration (domains, webhooks, suppressions, queue pauses) and what operators did to
it (pauses, keys, queue actions naming it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from postline.api.admin_schemas import AuditEntryOut, TenantAuditOut
from postline.api.context import require, tenant_control
from postline.api.problems import id_cursor
from postline.api.schemas import ProblemOut
from postline.control import audit
from postline.store.base import Tenant

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get(
    "/audit",
    responses={401: {"model": ProblemOut}, 422: {"model": ProblemOut}},
    summary="This tenant's audit entries, oldest first, one page at a time",
)
async def audit_log(
    request: Request,
    tenant: Annotated[Tenant, require("read")],
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
) -> TenantAuditOut:
    """Entries naming this tenant only: who acted (``tenant_key`` with the key's id, or an
    operator's token; ``cli`` for a command on the node), what, on which object, in which
    request (``X-Request-Id``) and what changed (never a secret)."""
    after = id_cursor(cursor)
    found = await audit.entries(
        tenant_control(request, tenant), tenant_id=tenant.id, after=after, limit=limit
    )
    return TenantAuditOut(
        entries=[AuditEntryOut.of(e) for e in found],
        next_cursor=str(found[-1].id) if len(found) == limit else None,
    )
