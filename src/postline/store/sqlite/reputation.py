"""SQLite store: outcome counts per tenant, stream and time bucket; traffic per minute."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from postline.store._counts import merge_activity, merge_counts
from postline.store.base import (
    ActivityCount,
    ReputationCount,
    ReputationTotals,
)
from postline.store.sqlite.bulk import insert_rows
from postline.store.sqlite.core import (
    _Q,
    SQLiteCore,
)

__all__ = ["SQLiteReputation"]


class SQLiteReputation(SQLiteCore):
    """Outcome counts per tenant, stream and time bucket; traffic per minute."""

    async def add_reputation_counts(self, counts: Sequence[ReputationCount]) -> None:
        rows = [
            (key[0], key[1], key[2], c[0], c[1], c[2])
            for key, c in sorted(merge_counts(counts).items())
        ]
        if not rows:
            return

        def op(conn: sqlite3.Connection) -> None:
            insert_rows(conn, _Q["add_reputation_count"], rows)

        await self._write(op)

    async def reputation_totals(
        self, *, since: float, tenant_id: str | None = None
    ) -> list[ReputationTotals]:
        params = {"since": since, "tenant_id": tenant_id}
        return await self._read(
            lambda conn: [
                ReputationTotals(t, s, int(d or 0), int(b or 0), int(c or 0))
                for t, s, d, b, c in conn.execute(_Q["reputation_totals"], params)
            ]
        )

    async def purge_reputation_counts(self, older_than: float) -> int:
        params = {"older_than": older_than}
        return await self._write(
            lambda conn: conn.execute(_Q["purge_reputation_counts"], params).rowcount
        )

    async def add_activity(self, counts: Sequence[ActivityCount]) -> None:
        rows = merge_activity(counts)
        if not rows:
            return

        def op(conn: sqlite3.Connection) -> None:
            insert_rows(conn, _Q["add_activity"], rows)

        await self._write(op)

    async def activity(self, *, since: float) -> list[ActivityCount]:
        return await self._read(
            lambda conn: [
                ActivityCount(float(b), int(a), int(d), int(f), int(x), int(c))
                for b, a, d, f, x, c in conn.execute(_Q["activity"], {"since": since})
            ]
        )

    async def purge_activity(self, older_than: float) -> int:
        params = {"older_than": older_than}
        return await self._write(lambda conn: conn.execute(_Q["purge_activity"], params).rowcount)
