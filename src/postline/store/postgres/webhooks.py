"""PostgreSQL store: tenants' webhook endpoints, their leases and their delivery log."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from postline.store._webhook_rows import (
    delivery_of,
    delivery_row,
    update_columns,
    webhook_of,
    webhook_row,
)
from postline.store.base import Webhook, WebhookDelivery
from postline.store.postgres.events import PostgresEvents
from postline.store.queries import load_queries

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresWebhooks"]

_Q = load_queries("postline.store.postgres", "webhooks.sql")
_COLUMNS = (
    "id",
    "tenant_id",
    "url",
    "events",
    "description",
    "batch_size",
    "secret",
    "old_secret",
    "old_secret_until",
    "status",
    "disabled_reason",
    "created_at",
    "updated_at",
    "cursor",
    "batch_id",
    "batch_last",
    "batch_started",
    "attempts",
    "next_attempt_at",
    "lease_owner",
    "lease_until",
)
_DELIVERY_COLUMNS = (
    "id",
    "webhook_id",
    "tenant_id",
    "status",
    "first_event",
    "last_event",
    "count",
    "attempts",
    "created_at",
    "updated_at",
    "response_code",
    "latency_ms",
    "error",
)


class PostgresWebhooks(PostgresEvents):
    """Tenants' webhook endpoints, their leases and their delivery log."""

    async def create_webhook(self, hook: Webhook) -> None:
        row = webhook_row(hook)
        args = [row[c] for c in _COLUMNS]

        async def op(conn: Conn) -> None:
            await conn.execute(_Q["create_webhook"], *args)

        await self._call(op)

    async def get_webhook(self, tenant_id: str | None, webhook_id: str) -> Webhook | None:
        async def op(conn: Conn) -> Webhook | None:
            row = await conn.fetchrow(_Q["get_webhook"], webhook_id, tenant_id)
            return webhook_of(row) if row is not None else None

        return await self._call(op)

    async def list_webhooks(self, tenant_id: str | None = None) -> list[Webhook]:
        async def op(conn: Conn) -> list[Webhook]:
            return [webhook_of(r) for r in await conn.fetch(_Q["list_webhooks"], tenant_id)]

        return await self._call(op)

    async def update_webhook(
        self, tenant_id: str, webhook_id: str, changes: Mapping[str, Any], *, now: float
    ) -> Webhook | None:
        columns = update_columns(changes)
        names = list(columns)
        sets = [
            f"{name} = ${i + 4}{'::jsonb' if name == 'events' else ''}"
            for i, name in enumerate(names)
        ]
        sets.append("updated_at = $3")
        sql = f"UPDATE webhooks SET {', '.join(sets)} WHERE id = $1 AND tenant_id = $2 RETURNING *"
        args = [webhook_id, tenant_id, now, *(columns[n] for n in names)]

        async def op(conn: Conn) -> Webhook | None:
            row = await conn.fetchrow(sql, *args)
            return webhook_of(row) if row is not None else None

        return await self._call(op)

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                done = await conn.execute(_Q["delete_webhook"], webhook_id, tenant_id)
                if done.endswith(" 0"):
                    return False
                await conn.execute(_Q["delete_webhook_deliveries"], webhook_id)
                return True

        return await self._call(op)

    async def claim_webhooks(
        self, owner: str, *, now: float, lease_time: float, limit: int
    ) -> list[Webhook]:
        async def op(conn: Conn) -> list[Webhook]:
            rows = await conn.fetch(_Q["claim_webhooks"], owner, now, now + lease_time, limit)
            return sorted((webhook_of(r) for r in rows), key=lambda h: h.next_attempt_at)

        return await self._call(op)

    async def renew_webhooks(
        self, owner: str, webhook_ids: Sequence[str], *, until: float
    ) -> list[str]:
        async def op(conn: Conn) -> list[str]:
            rows = await conn.fetch(_Q["renew_webhooks"], owner, list(webhook_ids), until)
            return [r["id"] for r in rows]

        return await self._call(op)

    async def release_webhooks(self, owner: str, webhook_ids: Sequence[str] | None = None) -> int:
        ids = None if webhook_ids is None else list(webhook_ids)

        async def op(conn: Conn) -> int:
            done = await conn.execute(_Q["release_webhooks"], owner, ids)
            return int(done.rsplit(" ", 1)[1])

        return await self._call(op)

    async def begin_webhook_batch(
        self, webhook_id: str, owner: str, *, batch_id: str, last: int, now: float
    ) -> bool:
        async def op(conn: Conn) -> bool:
            done = await conn.execute(
                _Q["begin_webhook_batch"], webhook_id, owner, batch_id, last, now
            )
            return bool(done.endswith(" 1"))

        return await self._call(op)

    async def finish_webhook_batch(
        self,
        webhook_id: str,
        owner: str,
        delivery: WebhookDelivery,
        *,
        done: bool,
        from_cursor: int,
        next_attempt_at: float,
        disable: str | None = None,
    ) -> bool:
        logged = delivery_row(delivery)
        log_args = [logged[c] for c in _DELIVERY_COLUMNS]

        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                result = await conn.execute(
                    _Q["finish_webhook_batch"],
                    webhook_id,
                    owner,
                    done,
                    delivery.last_event,
                    delivery.attempts,
                    next_attempt_at,
                    disable,
                    delivery.updated_at,
                    delivery.id,
                    from_cursor,
                    delivery.created_at,
                )
                # A batch replaced by a replay (the cursor moved): log the attempt only.
                if (
                    not result.endswith(" 1")
                    and await conn.fetchval(_Q["webhook_held"], webhook_id, owner) is None
                ):
                    return False
                await conn.execute(_Q["log_webhook_delivery"], *log_args)
                return True

        return await self._call(op)

    async def webhook_deliveries(
        self,
        tenant_id: str,
        webhook_id: str,
        *,
        status: str | None = None,
        before: float | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        async def op(conn: Conn) -> list[WebhookDelivery]:
            rows = await conn.fetch(
                _Q["webhook_deliveries"], tenant_id, webhook_id, status, before, limit
            )
            return [delivery_of(r) for r in rows]

        return await self._call(op)

    async def webhook_delivery_counts(self, webhook_id: str) -> dict[str, int]:
        async def op(conn: Conn) -> dict[str, int]:
            rows = await conn.fetch(_Q["webhook_delivery_counts"], webhook_id)
            return {r[0]: int(r[1]) for r in rows}

        return await self._call(op)

    async def message_labels(
        self, message_ids: Collection[str]
    ) -> dict[str, tuple[list[str], dict[str, Any]]]:
        if not message_ids:
            return {}

        async def op(conn: Conn) -> dict[str, tuple[list[str], dict[str, Any]]]:
            rows = await conn.fetch(_Q["message_labels"], list(message_ids))
            return {r[0]: (json.loads(r[1]), json.loads(r[2])) for r in rows}

        return await self._call(op)

    async def latest_event_id(self, tenant_id: str) -> int:
        async def op(conn: Conn) -> int:
            horizon = await self._advance_horizon(conn)
            return int(await conn.fetchval(_Q["latest_event_id"], tenant_id, horizon))

        return await self._call(op)
