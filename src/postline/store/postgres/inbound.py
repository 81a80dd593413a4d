"""PostgreSQL store: received reports waiting to be processed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from postline.store.base import InboundMessage
from postline.store.postgres.core import _Q, PostgresCore

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresInbound"]


class PostgresInbound(PostgresCore):
    """Received reports waiting to be processed."""

    async def store_inbound(self, message: InboundMessage) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute(
                _Q["store_inbound"],
                message.id,
                message.received_at,
                message.mail_from,
                list(message.rcpt_to),
                message.peer,
                message.body,
            )

        await self._call(op)

    async def pending_inbound(
        self, limit: int = 100, *, now: float, claim_for: float = 60.0
    ) -> list[InboundMessage]:
        async def op(conn: Conn) -> list[InboundMessage]:
            rows = await conn.fetch(_Q["pending_inbound"], limit, now, now + claim_for)
            return [
                InboundMessage(
                    id=r[0],
                    received_at=r[1],
                    mail_from=r[2],
                    rcpt_to=list(r[3]),
                    peer=r[4],
                    body=bytes(r[5]),
                    attempts=r[6],
                )
                for r in sorted(rows, key=lambda r: r[1])
            ]

        return await self._call(op)

    async def finish_inbound(
        self, inbound_id: str, *, result: str, now: float, state: str = "done"
    ) -> None:
        if state not in ("done", "failed", "pending"):
            raise ValueError(f"inbound state {state!r}")

        async def op(conn: Conn) -> None:
            await conn.execute(_Q["finish_inbound"], inbound_id, state, now, result)

        await self._call(op)
