"""PostgreSQL store: ingest, the first half of the queue role: enqueue with its group
commit, idempotency keys, and the due announcements (NOTIFY) sent after commits."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from postline.errors import IntegrityViolation, QuotaExceeded, StoreUnavailable
from postline.store.base import IdempotencyClaim, IdempotencyRecord, NewMessage, QueueKey, Quota
from postline.store.postgres.core import _Q, NOTIFY_CHANNEL, PostgresCore, _rowcount, log
from postline.store.postgres.pending import _Enqueue, _Retry
from postline.store.usage import check_quota

if TYPE_CHECKING:
    from postline.store.postgres.core import Conn

__all__ = ["PostgresIngest"]

_NOTIFY_LIMIT = 7000  # bytes per payload; PostgreSQL refuses 8000 and more
_MAX_BATCH = 256  # enqueue calls written by one statement
_MAX_BATCH_ROWS = 20_000  # messages + recipients in one statement (a lone call may exceed it)


_Outcome = IdempotencyRecord | _Retry | QuotaExceeded | None


async def _over_quota(conn: Conn, batch: Sequence[_Enqueue]) -> dict[int, QuotaExceeded]:
    """The requests of ``batch`` a quota refuses, by position (none without a quota).

    With a quota in the batch, one statement locks the usage rows of every tenant and day
    the batch counts (so the counts of this transaction and the check agree across nodes)
    and reads them; the requests are then judged in order, each seeing the ones before it.
    """
    pairs = sorted({(tenant, r.day) for r in batch for tenant in r.usage})
    rows = await conn.fetch(_Q["lock_usage"], [p[0] for p in pairs], [p[1] for p in pairs])
    used = {(row[0], row[1]): [int(row[2]), int(row[3])] for row in rows}
    refused: dict[int, QuotaExceeded] = {}
    for g, request in enumerate(batch):
        quota: Quota | None = request.quota
        if quota is not None:
            try:
                for tenant, n in request.usage.items():
                    day_used, month_used = used[(tenant, request.day)]
                    check_quota(quota, request.day, day_used, month_used, n)
            except QuotaExceeded as exc:
                refused[g] = exc
                continue
        for tenant, n in request.usage.items():
            counts = used[(tenant, request.day)]
            counts[0] += n
            counts[1] += n
    return refused


async def _insert(conn: Conn, batch: Sequence[_Enqueue]) -> dict[int, _Outcome]:
    """Write a batch of enqueues in one statement (and, when a request has a quota, the
    quota check before it in the same transaction); per request: None (stored), the
    earlier record of its idempotency key, ``_Retry``, or the refusal of its quota."""
    if not any(r.quota is not None and r.usage for r in batch):
        return await _insert_statement(conn, batch, {})
    async with conn.transaction():
        refused = await _over_quota(conn, batch)
        return await _insert_statement(conn, batch, refused)


async def _insert_statement(
    conn: Conn, batch: Sequence[_Enqueue], refused: Mapping[int, QuotaExceeded]
) -> dict[int, _Outcome]:
    claims: list[list[Any]] = [[] for _ in range(7)]
    free: list[int] = []
    m_cols: list[list[Any]] = [[] for _ in range(13)]
    r_cols: list[list[Any]] = [[] for _ in range(11)]
    extra: list[list[Any]] = [[], [], [], []]
    usage: list[list[Any]] = [[], [], [], []]
    for g, request in enumerate(batch):
        if g in refused:
            continue
        for tenant, n in request.usage.items():
            for col, value in zip(usage, (tenant, request.day, n, g), strict=True):
                col.append(value)
        claim = request.claim
        if claim is not None and request.claim_key is not None:
            for col, value in zip(
                claims,
                (
                    request.claim_key[0],
                    claim.key,
                    claim.request_hash,
                    claim.status,
                    claim.response,
                    claim.created_at,
                    g,
                ),
                strict=True,
            ):
                col.append(value)
        else:
            free.append(g)
        for col, src in zip(m_cols[:12], request.m_cols, strict=True):
            col.extend(src)
        m_cols[12].extend([g] * len(request.m_cols[0]))
        for col, src in zip(r_cols[:10], request.r_cols[:10], strict=True):
            col.extend(src)
        r_cols[10].extend([g] * len(request.r_cols[0]))
        for col, src in zip(extra, request.r_cols[10:14], strict=True):
            col.extend(src)
    stored = set(
        await conn.fetchval(_Q["enqueue"], *claims, free, *m_cols, *r_cols, *extra, *usage)
    )
    out: dict[int, _Outcome] = {g: None for g in range(len(batch)) if g in stored}
    lost = [g for g in range(len(batch)) if g not in stored]
    if lost:
        keys = [batch[g].claim_key for g in lost]
        records = {
            (r[0], r[1]): IdempotencyRecord(r[2], r[3], r[4])
            for r in await conn.fetch(
                _Q["get_idempotency_many"],
                [k[0] for k in keys if k],
                [k[1] for k in keys if k],
            )
        }
        for g, key in zip(lost, keys, strict=True):
            if g in refused:
                # A replayed key answers its record, even when the quota is used up now.
                record = records.get(key) if key else None
                out[g] = record if record is not None else refused[g]
            else:
                out[g] = records.get(key, _Retry()) if key else _Retry()
    return out


class PostgresIngest(PostgresCore):
    """Ingest: enqueue (group commit), idempotency keys, due announcements."""

    async def enqueue(
        self,
        messages: Sequence[NewMessage],
        *,
        idempotency: IdempotencyClaim | None = None,
        tenant_id: str | None = None,
        node_id: str = "",
        leased: Mapping[str, Collection[int]] | None = None,
        lease_until: float = 0.0,
        quota: Quota | None = None,
    ) -> IdempotencyRecord | None:
        if idempotency is not None and tenant_id is None:
            raise ValueError("an idempotency claim needs the tenant_id")
        if self._pool is None:
            raise StoreUnavailable("the store is closed")
        request = _Enqueue(messages, idempotency, tenant_id, node_id, leased, lease_until, quota)
        request.future = asyncio.get_running_loop().create_future()
        self._pending.append(request)
        if len(self._writers) < self._max_writers:
            task = asyncio.get_running_loop().create_task(
                self._write_pending(), name="postline-pg-enqueue"
            )
            self._writers.add(task)
            task.add_done_callback(self._writers.discard)
        # The write goes on when the caller is cancelled: an accepted message is never lost
        # half-way, and the caller's retry finds the idempotency key.
        result = await asyncio.shield(request.future)
        if result is None:
            self._announce(request.due_now, request.due_at)
        return result

    async def _write_pending(self) -> None:
        """Group commit: write whatever enqueues are waiting, one statement per batch."""
        try:
            await self._write_loop()
        finally:
            # No await between the loop's last look at _pending and this: an enqueue that
            # finds the writers busy can count on one of them to pick its request up.
            self._writers.discard(asyncio.current_task())

    async def _write_loop(self) -> None:
        while self._pending:
            batch: list[_Enqueue] = []
            keys: set[tuple[str, str]] = set()
            rest: list[_Enqueue] = []
            rows = 0
            for request in self._pending:
                key = request.claim_key
                if (
                    (key is not None and key in keys)
                    or len(batch) >= _MAX_BATCH
                    or (batch and rows + request.rows > _MAX_BATCH_ROWS)
                ):
                    rest.append(request)  # the same key twice waits for the next batch
                    continue
                if key is not None:
                    keys.add(key)
                batch.append(request)
                rows += request.rows
            self._pending = rest
            try:
                await self._write_batch(batch)
            except BaseException as exc:  # every caller must get an answer
                for request in batch:
                    if not request.future.done():
                        request.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise

    async def _write_batch(self, batch: list[_Enqueue]) -> None:
        self._batches += 1
        self._ops += len(batch)
        try:
            outcome = await self._call(lambda conn: _insert(conn, batch))
        except IntegrityViolation:
            if len(batch) == 1:
                raise
            # One bad request must not sink the others: write each alone.
            for request in batch:
                try:
                    outcome = await self._call(functools.partial(_insert, batch=[request]))
                except Exception as exc:
                    request.future.set_exception(exc)
                else:
                    self._settle([request], outcome)
            return
        self._settle(batch, outcome)

    def _settle(self, batch: list[_Enqueue], outcome: dict[int, _Outcome]) -> None:
        for i, request in enumerate(batch):
            result = outcome[i]
            if isinstance(result, _Retry):
                self._pending.append(request)  # the key was purged meanwhile: claim again
            elif request.future.done():
                continue
            elif isinstance(result, QuotaExceeded):
                request.future.set_exception(result)
            else:
                request.future.set_result(result)

    async def get_idempotency(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        async def op(conn: Conn) -> IdempotencyRecord | None:
            row = await conn.fetchrow(_Q["get_idempotency"], tenant_id, key)
            return IdempotencyRecord(*row) if row else None

        return await self._call(op)

    async def purge_idempotency(self, older_than: float) -> int:
        async def op(conn: Conn) -> int:
            return _rowcount(await conn.execute(_Q["purge_idempotency"], older_than))

        return await self._call(op)

    def _announce(
        self, now: Collection[QueueKey], later: Mapping[QueueKey, float], rescan: bool = False
    ) -> None:
        """Queue queues for the next NOTIFY; one flusher task sends what piled up."""
        if not now and not later and not rescan:
            return
        self._due.add(now, later, rescan)
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_notifications(), name="postline-pg-notify"
            )

    async def _flush_notifications(self) -> None:
        try:
            while self._due:
                payloads = self._due.payloads(self.origin, limit=_NOTIFY_LIMIT)

                async def op(conn: Conn, payloads: list[str] = payloads) -> None:
                    for payload in payloads:
                        await conn.execute(_Q["notify"], NOTIFY_CHANNEL, payload)

                try:
                    await self._call(op)
                except Exception as exc:  # the pollers find the work anyway
                    log.warning(
                        "due notification failed: %s",
                        exc,
                        extra={"action": "store.notify_failed"},
                    )
        finally:
            self._flusher = None  # synchronously after the last look at the pending sets
