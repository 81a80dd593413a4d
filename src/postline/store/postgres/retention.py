"""PostgreSQL store: deleting what is past its retention.

Events are never deleted row by row: the event log is partitioned by time, one partition
per ``[retention] event_partition`` (a UTC day by default), which this role makes a few
ahead and drops whole once it has passed ``[retention] events``. A default partition
takes events outside every range (a clock far off): they are deleted in batches, and a
range the default partition already holds rows of is left to it. Partitions are made and
dropped under an advisory lock (one node at a time) with a short lock timeout (500 ms),
so a busy table only postpones the step; dropping one takes a brief exclusive lock on
the log. Messages, webhook delivery logs and inbound reports are deleted in batches found
through indexes ordered by age.
"""

from __future__ import annotations

import logging
import math
import re
import time
from typing import TYPE_CHECKING

import asyncpg

from postline.store.postgres.core import PostgresCore
from postline.store.queries import load_queries

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresRetention"]

log = logging.getLogger(__name__)

_Q = load_queries("postline.store.postgres", "retention.sql")
_AHEAD = 3
"""Partitions made ahead of the current one."""
_LOCK_KEY = 0x706C_6576  # advisory lock of the event partition upkeep
_BOUND = re.compile(r"FROM \((.+?)\) TO \((.+?)\)")


def _value(text: str) -> float:
    text = text.strip().strip("'")
    if text.upper() == "MINVALUE":
        return -math.inf
    if text.upper() == "MAXVALUE":
        return math.inf
    return float(text)


class PostgresRetention(PostgresCore):
    """Deleting what is past its retention (see module docstring)."""

    async def open(self) -> None:
        await super().open()
        await self._call(lambda conn: self._upkeep(conn, time.time(), None))

    async def purge_bodies(self, before: float, *, limit: int, now: float) -> int:
        async def op(conn: Conn) -> int:
            done = await conn.execute(_Q["purge_bodies"], before, limit, now)
            return int(done.rsplit(" ", 1)[1])

        return await self._call(op)

    async def purge_messages(self, before: float, *, limit: int) -> int:
        async def op(conn: Conn) -> int:
            async with conn.transaction():
                ids = [r[0] for r in await conn.fetch(_Q["messages_to_purge"], before, limit)]
                if ids:
                    await conn.execute(_Q["purge_recipients"], ids)
                    await conn.execute(_Q["purge_messages"], ids)
                return len(ids)

        return await self._call(op)

    async def purge_events(self, before: float, *, limit: int) -> int:
        async def op(conn: Conn) -> int:
            dropped = await self._upkeep(conn, time.time(), before)
            done = await conn.execute(_Q["purge_default_events"], before, limit)
            logs = await conn.execute(_Q["purge_webhook_deliveries"], before, limit)
            return dropped + int(done.rsplit(" ", 1)[1]) + int(logs.rsplit(" ", 1)[1])

        return await self._call(op)

    async def purge_inbound(self, before: float, *, limit: int) -> int:
        async def op(conn: Conn) -> int:
            done = await conn.execute(_Q["purge_inbound"], before, limit)
            return int(done.rsplit(" ", 1)[1])

        return await self._call(op)

    async def compact(self) -> int:
        return 0  # autovacuum reuses the space; dropped partitions free theirs at once

    async def size_on_disk(self) -> int:
        async def op(conn: Conn) -> int:
            return int(await conn.fetchval(_Q["size_on_disk"]))

        return await self._call(op)

    async def _upkeep(self, conn: Conn, now: float, before: float | None) -> int:
        """Make the partitions from the previous one to a few ahead; with ``before``, drop
        those that end before it. Returns the events dropped."""
        dropped = 0
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL lock_timeout = '500ms'")
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                ranges: list[tuple[str, float, float]] = []
                for name, bound in await conn.fetch(_Q["event_partitions"]):
                    found = _BOUND.search(bound or "")
                    if found:
                        ranges.append((name, _value(found.group(1)), _value(found.group(2))))
                if before is not None:
                    for name, _lo, hi in ranges:
                        if hi <= before:
                            # The planner's estimate: counting would read the partition.
                            n = await conn.fetchval(
                                "SELECT greatest(reltuples, 0)::bigint FROM pg_class "
                                "WHERE relname = $1",
                                name,
                            )
                            await conn.execute(f'DROP TABLE "{name}"')
                            dropped += int(n or 0)
                            log.info(
                                "dropped event partition %s (%d events)",
                                name,
                                n,
                                extra={"action": "retention.partition_dropped"},
                            )
                    ranges = [r for r in ranges if before is None or r[2] > before]
                width = self.event_partition
                first = (math.floor(now / width) - 1) * width
                for k in range(_AHEAD + 2):
                    start = first + k * width
                    for lo, hi in _gaps(start, start + width, [(a, b) for _, a, b in ranges]):
                        if before is not None and hi <= before:
                            continue  # past retention already
                        if await conn.fetchval(_Q["default_has_events"], lo, hi):
                            continue  # the default partition keeps that range
                        name = f"events_p{int(lo)}"
                        # Made apart, then attached: attaching takes a lock on the log
                        # that inserts do not wait for (CREATE ... PARTITION OF does).
                        await conn.execute(f'CREATE TABLE "{name}" (LIKE events)')
                        await conn.execute(
                            f'ALTER TABLE events ATTACH PARTITION "{name}" '
                            f"FOR VALUES FROM ({lo!r}) TO ({hi!r})"
                        )
                        ranges.append((name, lo, hi))
        except (asyncpg.LockNotAvailableError, asyncpg.DeadlockDetectedError):
            log.info("event partitions busy; next round", extra={"action": "retention.busy"})
            return 0
        return dropped


def _gaps(lo: float, hi: float, covered: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Parts of [lo, hi) no range of ``covered`` holds."""
    out = []
    at = lo
    for a, b in sorted(covered):
        if b <= at or a >= hi:
            continue
        if a > at:
            out.append((at, a))
        at = max(at, b)
        if at >= hi:
            break
    if at < hi:
        out.append((at, hi))
    return out
