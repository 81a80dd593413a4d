"""SQLite store: tenants, API keys and tenant statuses."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection

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
from postline.store.sqlite.core import (
    _Q,
    BULK,
    SQLiteCore,
)
from postline.store.usage import day_of, month_range

__all__ = ["SQLiteTenants"]


class SQLiteTenants(SQLiteCore):
    """Tenants, API keys and tenant statuses."""

    async def create_tenant(self, name: str) -> Tenant:
        tenant = Tenant(id=new_id(), name=name, created_at=time.time())

        def op(conn: sqlite3.Connection) -> Tenant:
            try:
                conn.execute(
                    _Q["create_tenant"],
                    {"id": tenant.id, "name": name, "created_at": tenant.created_at},
                )
            except sqlite3.IntegrityError as exc:
                raise IntegrityViolation(f"a tenant named {name!r} already exists") from exc
            return tenant

        return await self._write(op)

    async def get_tenant(self, *, name: str | None = None, id: str | None = None) -> Tenant | None:
        def op(conn: sqlite3.Connection) -> Tenant | None:
            if name is not None:
                row = conn.execute(_Q["tenant_by_name"], {"name": name}).fetchone()
            else:
                row = conn.execute(_Q["tenant_by_id"], {"id": id}).fetchone()
            return Tenant(*row) if row else None

        return await self._read(op)

    async def list_tenants(self, *, deleted: bool = False) -> list[Tenant]:
        params = {"deleted": deleted}
        return await self._read(
            lambda conn: [Tenant(*row) for row in conn.execute(_Q["list_tenants"], params)]
        )

    async def delete_tenant(self, tenant_id: str, *, now: float) -> TenantRemoval | None:
        status = {
            "tenant_id": tenant_id,
            "status": "paused",
            "reason": "tenant deleted",
            "changed_at": now,
            "changed_by": "operator",
            "judged_since": now,
        }
        params = {"tenant_id": tenant_id, "now": now}

        def op(conn: sqlite3.Connection) -> TenantRemoval | None:
            if conn.execute(_Q["delete_tenant"], params).rowcount == 0:
                return None
            keys = conn.execute(_Q["revoke_tenant_keys"], params).rowcount
            conn.execute(_Q["set_tenant_status"], status)
            conn.execute(_Q["hold_tenant"], status)
            conn.execute(_Q["delete_tenant_pauses"], params)
            domains = conn.execute(_Q["delete_tenant_domains"], params).rowcount
            conn.execute(_Q["delete_tenant_dkim_keys"], params)
            hooks = conn.execute(_Q["delete_tenant_webhooks"], params).rowcount
            return TenantRemoval(keys, domains, hooks)

        return await self._write(op)

    async def purge_tenant_data(self, tenant_id: str, *, limit: int = 1000) -> int:
        params = {"tenant_id": tenant_id, "limit": limit}

        def op(conn: sqlite3.Connection) -> int:
            n: int = conn.execute(_Q["purge_tenant_suppressions"], params).rowcount
            if n < limit:
                params["limit"] = limit - n
                n += conn.execute(_Q["purge_tenant_soft_bounces"], params).rowcount
            return n

        return await self._write(op, lane=BULK, rows=limit)

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

        def op(conn: sqlite3.Connection) -> ApiKey:
            conn.execute(
                _Q["add_api_key"],
                {
                    "id": key.id,
                    "tenant_id": tenant_id,
                    "key_hash": key_hash,
                    "prefix": prefix,
                    "created_at": key.created_at,
                    "name": name,
                    "scopes": text,
                    "rate": rate,
                    "burst": burst,
                },
            )
            return key

        return await self._write(op)

    async def tenant_limits(self, tenant_id: str | None = None) -> dict[str, LimitOverrides]:
        params = {"tenant_id": tenant_id}
        return await self._read(
            lambda conn: dict(limits_of(row) for row in conn.execute(_Q["tenant_limits"], params))
        )

    async def set_tenant_limits(self, tenant_id: str, limits: LimitOverrides) -> bool:
        params = {"tenant_id": tenant_id, **limits.as_dict()}
        return await self._write(
            lambda conn: conn.execute(_Q["set_tenant_limits"], params).rowcount > 0
        )

    async def usage(self, tenant_id: str, *, now: float) -> Usage:
        day = day_of(now)
        first, nxt = month_range(day)
        params = {"tenant_id": tenant_id, "day": day, "first": first, "next": nxt}

        def op(conn: sqlite3.Connection) -> Usage:
            day_used, month_used = conn.execute(_Q["usage"], params).fetchone()
            return Usage(day, int(day_used), int(month_used))

        return await self._read(op)

    async def tenant_for_key(self, key_hash: str) -> Tenant | None:
        def op(conn: sqlite3.Connection) -> Tenant | None:
            row = conn.execute(_Q["tenant_for_key"], {"key_hash": key_hash}).fetchone()
            return Tenant(*row) if row else None

        return await self._read(op)

    async def key_identity(self, key_hash: str) -> KeyIdentity | None:
        def op(conn: sqlite3.Connection) -> KeyIdentity | None:
            row = conn.execute(_Q["key_identity"], {"key_hash": key_hash}).fetchone()
            return key_identity_of(row) if row else None

        return await self._read(op)

    async def api_keys(self, tenant_id: str) -> list[ApiKey]:
        params = {"tenant_id": tenant_id}
        return await self._read(
            lambda conn: [api_key_of(row) for row in conn.execute(_Q["api_keys"], params)]
        )

    async def revoke_api_key_id(self, tenant_id: str, key_id: str, *, now: float) -> bool:
        params = {"tenant_id": tenant_id, "id": key_id, "now": now}
        return await self._write(
            lambda conn: conn.execute(_Q["revoke_api_key_id"], params).rowcount > 0
        )

    async def update_api_key(
        self,
        tenant_id: str,
        key_id: str,
        *,
        scopes: Collection[str] | None,
        rate: int | None,
        burst: int | None,
    ) -> bool:
        params = {
            "tenant_id": tenant_id,
            "id": key_id,
            "scopes": scopes_text(scopes),
            "rate": rate,
            "burst": burst,
        }
        return await self._write(
            lambda conn: conn.execute(_Q["update_api_key"], params).rowcount > 0
        )

    async def touch_api_key(self, key_id: str, *, now: float) -> None:
        def op(conn: sqlite3.Connection) -> None:
            conn.execute(_Q["touch_api_key"], {"id": key_id, "now": now})

        await self._write(op)

    async def revoke_api_key(self, tenant_id: str, prefix: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                _Q["revoke_api_key"],
                {"tenant_id": tenant_id, "prefix": prefix, "now": time.time()},
            )
            return cur.rowcount > 0

        return await self._write(op)

    async def tenant_statuses(self, tenant_id: str | None = None) -> list[TenantStatus]:
        params = {"tenant_id": tenant_id}
        return await self._read(
            lambda conn: [TenantStatus(*row) for row in conn.execute(_Q["tenant_statuses"], params)]
        )

    async def set_tenant_status(
        self,
        status: TenantStatus,
        *,
        expected: Collection[str] | None = None,
        event: NewEvent | None = None,
        node_id: str = "",
    ) -> bool:
        params = {
            "tenant_id": status.tenant_id,
            "status": status.status,
            "reason": status.reason,
            "changed_at": status.changed_at,
            "changed_by": status.changed_by,
            "judged_since": status.judged_since,
        }
        wanted = None if expected is None else set(expected)

        def op(conn: sqlite3.Connection) -> bool:
            if wanted is not None:
                row = conn.execute(
                    _Q["tenant_status_of"], {"tenant_id": status.tenant_id}
                ).fetchone()
                if (row[0] if row else "ok") not in wanted:
                    return False
            conn.execute(_Q["set_tenant_status"], params)
            hold = "hold_tenant" if status.status == "paused" else "lift_tenant_hold"
            conn.execute(_Q[hold], params)
            if event is not None:
                conn.execute(
                    _Q["insert_event"],
                    (
                        event.at,
                        event.tenant_id,
                        event.type.value,
                        event.message_id,
                        event.recipient_idx,
                        event.recipient,
                        node_id,
                        json.dumps(event.data),
                    ),
                )
            return True

        return await self._write(op)
