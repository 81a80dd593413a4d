"""PostgreSQL store: tenants, API keys and tenant statuses."""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from typing import TYPE_CHECKING

from postline.errors import IntegrityViolation
from postline.model.ids import new_id
from postline.store._rows import (
    api_key_of,
    key_identity_of,
    limits_of,
    new_api_key,
    scopes_text,
)
from postline.store.base import (
    ApiKey,
    KeyIdentity,
    LimitOverrides,
    NewEvent,
    Tenant,
    TenantRemoval,
    TenantStatus,
    Usage,
)
from postline.store.postgres.core import _Q, PostgresCore, _rowcount
from postline.store.usage import day_of, month_range

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresTenants"]


class PostgresTenants(PostgresCore):
    """Tenants, API keys and tenant statuses."""

    async def create_tenant(self, name: str) -> Tenant:
        tenant = Tenant(id=new_id(), name=name, created_at=time.time())

        async def op(conn: Conn) -> None:
            await conn.execute(_Q["create_tenant"], tenant.id, name, tenant.created_at)

        try:
            await self._call(op)
        except IntegrityViolation as exc:
            raise IntegrityViolation(f"a tenant named {name!r} already exists") from exc
        return tenant

    async def get_tenant(self, *, name: str | None = None, id: str | None = None) -> Tenant | None:
        async def op(conn: Conn) -> Tenant | None:
            if name is not None:
                row = await conn.fetchrow(_Q["tenant_by_name"], name)
            else:
                row = await conn.fetchrow(_Q["tenant_by_id"], id)
            return Tenant(*row) if row else None

        return await self._call(op)

    async def list_tenants(self, *, deleted: bool = False) -> list[Tenant]:
        async def op(conn: Conn) -> list[Tenant]:
            return [Tenant(*row) for row in await conn.fetch(_Q["list_tenants"], deleted)]

        return await self._call(op)

    async def delete_tenant(self, tenant_id: str, *, now: float) -> TenantRemoval | None:
        async def op(conn: Conn) -> TenantRemoval | None:
            async with conn.transaction():
                if _rowcount(await conn.execute(_Q["delete_tenant"], tenant_id, now)) == 0:
                    return None
                keys = _rowcount(await conn.execute(_Q["revoke_tenant_keys"], tenant_id, now))
                reason = "tenant deleted"
                await conn.execute(
                    _Q["set_tenant_status"], tenant_id, "paused", reason, now, "operator", now
                )
                await conn.execute(_Q["hold_tenant"], tenant_id, now, reason)
                await conn.execute(_Q["delete_tenant_pauses"], tenant_id)
                domains = _rowcount(await conn.execute(_Q["delete_tenant_domains"], tenant_id))
                await conn.execute(_Q["delete_tenant_dkim_keys"], tenant_id)
                hooks = _rowcount(await conn.execute(_Q["delete_tenant_webhooks"], tenant_id))
                return TenantRemoval(keys, domains, hooks)

        return await self._call(op)

    async def purge_tenant_data(self, tenant_id: str, *, limit: int = 1000) -> int:
        async def op(conn: Conn) -> int:
            n = _rowcount(await conn.execute(_Q["purge_tenant_suppressions"], tenant_id, limit))
            if n < limit:
                n += _rowcount(
                    await conn.execute(_Q["purge_tenant_soft_bounces"], tenant_id, limit - n)
                )
            return n

        return await self._call(op)

    async def add_api_key(
        self,
        tenant_id: str,
        key_hash: str,
        prefix: str,
        *,
        name: str = "",
        scopes: Collection[str] | None = None,
        rate: int | None = None,
        burst: int | None = None,
    ) -> ApiKey:
        key, text = new_api_key(tenant_id, prefix, name, scopes, rate, burst)

        async def op(conn: Conn) -> None:
            await conn.execute(
                _Q["add_api_key"],
                key.id,
                tenant_id,
                key_hash,
                prefix,
                key.created_at,
                name,
                text,
                rate,
                burst,
            )

        await self._call(op)
        return key

    async def tenant_limits(self, tenant_id: str | None = None) -> dict[str, LimitOverrides]:
        async def op(conn: Conn) -> dict[str, LimitOverrides]:
            rows = await conn.fetch(_Q["tenant_limits"], tenant_id)
            return dict(limits_of(tuple(row)) for row in rows)

        return await self._call(op)

    async def set_tenant_limits(self, tenant_id: str, limits: LimitOverrides) -> bool:
        async def op(conn: Conn) -> bool:
            status = await conn.execute(
                _Q["set_tenant_limits"],
                tenant_id,
                limits.rate,
                limits.burst,
                limits.daily,
                limits.monthly,
            )
            return _rowcount(status) > 0

        return await self._call(op)

    async def usage(self, tenant_id: str, *, now: float) -> Usage:
        day = day_of(now)
        first, nxt = month_range(day)

        async def op(conn: Conn) -> Usage:
            row = await conn.fetchrow(_Q["usage"], tenant_id, day, first, nxt)
            assert row is not None  # an aggregate always has its row
            return Usage(day, int(row[0]), int(row[1]))

        return await self._call(op)

    async def tenant_for_key(self, key_hash: str) -> Tenant | None:
        async def op(conn: Conn) -> Tenant | None:
            row = await conn.fetchrow(_Q["tenant_for_key"], key_hash)
            return Tenant(*row) if row else None

        return await self._call(op)

    async def key_identity(self, key_hash: str) -> KeyIdentity | None:
        async def op(conn: Conn) -> KeyIdentity | None:
            row = await conn.fetchrow(_Q["key_identity"], key_hash)
            return key_identity_of(tuple(row)) if row else None

        return await self._call(op)

    async def api_keys(self, tenant_id: str) -> list[ApiKey]:
        async def op(conn: Conn) -> list[ApiKey]:
            return [api_key_of(tuple(row)) for row in await conn.fetch(_Q["api_keys"], tenant_id)]

        return await self._call(op)

    async def revoke_api_key_id(self, tenant_id: str, key_id: str, *, now: float) -> bool:
        async def op(conn: Conn) -> bool:
            status = await conn.execute(_Q["revoke_api_key_id"], tenant_id, key_id, now)
            return _rowcount(status) > 0

        return await self._call(op)

    async def update_api_key(
        self,
        tenant_id: str,
        key_id: str,
        *,
        scopes: Collection[str] | None,
        rate: int | None,
        burst: int | None,
    ) -> bool:
        text = scopes_text(scopes)

        async def op(conn: Conn) -> bool:
            status = await conn.execute(_Q["update_api_key"], tenant_id, key_id, text, rate, burst)
            return _rowcount(status) > 0

        return await self._call(op)

    async def touch_api_key(self, key_id: str, *, now: float) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(_Q["touch_api_key"], key_id, now)

        await self._call(op)

    async def revoke_api_key(self, tenant_id: str, prefix: str) -> bool:
        async def op(conn: Conn) -> bool:
            status = await conn.execute(_Q["revoke_api_key"], tenant_id, prefix, time.time())
            return _rowcount(status) > 0

        return await self._call(op)

    async def tenant_statuses(self, tenant_id: str | None = None) -> list[TenantStatus]:
        async def op(conn: Conn) -> list[TenantStatus]:
            return [
                TenantStatus(*row) for row in await conn.fetch(_Q["tenant_statuses"], tenant_id)
            ]

        return await self._call(op)

    async def set_tenant_status(
        self,
        status: TenantStatus,
        *,
        expected: Collection[str] | None = None,
        event: NewEvent | None = None,
        node_id: str = "",
    ) -> bool:
        wanted = None if expected is None else set(expected)
        t = status

        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                if wanted is not None:
                    # Lock the tenant's row (made first when missing): of several nodes
                    # judging the same tenant at once, one makes the change.
                    await conn.execute(_Q["tenant_status_row"], t.tenant_id)
                    current = await conn.fetchval(_Q["tenant_status_lock"], t.tenant_id)
                    if current not in wanted:
                        return False
                await conn.execute(
                    _Q["set_tenant_status"],
                    t.tenant_id,
                    t.status,
                    t.reason,
                    t.changed_at,
                    t.changed_by,
                    t.judged_since,
                )
                if t.status == "paused":
                    await conn.execute(_Q["hold_tenant"], t.tenant_id, t.changed_at, t.reason)
                else:
                    await conn.execute(_Q["lift_tenant_hold"], t.tenant_id)
                if event is not None:
                    await conn.execute(
                        _Q["append_events"],
                        [event.at],
                        [event.tenant_id],
                        [event.type.value],
                        [event.message_id],
                        [event.recipient_idx],
                        [event.recipient],
                        [json.dumps(event.data)],
                        node_id,
                    )
            return True

        return await self._call(op)
