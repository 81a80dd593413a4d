"""SQLite store: tenants' webhook endpoints, their leases and their delivery log."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from postline.store._webhook_rows import (
    delivery_of,
    delivery_row,
    update_columns,
    webhook_of,
    webhook_row,
)
from postline.store.base import Webhook, WebhookDelivery
from postline.store.queries import load_queries
from postline.store.sqlite.core import URGENT, SQLiteCore

__all__ = ["SQLiteWebhooks"]

_Q = load_queries("postline.store.sqlite", "webhooks.sql")


def _rows(conn: sqlite3.Connection, sql: str, params: Mapping[str, Any]) -> list[sqlite3.Row]:
    cur = conn.execute(sql, params)
    cur.row_factory = sqlite3.Row
    return cur.fetchall()


class SQLiteWebhooks(SQLiteCore):
    """Tenants' webhook endpoints, their leases and their delivery log."""

    async def create_webhook(self, hook: Webhook) -> None:
        row = webhook_row(hook)
        await self._write(lambda conn: conn.execute(_Q["create_webhook"], row))

    async def get_webhook(self, tenant_id: str | None, webhook_id: str) -> Webhook | None:
        params = {"id": webhook_id, "tenant_id": tenant_id}
        rows = await self._read(lambda conn: _rows(conn, _Q["get_webhook"], params))
        return webhook_of(rows[0]) if rows else None

    async def list_webhooks(self, tenant_id: str | None = None) -> list[Webhook]:
        params = {"tenant_id": tenant_id}
        rows = await self._read(lambda conn: _rows(conn, _Q["list_webhooks"], params))
        return [webhook_of(r) for r in rows]

    async def update_webhook(
        self, tenant_id: str, webhook_id: str, changes: Mapping[str, Any], *, now: float
    ) -> Webhook | None:
        columns = update_columns(changes)
        sets = ", ".join(f"{name} = :{name}" for name in columns)
        sql = (
            f"UPDATE webhooks SET {sets}{', ' if sets else ''}updated_at = :now "
            "WHERE id = :id AND tenant_id = :tenant_id RETURNING *"
        )
        params = {**columns, "now": now, "id": webhook_id, "tenant_id": tenant_id}

        def op(conn: sqlite3.Connection) -> Webhook | None:
            rows = _rows(conn, sql, params)
            return webhook_of(rows[0]) if rows else None

        return await self._write(op)

    async def delete_webhook(self, tenant_id: str, webhook_id: str) -> bool:
        params = {"id": webhook_id, "tenant_id": tenant_id}

        def op(conn: sqlite3.Connection) -> bool:
            if conn.execute(_Q["delete_webhook"], params).rowcount == 0:
                return False
            conn.execute(_Q["delete_webhook_deliveries"], params)
            return True

        return await self._write(op)

    async def claim_webhooks(
        self, owner: str, *, now: float, lease_time: float, limit: int
    ) -> list[Webhook]:
        params = {"owner": owner, "now": now, "until": now + lease_time, "limit": limit}

        def op(conn: sqlite3.Connection) -> list[Webhook]:
            return [webhook_of(r) for r in _rows(conn, _Q["claim_webhooks"], params)]

        return await self._write(op, lane=URGENT)

    async def renew_webhooks(
        self, owner: str, webhook_ids: Sequence[str], *, until: float
    ) -> list[str]:
        params = {"owner": owner, "ids": json.dumps(list(webhook_ids)), "until": until}

        def op(conn: sqlite3.Connection) -> list[str]:
            return [r[0] for r in conn.execute(_Q["renew_webhooks"], params).fetchall()]

        return await self._write(op, lane=URGENT, rows=len(webhook_ids))

    async def release_webhooks(self, owner: str, webhook_ids: Sequence[str] | None = None) -> int:
        ids = None if webhook_ids is None else json.dumps(list(webhook_ids))
        params = {"owner": owner, "ids": ids}
        return await self._write(
            lambda conn: conn.execute(_Q["release_webhooks"], params).rowcount, lane=URGENT
        )

    async def begin_webhook_batch(
        self, webhook_id: str, owner: str, *, batch_id: str, last: int, now: float
    ) -> bool:
        params = {"id": webhook_id, "owner": owner, "batch_id": batch_id, "last": last, "now": now}
        return await self._write(
            lambda conn: conn.execute(_Q["begin_webhook_batch"], params).rowcount == 1,
            lane=URGENT,
        )

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
        params = {
            "from_cursor": from_cursor,
            "started": delivery.created_at,
            "id": webhook_id,
            "owner": owner,
            "done": done,
            "last": delivery.last_event,
            "attempts": delivery.attempts,
            "next_attempt_at": next_attempt_at,
            "disable": disable,
            "now": delivery.updated_at,
            "batch_id": delivery.id,
        }
        logged = delivery_row(delivery)

        def op(conn: sqlite3.Connection) -> bool:
            if conn.execute(_Q["finish_webhook_batch"], params).rowcount != 1:
                # The batch was replaced (a replay moved the cursor): log the attempt only.
                held = conn.execute(_Q["webhook_held"], params).fetchone()
                if held is None:
                    return False
            conn.execute(_Q["log_webhook_delivery"], logged)
            return True

        return await self._write(op, lane=URGENT, rows=2)

    async def webhook_deliveries(
        self,
        tenant_id: str,
        webhook_id: str,
        *,
        status: str | None = None,
        before: float | None = None,
        limit: int = 100,
    ) -> list[WebhookDelivery]:
        params = {
            "tenant_id": tenant_id,
            "webhook_id": webhook_id,
            "status": status,
            "before": before,
            "limit": limit,
        }
        rows = await self._read(lambda conn: _rows(conn, _Q["webhook_deliveries"], params))
        return [delivery_of(r) for r in rows]

    async def webhook_delivery_counts(self, webhook_id: str) -> dict[str, int]:
        params = {"webhook_id": webhook_id}
        rows = await self._read(
            lambda conn: conn.execute(_Q["webhook_delivery_counts"], params).fetchall()
        )
        return dict(rows)

    async def message_labels(
        self, message_ids: Collection[str]
    ) -> dict[str, tuple[list[str], dict[str, Any]]]:
        if not message_ids:
            return {}
        params = {"ids": json.dumps(list(message_ids))}
        (found,) = await self._read(
            lambda conn: conn.execute(_Q["message_labels"], params).fetchone()
        )
        return {mid: (json.loads(tags), json.loads(meta)) for mid, tags, meta in json.loads(found)}

    async def latest_event_id(self, tenant_id: str) -> int:
        params = {"tenant_id": tenant_id}
        (found,) = await self._read(
            lambda conn: conn.execute(_Q["latest_event_id"], params).fetchone()
        )
        return int(found)
