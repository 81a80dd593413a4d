"""SQLite store: admin tokens, the audit log and operators' reroutes."""

from __future__ import annotations

import json
import sqlite3
import time

from postline.errors import IntegrityViolation
from postline.model.ids import new_id
from postline.store._rows import audit_entry_of
from postline.store.base import AdminToken, AuditEntry, NewAuditEntry, Reroute
from postline.store.sqlite.core import _Q, SQLiteCore

__all__ = ["SQLiteControl"]


class SQLiteControl(SQLiteCore):
    """Admin tokens, the audit log and operators' reroutes."""

    async def add_admin_token(self, name: str, token_hash: str, prefix: str) -> AdminToken:
        token = AdminToken(id=new_id(), name=name, prefix=prefix, created_at=time.time())
        params = {
            "id": token.id,
            "name": name,
            "token_hash": token_hash,
            "prefix": prefix,
            "created_at": token.created_at,
        }

        def op(conn: sqlite3.Connection) -> AdminToken:
            try:
                conn.execute(_Q["add_admin_token"], params)
            except sqlite3.IntegrityError as exc:
                raise IntegrityViolation("an admin token with this hash exists already") from exc
            return token

        return await self._write(op)

    async def admin_tokens(self) -> list[AdminToken]:
        return await self._read(
            lambda conn: [AdminToken(*row) for row in conn.execute(_Q["admin_tokens"])]
        )

    async def admin_token_for_hash(self, token_hash: str) -> AdminToken | None:
        def op(conn: sqlite3.Connection) -> AdminToken | None:
            row = conn.execute(_Q["admin_token_for_hash"], {"token_hash": token_hash}).fetchone()
            return AdminToken(*row) if row else None

        return await self._read(op)

    async def touch_admin_token(self, token_id: str, *, now: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(_Q["touch_admin_token"], {"id": token_id, "now": now})

        await self._write(op)

    async def revoke_admin_token(self, token_id: str, *, now: float) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            return conn.execute(_Q["revoke_admin_token"], {"id": token_id, "now": now}).rowcount > 0

        return await self._write(op)

    async def append_audit(self, entry: NewAuditEntry) -> int:
        params = {
            "at": entry.at,
            "actor_kind": entry.actor_kind,
            "actor_id": entry.actor_id,
            "tenant_id": entry.tenant_id,
            "action": entry.action,
            "target": entry.target,
            "request_id": entry.request_id,
            "detail": json.dumps(entry.detail, sort_keys=True),
        }

        def op(conn: sqlite3.Connection) -> int:
            row_id = conn.execute(_Q["append_audit"], params).lastrowid
            assert row_id is not None
            return row_id

        return await self._write(op)

    async def audit_entries(
        self, *, tenant_id: str | None = None, after: int = 0, limit: int = 100
    ) -> list[AuditEntry]:
        params = {"tenant_id": tenant_id, "after": after, "limit": limit}

        def op(conn: sqlite3.Connection) -> list[AuditEntry]:
            cur = conn.cursor()
            cur.row_factory = sqlite3.Row
            return [audit_entry_of(row) for row in cur.execute(_Q["audit_entries"], params)]

        return await self._read(op)

    async def add_reroute(self, reroute: Reroute) -> None:
        params = {
            "id": reroute.id,
            "domain": reroute.domain,
            "provider": reroute.provider,
            "host": reroute.host,
            "port": reroute.port,
            "created_at": reroute.created_at,
            "until": reroute.until,
            "reason": reroute.reason,
        }

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(_Q["add_reroute"], params)

        await self._write(op)

    async def reroutes(self) -> list[Reroute]:
        return await self._read(
            lambda conn: [Reroute(*row) for row in conn.execute(_Q["reroutes"])]
        )

    async def remove_reroute(self, reroute_id: str) -> Reroute | None:
        def op(conn: sqlite3.Connection) -> Reroute | None:
            row = conn.execute(_Q["remove_reroute"], {"id": reroute_id}).fetchone()
            return Reroute(*row) if row else None

        return await self._write(op)
