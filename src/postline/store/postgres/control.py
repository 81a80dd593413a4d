"""PostgreSQL store: admin tokens, the audit log and operators' reroutes."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from postline.errors import IntegrityViolation
from postline.model.ids import new_id
from postline.store._rows import audit_entry_of
from postline.store.base import AdminToken, AuditEntry, NewAuditEntry, Reroute
from postline.store.postgres.core import _Q, PostgresCore, _rowcount

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresControl"]


class PostgresControl(PostgresCore):
    """Admin tokens, the audit log and operators' reroutes.

    Audit ids come from an identity column: two entries written at once may commit out
    of id order, so a reader paging with ``after`` may see a gap filled a moment later
    (operator actions are rare; the log is for reading, not for a cursor that must never
    skip)."""

    async def add_admin_token(self, name: str, token_hash: str, prefix: str) -> AdminToken:
        token = AdminToken(id=new_id(), name=name, prefix=prefix, created_at=time.time())

        async def op(conn: Conn) -> None:
            await conn.execute(
                _Q["add_admin_token"], token.id, name, token_hash, prefix, token.created_at
            )

        try:
            await self._call(op)
        except IntegrityViolation as exc:
            raise IntegrityViolation("an admin token with this hash exists already") from exc
        return token

    async def admin_tokens(self) -> list[AdminToken]:
        async def op(conn: Conn) -> list[AdminToken]:
            return [AdminToken(*row) for row in await conn.fetch(_Q["admin_tokens"])]

        return await self._call(op)

    async def admin_token_for_hash(self, token_hash: str) -> AdminToken | None:
        async def op(conn: Conn) -> AdminToken | None:
            row = await conn.fetchrow(_Q["admin_token_for_hash"], token_hash)
            return AdminToken(*row) if row else None

        return await self._call(op)

    async def touch_admin_token(self, token_id: str, *, now: float) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(_Q["touch_admin_token"], token_id, now)

        await self._call(op)

    async def revoke_admin_token(self, token_id: str, *, now: float) -> bool:
        async def op(conn: Conn) -> bool:
            return _rowcount(await conn.execute(_Q["revoke_admin_token"], token_id, now)) > 0

        return await self._call(op)

    async def append_audit(self, entry: NewAuditEntry) -> int:
        async def op(conn: Conn) -> int:
            return int(
                await conn.fetchval(
                    _Q["append_audit"],
                    entry.at,
                    entry.actor_kind,
                    entry.actor_id,
                    entry.tenant_id,
                    entry.action,
                    entry.target,
                    entry.request_id,
                    json.dumps(entry.detail, sort_keys=True),
                )
            )

        return await self._call(op)

    async def audit_entries(
        self, *, tenant_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[AuditEntry]:
        async def op(conn: Conn) -> list[AuditEntry]:
            rows = await conn.fetch(_Q["audit_entries"], after, tenant_id, limit)
            return [audit_entry_of(row) for row in rows]

        return await self._call(op)

    async def add_reroute(self, reroute: Reroute) -> None:
        r = reroute

        async def op(conn: Conn) -> None:
            await conn.execute(
                _Q["add_reroute"],
                r.id,
                r.domain,
                r.provider,
                r.host,
                r.port,
                r.created_at,
                r.until,
                r.reason,
            )

        await self._call(op)

    async def reroutes(self) -> list[Reroute]:
        async def op(conn: Conn) -> list[Reroute]:
            return [Reroute(*row) for row in await conn.fetch(_Q["reroutes"])]

        return await self._call(op)

    async def remove_reroute(self, reroute_id: str) -> Reroute | None:
        async def op(conn: Conn) -> Reroute | None:
            row = await conn.fetchrow(_Q["remove_reroute"], reroute_id)
            return Reroute(*row) if row else None

        return await self._call(op)
