"""SQLite store: deleting what is past its retention, in short transactions."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3

from postline.store.queries import load_queries
from postline.store.sqlite.core import BULK, SQLiteCore

__all__ = ["SQLiteRetention"]

_Q = load_queries("postline.store.sqlite", "retention.sql")
_VACUUM_PAGES = 2048
"""Pages one compact() step hands back (8 MB at 4 KB pages): a short write."""


class SQLiteRetention(SQLiteCore):
    """Deleting what is past its retention (see :class:`postline.store.base.RetentionStore`).

    Each call is one transaction in the writer's bulk lane, so ingest, outcomes and
    renewals go first; rows are found through indexes ordered by age, never by a scan.
    """

    async def purge_bodies(self, before: float, *, limit: int, now: float) -> int:
        def op(conn: sqlite3.Connection) -> int:
            ids = [
                r[0]
                for r in conn.execute(_Q["bodies_to_purge"], {"before": before, "limit": limit})
            ]
            if ids:
                conn.execute(_Q["purge_bodies"], {"ids": json.dumps(ids), "now": now})
            return len(ids)

        return await self._write(op, lane=BULK, rows=limit)

    async def purge_messages(self, before: float, *, limit: int) -> int:
        def op(conn: sqlite3.Connection) -> int:
            ids = [
                r[0]
                for r in conn.execute(_Q["messages_to_purge"], {"before": before, "limit": limit})
            ]
            if ids:
                chosen = {"ids": json.dumps(ids)}
                conn.execute(_Q["purge_recipients"], chosen)
                conn.execute(_Q["purge_messages"], chosen)
            return len(ids)

        return await self._write(op, lane=BULK, rows=limit)

    async def purge_events(self, before: float, *, limit: int) -> int:
        params = {"before": before, "limit": limit}

        def op(conn: sqlite3.Connection) -> int:
            n = conn.execute(_Q["purge_events"], params).rowcount
            return n + conn.execute(_Q["purge_webhook_deliveries"], params).rowcount

        return await self._write(op, lane=BULK, rows=limit)

    async def purge_inbound(self, before: float, *, limit: int) -> int:
        params = {"before": before, "limit": limit}
        return await self._write(
            lambda conn: conn.execute(_Q["purge_inbound"], params).rowcount, lane=BULK, rows=limit
        )

    async def compact(self) -> int:
        def op(conn: sqlite3.Connection) -> int:
            (page_size,) = conn.execute("PRAGMA page_size").fetchone()
            (free,) = conn.execute("PRAGMA freelist_count").fetchone()
            if not free:
                return 0
            # sqlite3 steps a statement once, and one step of incremental_vacuum frees one
            # page: one statement per page (about 15 us each).
            for _ in range(min(free, _VACUUM_PAGES)):
                conn.execute("PRAGMA incremental_vacuum(1)")
            (left,) = conn.execute("PRAGMA freelist_count").fetchone()
            return int((free - left) * page_size)

        return await self._write(op, lane=BULK, rows=_VACUUM_PAGES)

    async def size_on_disk(self) -> int:
        def size() -> int:
            total = 0
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    total += os.path.getsize(f"{self.path}{suffix}")
            return total

        return await asyncio.to_thread(size)
