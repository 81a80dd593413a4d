"""PostgreSQL store: message views and the event log."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from postline.store._rows import event_of, message_view_of, recipient_view_of
from postline.store.base import Event, EventQuery, MessageView, NewEvent
from postline.store.postgres.core import _Q, PostgresCore

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresEvents"]

_HORIZON_STEP = 10_000  # event ids examined per horizon walk
_HORIZON_BACKFILL = 10_000  # ids below the newest that a fresh store re-examines


class PostgresEvents(PostgresCore):
    """Message views and the event log."""

    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageView | None:
        async def op(conn: Conn) -> MessageView | None:
            row = await conn.fetchrow(_Q["get_message"], message_id, tenant_id)
            if row is None:
                return None
            rows = await conn.fetch(_Q["get_recipients"], message_id)
            now = time.time()
            return message_view_of(row, [recipient_view_of(r, now) for r in rows])

        return await self._call(op)

    async def find_messages(
        self,
        *,
        recipient: str | None = None,
        tag: str | None = None,
        scan: int = 10_000,
        limit: int = 50,
    ) -> list[str]:
        async def op(conn: Conn) -> list[str]:
            rows = await conn.fetch(_Q["find_messages"], tag, recipient, scan, limit)
            return [str(row[0]) for row in rows]

        return await self._call(op)

    async def events(self, query: EventQuery) -> list[Event]:
        """Events after the cursor, never past an id that may still be committed later.

        Writers on several connections commit event ids out of order, so a reader that
        saw id 101 must not have skipped id 100 still in flight: events are served only
        up to the horizon below which every id is visible (see :meth:`_advance_horizon`).
        """
        args: list[Any] = [
            query.tenant_id,
            query.after,
            list(query.types) if query.types else None,
            query.recipient,
            query.since,
            query.until,
            query.limit,
        ]
        if query.message_id:
            sql = _Q["events_message"]
            args.append(query.message_id)
        else:
            sql = _Q["events"]

        async def op(conn: Conn) -> list[Event]:
            horizon = await self._advance_horizon(conn)
            rows = await conn.fetch(sql, *args[:7], horizon, *args[7:])
            return [event_of(r) for r in rows]

        return await self._call(op)

    async def _advance_horizon(self, conn: Conn) -> int:
        """The largest event id up to which no id can still appear.

        Walks the ids above the last horizon in order. A hole is an id taken by a
        transaction still running (it will fill) or by one rolled back (it never will): the
        walk stops at a hole until it has been open for ``event_gap_grace`` seconds, then
        steps over it.
        """
        if self._horizon < 0:
            row = await conn.fetchrow(_Q["events_max_id"])
            top, bottom = (row[0], row[1]) if row is not None else (None, None)
            # Ids below the oldest event kept were deleted (retention), not holes to wait on.
            self._horizon = max(0, int(top or 0) - _HORIZON_BACKFILL, int(bottom or 1) - 1)
        now = time.monotonic()
        horizon = self._horizon
        for (event_id,) in await conn.fetch(_Q["events_above"], horizon, _HORIZON_STEP):
            if event_id != horizon + 1:
                seen = self._holes.setdefault(horizon + 1, now)
                if now - seen < self._event_gap_grace:
                    break
            horizon = event_id
        self._horizon = horizon = max(self._horizon, horizon)
        for hole in [h for h in self._holes if h <= horizon]:
            del self._holes[hole]
        return horizon

    async def append_events(self, events: Sequence[NewEvent], *, node_id: str = "") -> None:
        if not events:
            return
        cols: list[list[Any]] = [[] for _ in range(7)]
        for e in events:
            for col, value in zip(
                cols,
                (
                    e.at,
                    e.tenant_id,
                    e.type.value,
                    e.message_id,
                    e.recipient_idx,
                    e.recipient,
                    json.dumps(e.data),
                ),
                strict=True,
            ):
                col.append(value)

        async def op(conn: Conn) -> None:
            await conn.execute(_Q["append_events"], *cols, node_id)

        await self._call(op)
