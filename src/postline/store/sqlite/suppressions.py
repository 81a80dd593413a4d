"""SQLite store: suppressions and soft-bounce runs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from postline.store.base import (
    Suppression,
)
from postline.store.sqlite.bulk import insert_rows
from postline.store.sqlite.core import (
    _Q,
    SQLiteCore,
)

__all__ = ["SQLiteSuppressions"]


class SQLiteSuppressions(SQLiteCore):
    """Suppressions and soft-bounce runs."""

    async def suppressed(
        self, tenant_id: str, addresses: Sequence[str], *, now: float
    ) -> dict[str, Suppression]:
        if not addresses:
            return {}
        wanted = sorted({a.lower() for a in addresses})
        params: dict[str, Any]
        if len(wanted) == 1:
            query = _Q["suppressed_one"]
            params = {"tenant_id": tenant_id, "address": wanted[0], "now": now}
        else:
            query = _Q["suppressed"]
            params = {"tenant_id": tenant_id, "addresses": json.dumps(wanted), "now": now}

        def op(conn: sqlite3.Connection) -> dict[str, Suppression]:
            out: dict[str, Suppression] = {}
            for row in conn.execute(query, params):
                entry = Suppression(*row)
                # The tenant's own entry wins over a global one.
                if entry.address not in out or entry.tenant_id != "*":
                    out[entry.address] = entry
            return out

        if len(addresses) <= 16:
            return self._read_inline(op)
        return await self._read(op)

    async def add_suppressions(self, entries: Sequence[Suppression]) -> int:
        rows = [
            (
                e.tenant_id,
                e.address.lower(),
                e.reason,
                e.created_at,
                e.expires_at,
                e.source,
                e.detail,
                e.message_id,
            )
            for e in entries
        ]

        def op(conn: sqlite3.Connection) -> int:
            insert_rows(conn, _Q["add_suppression"], rows)
            return len(rows)

        return await self._write(op)

    async def remove_suppression(self, tenant_id: str, address: str) -> bool:
        params = {"tenant_id": tenant_id, "address": address.lower()}
        return await self._write(
            lambda conn: conn.execute(_Q["remove_suppression"], params).rowcount > 0
        )

    async def list_suppressions(
        self,
        tenant_id: str,
        *,
        after: str = "",
        limit: int = 100,
        reason: str | None = None,
        now: float,
    ) -> list[Suppression]:
        params = {
            "tenant_id": tenant_id,
            "after": after.lower(),
            "limit": limit,
            "reason": reason,
            "now": now,
        }
        return await self._read(
            lambda conn: [
                Suppression(*row) for row in conn.execute(_Q["list_suppressions"], params)
            ]
        )

    async def note_soft_bounces(
        self,
        tenant_id: str,
        addresses: Sequence[str],
        *,
        now: float,
        window: float,
        limit: int,
        expires_at: float | None,
    ) -> list[str]:
        def op(conn: sqlite3.Connection) -> list[str]:
            reached = []
            for address in {a.lower() for a in addresses}:
                (count,) = conn.execute(
                    _Q["note_soft_bounce"],
                    {"tenant_id": tenant_id, "address": address, "now": now, "window": window},
                ).fetchone()
                if count >= limit:
                    conn.execute(
                        _Q["add_suppression"],
                        (
                            tenant_id,
                            address,
                            "soft_bounce",
                            now,
                            expires_at,
                            "bounce",
                            f"{count} soft bounces in a row",
                            None,
                        ),
                    )
                    conn.execute(_Q["clear_soft_bounces"], (tenant_id, address))
                    reached.append(address)
            return reached

        return await self._write(op)
