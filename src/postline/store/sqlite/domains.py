"""SQLite store: sender domains and their DKIM keys."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from postline.store.base import (
    DkimKeyRecord,
    SenderDomain,
    assemble_domains,
)
from postline.store.sqlite.core import (
    _Q,
    SQLiteCore,
)

__all__ = ["SQLiteDomains"]


class SQLiteDomains(SQLiteCore):
    """Sender domains and their DKIM keys."""

    async def add_sender_domain(self, domain: SenderDomain) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            added = conn.execute(
                _Q["add_sender_domain"],
                (
                    domain.tenant_id,
                    domain.domain,
                    domain.created_at,
                    domain.status,
                    domain.verified_at,
                    domain.checked_at,
                    domain.check,
                ),
            ).rowcount
            if not added:
                return False
            for k in domain.keys:
                self._add_key(conn, domain.tenant_id, domain.domain, k)
            return True

        return await self._write(op)

    @staticmethod
    def _add_key(conn: sqlite3.Connection, tenant_id: str, domain: str, k: DkimKeyRecord) -> int:
        return conn.execute(
            _Q["add_dkim_key"],
            (
                tenant_id,
                domain,
                k.selector,
                k.algorithm,
                k.public_key,
                k.private_sealed,
                k.created_at,
                k.state,
            ),
        ).rowcount

    async def _domains(self, tenant_id: str | None, domain: str | None) -> list[SenderDomain]:
        params = {"tenant_id": tenant_id, "domain": domain}

        def op(conn: sqlite3.Connection) -> list[SenderDomain]:
            return assemble_domains(
                conn.execute(_Q["get_sender_domains"], params).fetchall(),
                conn.execute(_Q["get_dkim_keys"], params).fetchall(),
            )

        return await self._read(op)

    async def get_sender_domain(self, tenant_id: str, domain: str) -> SenderDomain | None:
        found = await self._domains(tenant_id, domain)
        return found[0] if found else None

    async def list_sender_domains(self, tenant_id: str | None = None) -> list[SenderDomain]:
        return await self._domains(tenant_id, None)

    async def update_sender_domain(
        self,
        tenant_id: str,
        domain: str,
        *,
        status: str,
        checked_at: float,
        verified_at: float | None,
        check: str,
        key_states: Mapping[str, str] | None = None,
    ) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            updated = conn.execute(
                _Q["update_sender_domain"],
                {
                    "tenant_id": tenant_id,
                    "domain": domain,
                    "status": status,
                    "checked_at": checked_at,
                    "verified_at": verified_at,
                    "check": check,
                },
            ).rowcount
            for selector, state in (key_states or {}).items():
                conn.execute(
                    _Q["set_dkim_key_state"],
                    {
                        "tenant_id": tenant_id,
                        "domain": domain,
                        "selector": selector,
                        "state": state,
                    },
                )
            return updated > 0

        return await self._write(op)

    async def add_dkim_key(self, tenant_id: str, domain: str, key: DkimKeyRecord) -> bool:
        return await self._write(lambda conn: self._add_key(conn, tenant_id, domain, key) > 0)

    async def remove_sender_domain(self, tenant_id: str, domain: str) -> bool:
        params = {"tenant_id": tenant_id, "domain": domain}

        def op(conn: sqlite3.Connection) -> bool:
            conn.execute(_Q["remove_dkim_keys"], params)
            return conn.execute(_Q["remove_sender_domain"], params).rowcount > 0

        return await self._write(op)
