"""SQLite store: message views and the event log."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from postline.store._rows import event_of, message_view_of, recipient_view_of
from postline.store.base import (
    Event,
    EventQuery,
    MessageView,
    NewEvent,
)
from postline.store.sqlite.bulk import insert_rows
from postline.store.sqlite.core import (
    _Q,
    SQLiteCore,
)

__all__ = ["SQLiteEvents"]


class SQLiteEvents(SQLiteCore):
    """Message views and the event log."""

    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageView | None:
        def op(conn: sqlite3.Connection) -> MessageView | None:
            cur = conn.execute(_Q["get_message"], {"id": message_id, "tenant_id": tenant_id})
            cur.row_factory = sqlite3.Row
            row = cur.fetchone()
            if row is None:
                return None
            now = time.time()
            cur = conn.execute(_Q["get_recipients"], {"id": message_id})
            cur.row_factory = sqlite3.Row
            return message_view_of(row, [recipient_view_of(r, now) for r in cur])

        return await self._read(op)

    async def find_messages(
        self,
        *,
        recipient: str | None = None,
        tag: str | None = None,
        scan: int = 10_000,
        limit: int = 50,
    ) -> list[str]:
        params = {"recipient": recipient, "tag": tag, "scan": scan, "limit": limit}
        return await self._read(
            lambda conn: [row[0] for row in conn.execute(_Q["find_messages"], params)]
        )

    async def events(self, query: EventQuery) -> list[Event]:
        params = {
            "tenant_id": query.tenant_id,
            "after": query.after,
            "limit": query.limit,
            "types": json.dumps(list(query.types)) if query.types else None,
            "message_id": query.message_id,
            "recipient": query.recipient,
            "since": query.since,
            "until": query.until,
        }
        sql = _Q["events_message"] if query.message_id else _Q["events"]

        def op(conn: sqlite3.Connection) -> list[Event]:
            cur = conn.execute(sql, params)
            cur.row_factory = sqlite3.Row
            return [event_of(r) for r in cur]

        return await self._read(op)

    async def append_events(self, events: Sequence[NewEvent], *, node_id: str = "") -> None:
        rows = [
            (
                e.at,
                e.tenant_id,
                e.type.value,
                e.message_id,
                e.recipient_idx,
                e.recipient,
                node_id,
                json.dumps(e.data),
            )
            for e in events
        ]

        def op(conn: sqlite3.Connection) -> None:
            insert_rows(conn, _Q["insert_event"], rows)

        await self._write(op)
