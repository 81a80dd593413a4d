"""PostgreSQL store: the queue, over ingest (:mod:`postline.store.postgres.ingest`): listening
for due queues, leases, outcomes, counters and pauses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from postline.errors import StoreUnavailable
from postline.store._match import select_page
from postline.store._outcomes import plan_outcomes
from postline.store._rows import group_leased, stat_of, sum_stats, with_paused
from postline.store.base import (
    QUEUE_START,
    AttemptRecord,
    LeasedMessage,
    LeasedRecipient,
    LeaseRequest,
    MessageMatch,
    QueueCursor,
    QueueDepths,
    QueueDue,
    QueueKey,
    QueueLease,
    QueuePause,
    QueueStat,
    TenantQueue,
)
from postline.store.postgres.core import _Q, DueCallback, _Listener, _rowcount
from postline.store.postgres.ingest import PostgresIngest

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresQueue"]


class PostgresQueue(PostgresIngest):
    """The queue role: ingest, then due queues, leases, outcomes, counters and pauses."""

    async def listen_due(self, callback: DueCallback, *, include_own: bool = False) -> None:
        """Call ``callback`` whenever another node announces queues with work.

        Queues whose mail is due now come at once; mail scheduled for later comes when its
        time arrives (a timer in this process). After the LISTEN connection was lost and
        re-established the callback gets an empty set: rescan everything. Announcements of
        this very store are skipped unless ``include_own``. Returns once listening; stops at
        :meth:`close`. Announcements are a hint, never the only trigger: keep polling
        ``due_queues`` (leases that expire are announced by nobody).
        """
        if self._pool is None:
            raise StoreUnavailable("the store is closed")
        listener = _Listener(self, callback, include_own)
        listener.task = asyncio.get_running_loop().create_task(
            listener.run(), name="postline-pg-listen"
        )
        await listener.ready.wait()
        if listener.error is not None:
            await listener.stop()
            raise listener.error
        self._listeners.append(listener)

    async def due_queues(
        self, *, owner: str, limit: int = 5000, after: QueueKey = ("", "")
    ) -> list[QueueDue]:
        async def op(conn: Conn) -> list[QueueDue]:
            rows = await conn.fetch(_Q["due_queues"], owner, after[0], after[1], limit)
            return [QueueDue(t, d, due) for t, d, due in rows]

        return await self._call(op)

    async def lease_many(
        self, requests: Sequence[LeaseRequest], *, now: float, lease_time: float, owner: str
    ) -> list[QueueLease]:
        if not requests:
            return []
        until = now + lease_time
        tenants = [r.tenant_id for r in requests]
        domains = [r.domain for r in requests]
        limits = [r.limit for r in requests]

        async def op(conn: Conn) -> list[QueueLease]:
            rows = await conn.fetch(_Q["lease_queues"], tenants, domains, limits, now, until, owner)
            per_queue: list[list[LeasedRecipient]] = [[] for _ in requests]
            for row in rows:
                per_queue[row[0] - 1].append(LeasedRecipient(*row[1:]))
            ids = list({r.message_id for rcpts in per_queue for r in rcpts})
            bodies = {
                row[0]: tuple(row[1:])
                for row in (await conn.fetch(_Q["lease_bodies"], ids) if ids else [])
            }
            drained = [
                i
                for i, (req, got) in enumerate(zip(requests, per_queue, strict=True))
                if len(got) < req.limit
            ]
            next_due: dict[int, float | None] = {}
            if drained:
                for n, due in await conn.fetch(
                    _Q["queues_next_due"],
                    owner,
                    [tenants[i] for i in drained],
                    [domains[i] for i in drained],
                ):
                    next_due[drained[n - 1]] = due
            return [
                QueueLease(
                    req.tenant_id,
                    req.domain,
                    group_leased(got, bodies),
                    len(got),
                    i in next_due,
                    next_due.get(i),
                )
                for i, (req, got) in enumerate(zip(requests, per_queue, strict=True))
            ]

        return await self._call(op)

    async def lease(
        self, domain: str, *, now: float, limit: int, lease_time: float, owner: str
    ) -> list[LeasedMessage]:
        until = now + lease_time

        async def op(conn: Conn) -> list[LeasedMessage]:
            rows = await conn.fetch(_Q["lease"], domain, now, limit, owner, until)
            rcpts = [LeasedRecipient(*row) for row in rows]
            ids = list({r.message_id for r in rcpts})
            if not ids:
                return []
            bodies = {row[0]: tuple(row[1:]) for row in await conn.fetch(_Q["lease_bodies"], ids)}
            return group_leased(rcpts, bodies)

        return await self._call(op)

    async def record(self, records: Sequence[AttemptRecord], *, node_id: str = "") -> None:
        if not records:
            return
        u_cols: list[list[Any]] = [[] for _ in range(12)]
        e_cols: list[list[Any]] = [[] for _ in range(7)]
        # One lock order for every writer: fewer deadlocks between nodes.
        for r in sorted(records, key=lambda r: (r.message_id, r.idx)):
            for col, value in zip(
                u_cols,
                (
                    r.message_id,
                    r.idx,
                    r.state.value,
                    1 if r.counted else 0,
                    r.at,
                    r.next_attempt_at,
                    r.code,
                    r.enhanced,
                    r.text,
                    r.mx,
                    r.owner,
                    r.domain,
                ),
                strict=True,
            ):
                col.append(value)
        plan = plan_outcomes(records)
        for event in plan.events:
            for col, item in zip(e_cols, event, strict=True):
                col.append(item)
        s_cols: list[list[Any]] = [[], [], [], []]
        s_extra: list[list[Any]] = [[], []]
        for tenant_id, address, reason, _at, until, detail, message_id in plan.suppressions:
            for col, text in zip(s_cols, (tenant_id, address, reason, detail), strict=True):
                col.append(text)
            s_extra[0].append(until)
            s_extra[1].append(message_id)
        c_cols: list[list[Any]] = [
            [t for t, _ in plan.cleared],
            [a for _, a in plan.cleared],
        ]
        now = max(r.at for r in records)

        async def op(conn: Conn) -> None:
            await conn.execute(
                _Q["record"],
                *u_cols[:10],
                *e_cols,
                node_id,
                u_cols[10],
                *s_cols,
                *c_cols,
                now,
                *s_extra,
                u_cols[11],
            )

        await self._call(op)

    async def renew_leases(
        self, owner: str, refs: Sequence[tuple[str, int, str]], *, until: float
    ) -> list[tuple[str, int]]:
        if not refs:
            return []

        async def op(conn: Conn) -> list[tuple[str, int]]:
            rows = await conn.fetch(
                _Q["renew_leases"],
                owner,
                until,
                [r[0] for r in refs],
                [r[1] for r in refs],
                [r[2] for r in refs],
            )
            return [(row[0], row[1]) for row in rows]

        return await self._call(op)

    async def release_leases(self, owner: str, *, now: float) -> int:
        async def op(conn: Conn) -> int:
            status = await conn.execute(_Q["release_owned"], owner, now)
            return int(status.split()[-1])

        return await self._call(op)

    async def cancel(
        self, tenant_id: str, message_id: str, *, now: float, node_id: str = ""
    ) -> int:
        async def op(conn: Conn) -> int:
            return int(await conn.fetchval(_Q["cancel"], message_id, tenant_id, now, node_id))

        return await self._call(op)

    async def queue_stats(
        self,
        tenant_id: str | None = None,
        *,
        after: str = "",
        limit: int = 1000,
        domain: str | None = None,
    ) -> list[QueueStat]:
        async def op(conn: Conn) -> list[QueueStat]:
            if tenant_id is None:
                by_domain: dict[str, list[Sequence[Any]]] = {}
                for row in await conn.fetch(_Q["queue_domains_page"], after, limit, domain):
                    by_domain.setdefault(row[0], []).append(tuple(row))
                return [sum_stats(d, rows) for d, rows in by_domain.items()]
            rows = await conn.fetch(_Q["queue_page"], tenant_id, after, limit, domain)
            stats = [stat_of(tuple(row)) for row in rows]
            paused = [
                d
                for d, _at in await conn.fetch(_Q["paused_tenant"], tenant_id)
                if d != "*" and d > after and (domain is None or d == domain)
            ]
            return with_paused(stats, paused, limit)

        return await self._call(op)

    async def queue_depths(self, top: int = 50) -> QueueDepths:
        async def op(conn: Conn) -> QueueDepths:
            rows = await conn.fetch(_Q["queue_depths"], top)
            total = next((int(n) for d, n in rows if d is None), 0)
            ranked = [(d, int(n)) for d, n in rows if d is not None]
            aged = await conn.fetch(_Q["queue_oldest"], [d for d, _ in ranked])
            oldest = {d: float(at) for d, at in aged if at is not None}
            return QueueDepths(total, ranked, oldest)

        return await self._call(op)

    async def drop_empty_queues(self) -> int:
        async def op(conn: Conn) -> int:
            return _rowcount(await conn.execute(_Q["drop_empty_queues"]))

        return await self._call(op)

    async def state_counts(self) -> dict[str, int]:
        async def op(conn: Conn) -> dict[str, int]:
            return {r[0]: r[1] for r in await conn.fetch(_Q["state_counts"])}

        return await self._call(op)

    async def paused_queues(self) -> set[tuple[str, str]]:
        async def op(conn: Conn) -> set[tuple[str, str]]:
            return {(t, d) for t, d in await conn.fetch(_Q["paused_all"])}

        return await self._call(op)

    async def queue_pauses(self) -> list[QueuePause]:
        async def op(conn: Conn) -> list[QueuePause]:
            return [QueuePause(*row) for row in await conn.fetch(_Q["queue_pauses"])]

        return await self._call(op)

    async def domain_queues(
        self, domain: str, *, now: float, due_cap: int = 10_000
    ) -> list[TenantQueue]:
        async def op(conn: Conn) -> list[TenantQueue]:
            return [
                TenantQueue(t, int(n), int(deferred), int(due), oldest or 0.0, nxt or 0.0)
                for t, n, deferred, due, oldest, nxt in await conn.fetch(
                    _Q["domain_queues"], domain, now, due_cap
                )
            ]

        return await self._call(op)

    async def retry_queued(
        self, tenant_id: str, domain: str, *, now: float, limit: int = 1000
    ) -> int:
        async def op(conn: Conn) -> int:
            return _rowcount(await conn.execute(_Q["retry_queued"], tenant_id, domain, now, limit))

        done = await self._call(op)
        if done:
            self._announce({(tenant_id, domain)}, {})
        return done

    async def bounce_queued(
        self,
        tenant_id: str,
        domain: str,
        *,
        now: float,
        data: Mapping[str, Any],
        text: str = "",
        node_id: str = "",
        limit: int = 1000,
    ) -> int:
        payload = json.dumps(dict(data))

        async def op(conn: Conn) -> int:
            found = await conn.fetchval(
                _Q["bounce_queued"], tenant_id, domain, now, limit, text, node_id, payload
            )
            return int(found or 0)

        return await self._call(op)

    async def cancel_queued(
        self, tenant_id: str, domain: str, *, now: float, node_id: str = "", limit: int = 1000
    ) -> int:
        async def op(conn: Conn) -> int:
            found = await conn.fetchval(_Q["cancel_queued"], tenant_id, domain, now, limit, node_id)
            return int(found or 0)

        return await self._call(op)

    async def _page(
        self,
        conn: Conn,
        tenant_id: str,
        domain: str,
        match: MessageMatch,
        after: QueueCursor,
        limit: int,
    ) -> tuple[list[tuple[str, int]], QueueCursor | None]:
        rows = await conn.fetch(_Q["queued_page"], tenant_id, domain, *after, limit)
        return select_page([tuple(r) for r in rows], match, limit)

    async def retry_matching(
        self,
        tenant_id: str,
        domain: str,
        match: MessageMatch,
        *,
        now: float,
        after: QueueCursor = QUEUE_START,
        limit: int = 1000,
    ) -> tuple[int, QueueCursor | None]:
        async def op(conn: Conn) -> tuple[int, QueueCursor | None]:
            async with conn.transaction():
                chosen, cursor = await self._page(conn, tenant_id, domain, match, after, limit)
                if not chosen:
                    return 0, cursor
                status = await conn.execute(
                    _Q["retry_listed"],
                    tenant_id,
                    domain,
                    now,
                    [m for m, _ in chosen],
                    [i for _, i in chosen],
                )
                return _rowcount(status), cursor

        done, cursor = await self._call(op)
        if done:
            self._announce({(tenant_id, domain)}, {})
        return done, cursor

    async def bounce_matching(
        self,
        tenant_id: str,
        domain: str,
        match: MessageMatch,
        *,
        now: float,
        data: Mapping[str, Any],
        text: str = "",
        node_id: str = "",
        after: QueueCursor = QUEUE_START,
        limit: int = 1000,
    ) -> tuple[int, QueueCursor | None]:
        payload = json.dumps(dict(data))

        async def op(conn: Conn) -> tuple[int, QueueCursor | None]:
            async with conn.transaction():
                chosen, cursor = await self._page(conn, tenant_id, domain, match, after, limit)
                if not chosen:
                    return 0, cursor
                found = await conn.fetchval(
                    _Q["bounce_listed"],
                    tenant_id,
                    domain,
                    now,
                    [m for m, _ in chosen],
                    [i for _, i in chosen],
                    text,
                    node_id,
                    payload,
                )
                return int(found or 0), cursor

        return await self._call(op)

    async def lift_pause(self, tenant_id: str, domain: str, *, reason: str) -> bool:
        async def op(conn: Conn) -> bool:
            return _rowcount(await conn.execute(_Q["lift_pause"], tenant_id, domain, reason)) > 0

        lifted = await self._call(op)
        if lifted:
            self._announce_resumed(tenant_id, domain)
        return lifted

    def _announce_resumed(self, tenant_id: str, domain: str) -> None:
        # Mail held back by the pause may be due now, on any node.
        if tenant_id == "*" or domain == "*":
            self._announce((), {}, rescan=True)
        else:
            self._announce({(tenant_id, domain)}, {})

    async def set_paused(
        self, tenant_id: str, domain: str, paused: bool, *, now: float, reason: str = ""
    ) -> None:
        async def op(conn: Conn) -> None:
            if paused:
                await conn.execute(_Q["pause"], tenant_id, domain, now, reason)
            else:
                await conn.execute(_Q["resume"], tenant_id, domain)

        await self._call(op)
        if not paused:
            self._announce_resumed(tenant_id, domain)
