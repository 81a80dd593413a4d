"""PostgreSQL store: sender domains and their DKIM keys."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from postline.store.base import DkimKeyRecord, SenderDomain, assemble_domains
from postline.store.postgres.core import _Q, PostgresCore

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresDomains"]


class PostgresDomains(PostgresCore):
    """Sender domains and their DKIM keys."""

    async def add_sender_domain(self, domain: SenderDomain) -> bool:
        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                status = await conn.execute(
                    _Q["add_sender_domain"],
                    domain.tenant_id,
                    domain.domain,
                    domain.created_at,
                    domain.status,
                    domain.verified_at,
                    domain.checked_at,
                    domain.check,
                )
                if status.endswith(" 0"):
                    return False
                for k in domain.keys:
                    await self._add_key(conn, domain.tenant_id, domain.domain, k)
                return True

        return await self._call(op)

    @staticmethod
    async def _add_key(conn: Conn, tenant_id: str, domain: str, k: DkimKeyRecord) -> bool:
        status = await conn.execute(
            _Q["add_dkim_key"],
            tenant_id,
            domain,
            k.selector,
            k.algorithm,
            k.public_key,
            k.private_sealed,
            k.created_at,
            k.state,
        )
        return not status.endswith(" 0")

    async def _domains(self, tenant_id: str | None, domain: str | None) -> list[SenderDomain]:
        async def op(conn: Conn) -> list[SenderDomain]:
            rows = await conn.fetch(_Q["get_sender_domains"], tenant_id, domain)
            keys = await conn.fetch(_Q["get_dkim_keys"], tenant_id, domain)
            return assemble_domains([tuple(r) for r in rows], [tuple(k) for k in keys])

        return await self._call(op)

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
        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                result = await conn.execute(
                    _Q["update_sender_domain"],
                    tenant_id,
                    domain,
                    status,
                    checked_at,
                    verified_at,
                    check,
                )
                for selector, state in (key_states or {}).items():
                    await conn.execute(_Q["set_dkim_key_state"], tenant_id, domain, selector, state)
                return not result.endswith(" 0")

        return await self._call(op)

    async def add_dkim_key(self, tenant_id: str, domain: str, key: DkimKeyRecord) -> bool:
        async def op(conn: Conn) -> bool:
            return await self._add_key(conn, tenant_id, domain, key)

        return await self._call(op)

    async def remove_sender_domain(self, tenant_id: str, domain: str) -> bool:
        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                await conn.execute(_Q["remove_dkim_keys"], tenant_id, domain)
                status = await conn.execute(_Q["remove_sender_domain"], tenant_id, domain)
                return not status.endswith(" 0")

        return await self._call(op)
