"""SQLite store: received reports waiting to be processed."""

from __future__ import annotations

import json
import sqlite3

from postline.store.base import (
    InboundMessage,
)
from postline.store.sqlite.core import (
    _Q,
    SQLiteCore,
)

__all__ = ["SQLiteInbound"]


class SQLiteInbound(SQLiteCore):
    """Received reports waiting to be processed."""

    async def store_inbound(self, message: InboundMessage) -> None:
        params = {
            "id": message.id,
            "received_at": message.received_at,
            "mail_from": message.mail_from,
            "rcpt_to": json.dumps(message.rcpt_to),
            "peer": message.peer,
            "body": message.body,
        }

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(_Q["store_inbound"], params)

        await self._write(op)

    async def pending_inbound(
        self, limit: int = 100, *, now: float, claim_for: float = 60.0
    ) -> list[InboundMessage]:
        params = {"limit": limit, "now": now, "until": now + claim_for}

        def op(conn: sqlite3.Connection) -> list[InboundMessage]:
            return [
                InboundMessage(
                    id=r[0],
                    received_at=r[1],
                    mail_from=r[2],
                    rcpt_to=json.loads(r[3]),
                    peer=r[4],
                    body=r[5],
                    attempts=r[6],
                )
                for r in conn.execute(_Q["pending_inbound"], params).fetchall()
            ]

        return await self._write(op)

    async def finish_inbound(
        self, inbound_id: str, *, result: str, now: float, state: str = "done"
    ) -> None:
        if state not in ("done", "failed", "pending"):
            raise ValueError(f"inbound state {state!r}")
        params = {"id": inbound_id, "state": state, "now": now, "result": result}

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(_Q["finish_inbound"], params)

        await self._write(op)
