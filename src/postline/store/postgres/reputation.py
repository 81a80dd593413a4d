"""PostgreSQL store: outcome counts per tenant, stream and time bucket; traffic per
minute."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from postline.store._counts import merge_activity, merge_counts
from postline.store.base import ActivityCount, ReputationCount, ReputationTotals
from postline.store.postgres.core import _Q, PostgresCore, _rowcount

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresReputation"]


class PostgresReputation(PostgresCore):
    """Outcome counts per tenant, stream and time bucket; traffic per minute."""

    async def add_reputation_counts(self, counts: Sequence[ReputationCount]) -> None:
        merged = sorted(merge_counts(counts).items())
        if not merged:
            return
        cols: list[list[Any]] = [[] for _ in range(6)]
        for (tenant_id, stream, bucket), (delivered, bounced, complained) in merged:
            for col, value in zip(
                cols, (tenant_id, stream, bucket, delivered, bounced, complained), strict=True
            ):
                col.append(value)

        async def op(conn: Conn) -> None:
            await conn.execute(_Q["add_reputation_counts"], *cols)

        await self._call(op)

    async def reputation_totals(
        self, *, since: float, tenant_id: str | None = None
    ) -> list[ReputationTotals]:
        async def op(conn: Conn) -> list[ReputationTotals]:
            return [
                ReputationTotals(t, s, int(d or 0), int(b or 0), int(c or 0))
                for t, s, d, b, c in await conn.fetch(_Q["reputation_totals"], since, tenant_id)
            ]

        return await self._call(op)

    async def purge_reputation_counts(self, older_than: float) -> int:
        async def op(conn: Conn) -> int:
            return _rowcount(await conn.execute(_Q["purge_reputation_counts"], older_than))

        return await self._call(op)

    async def add_activity(self, counts: Sequence[ActivityCount]) -> None:
        rows = merge_activity(counts)
        if not rows:
            return
        cols = [list(col) for col in zip(*rows, strict=True)]

        async def op(conn: Conn) -> None:
            await conn.execute(_Q["add_activity"], *cols)

        await self._call(op)

    async def activity(self, *, since: float) -> list[ActivityCount]:
        async def op(conn: Conn) -> list[ActivityCount]:
            return [
                ActivityCount(float(b), int(a), int(d), int(f), int(x), int(c))
                for b, a, d, f, x, c in await conn.fetch(_Q["activity"], since)
            ]

        return await self._call(op)

    async def purge_activity(self, older_than: float) -> int:
        async def op(conn: Conn) -> int:
            return _rowcount(await conn.execute(_Q["purge_activity"], older_than))

        return await self._call(op)
