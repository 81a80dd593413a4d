"""SQLite store: message views and the event log."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence

from postline.model import RecipientState
from postline.store.base import (
    Event,
    EventQuery,
    MessageView,
    NewEvent,
    RecipientView,
)
from postline.store.sqlite.core import (
    _Q,
    SQLiteCore,
)

__all__ = ["SQLiteEvents"]


class SQLiteEvents(SQLiteCore):
    """Message views and the event log."""

    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageView | None:
        def op(conn: sqlite3.Connection) -> MessageView | None:
            row = conn.execute(
                _Q["get_message"], {"id": message_id, "tenant_id": tenant_id}
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            rcpts = []
            for r in conn.execute(_Q["get_recipients"], {"id": message_id}):
                state = RecipientState(r[3])
                leased = r[12] is not None and (r[13] or 0) > now
                rcpts.append(
                    RecipientView(
                        idx=r[0],
                        address=r[1],
                        domain=r[2],
                        state=state,
                        attempts=r[4],
                        next_attempt_at=r[5] if state is RecipientState.QUEUED else None,
                        expires_at=r[6],
                        updated_at=r[7],
                        last_code=r[8],
                        last_enhanced=r[9],
                        last_text=r[10],
                        last_mx=r[11],
                        leased=leased and state is RecipientState.QUEUED,
                    )
                )
            return MessageView(
                id=row[0],
                tenant_id=row[1],
                created_at=row[2],
                mail_from=row[3],
                subject=row[4],
                message_id_header=row[5],
                source=row[6],
                stream=row[7],
                size=row[8],
                tags=json.loads(row[9]),
                metadata=json.loads(row[10]),
                body_deleted_at=row[11],
                recipients=rcpts,
            )

        return await self._read(op)

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
            return [
                Event(
                    id=r[0],
                    at=r[1],
                    tenant_id=r[2],
                    type=r[3],
                    message_id=r[4],
                    recipient_idx=r[5],
                    recipient=r[6],
                    node_id=r[7],
                    data=json.loads(r[8]),
                )
                for r in conn.execute(sql, params)
            ]

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
            conn.executemany(_Q["insert_event"], rows)

        await self._write(op)
