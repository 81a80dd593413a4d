"""PostgreSQL store: suppressions and soft-bounce runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from postline.store.base import Suppression
from postline.store.postgres.core import _Q, PostgresCore, _rowcount

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresSuppressions"]


class PostgresSuppressions(PostgresCore):
    """Suppressions and soft-bounce runs."""

    async def suppressed(
        self, tenant_id: str, addresses: Sequence[str], *, now: float
    ) -> dict[str, Suppression]:
        if not addresses:
            return {}
        wanted = sorted({a.lower() for a in addresses})

        async def op(conn: Conn) -> dict[str, Suppression]:
            out: dict[str, Suppression] = {}
            for row in await conn.fetch(_Q["suppressed"], tenant_id, wanted, now):
                entry = Suppression(*row)
                if entry.address not in out or entry.tenant_id != "*":
                    out[entry.address] = entry
            return out

        return await self._call(op)

    async def add_suppressions(self, entries: Sequence[Suppression]) -> int:
        if not entries:
            return 0
        cols: list[list[Any]] = [[] for _ in range(8)]
        for e in entries:
            for col, value in zip(
                cols,
                (
                    e.tenant_id,
                    e.address.lower(),
                    e.reason,
                    e.created_at,
                    e.expires_at,
                    e.source,
                    e.detail,
                    e.message_id,
                ),
                strict=True,
            ):
                col.append(value)

        async def op(conn: Conn) -> int:
            await conn.execute(_Q["add_suppressions"], *cols)
            return len(entries)

        return await self._call(op)

    async def remove_suppression(self, tenant_id: str, address: str) -> bool:
        async def op(conn: Conn) -> bool:
            status = await conn.execute(_Q["remove_suppression"], tenant_id, address.lower())
            return _rowcount(status) > 0

        return await self._call(op)

    async def list_suppressions(
        self,
        tenant_id: str,
        *,
        after: str = "",
        limit: int = 100,
        reason: str | None = None,
        now: float,
    ) -> list[Suppression]:
        async def op(conn: Conn) -> list[Suppression]:
            rows = await conn.fetch(
                _Q["list_suppressions"], tenant_id, after.lower(), limit, reason, now
            )
            return [Suppression(*row) for row in rows]

        return await self._call(op)

    async def note_soft_bounces(
        self,
        tenant_id: str,
        addresses: Sequence[str],
        *,
        now: float,
        window: float,
        limit: int,
        expires_at: float | None,
    ) -> list[str]:
        async def op(conn: Conn) -> list[str]:
            reached = []
            async with conn.transaction():
                for address in sorted({a.lower() for a in addresses}):
                    count = await conn.fetchval(
                        _Q["note_soft_bounce"], tenant_id, address, now, window
                    )
                    if count >= limit:
                        await conn.execute(
                            _Q["add_suppressions"],
                            [tenant_id],
                            [address],
                            ["soft_bounce"],
                            [now],
                            [expires_at],
                            ["bounce"],
                            [f"{count} soft bounces in a row"],
                            [None],
                        )
                        await conn.execute(_Q["clear_soft_bounce"], tenant_id, address)
                        reached.append(address)
            return reached

        return await self._call(op)
