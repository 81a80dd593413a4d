"""SQLite store: WAL, one writer thread with group commit, a small pool of readers.

Every write is a function run inside the writer thread. The writer drains whatever
operations are waiting, runs them in ONE transaction, commits (with ``synchronous=FULL``
the commit fsyncs the WAL), and only then resolves the callers' futures; when one of them
fails, the batch is rolled back and each runs again alone, so only that one fails. Many
concurrent requests therefore share one fsync, and nothing is acknowledged before it is
on disk.

Operations wait in three lanes, and each batch takes them in this order:

* ``URGENT`` — delivery outcomes, lease renewals and hand-backs: what stops a recipient
  being sent twice never waits behind anything else;
* ``NORMAL`` — ingest and everything else;
* ``BULK`` — leases, which the delivery engine keeps few and small anyway; a batch holds
  at least one waiting bulk operation, so leasing always progresses.

A batch holds at most ``max_batch`` operations and about ``max_rows`` rows (each operation
says how many it writes), so one commit never takes long and an urgent operation waits
for at most one batch.

This module is the only place that imports ``sqlite3``; driver errors become
:mod:`postline.errors` store errors in :func:`_translate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from postline.errors import IntegrityViolation, StoreError, StoreUnavailable
from postline.model import EventType, RecipientState
from postline.model.ids import new_id
from postline.store._counts import merge_counts
from postline.store._rows import group_leased, stat_of, sum_stats, with_paused
from postline.store.base import (
    ApiKey,
    AttemptRecord,
    DkimKeyRecord,
    Event,
    EventQuery,
    IdempotencyClaim,
    IdempotencyRecord,
    InboundMessage,
    LeasedMessage,
    LeasedRecipient,
    LeaseRequest,
    MessageView,
    NewEvent,
    NewMessage,
    QueueDepths,
    QueueDue,
    QueueKey,
    QueueLease,
    QueueStat,
    RecipientView,
    ReputationCount,
    ReputationTotals,
    SenderDomain,
    Suppression,
    Tenant,
    TenantStatus,
    assemble_domains,
)
from postline.store.queries import load_queries

__all__ = ["SQLiteStore", "schema_version"]

log = logging.getLogger(__name__)

T = TypeVar("T")
_Q = load_queries("postline.store.sqlite")
_PACKAGE = "postline.store.sqlite"


def _translate(exc: BaseException) -> BaseException:
    """Map a driver error to the store error a caller can act on."""
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityViolation(str(exc))
    if isinstance(exc, sqlite3.OperationalError):
        return StoreUnavailable(f"SQLite: {exc}")
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"SQLite: {exc}")
    return exc


def _migrations() -> list[tuple[int, str]]:
    """(version, sql) of every file ``migrations/NNNN_<what>.sql``, in order."""
    out = []
    for entry in resources.files(_PACKAGE).joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(out)


def schema_version() -> int:
    """The version a fresh schema starts at (``PRAGMA user_version`` of schema.sql)."""
    text = resources.files(_PACKAGE).joinpath("schema.sql").read_text(encoding="utf-8")
    for line in text.splitlines():
        if line.upper().startswith("PRAGMA USER_VERSION"):
            return int(line.split("=")[1].strip(" ;"))
    raise StoreError("schema.sql has no PRAGMA user_version")


def _connect(path: Path, synchronous: str, *, readonly: bool = False) -> sqlite3.Connection:
    if not readonly and not path.exists():
        # Messages, keys' hashes and addresses: readable by the node's user only. SQLite
        # gives the -wal and -shm files the permissions of the database file.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    conn = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, cached_statements=256
    )
    conn.execute("PRAGMA busy_timeout = 10000")
    if not readonly:
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute("PRAGMA temp_store = MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    return conn


def _apply_schema(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        text = resources.files(_PACKAGE).joinpath("schema.sql").read_text(encoding="utf-8")
        conn.executescript(text)
        return
    for number, sql in _migrations():
        if number > version:
            log.info("applying migration %04d", number, extra={"action": "store.migrate"})
            conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")


URGENT, NORMAL, BULK = 0, 1, 2
"""Writer lanes (see the module docstring)."""


class _Op:
    __slots__ = ("fn", "future", "loop", "weight")

    def __init__(
        self,
        fn: Callable[[sqlite3.Connection], Any],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[Any],
        weight: int,
    ) -> None:
        self.fn = fn
        self.loop = loop
        self.future = future
        self.weight = weight


def _settle(results: list[tuple[_Op, Any, BaseException | None]]) -> None:
    for op, value, error in results:
        if op.future.done():
            continue
        if error is not None:
            op.future.set_exception(error)
        else:
            op.future.set_result(value)


class _Writer(threading.Thread):
    """Runs write operations in batches, one transaction and one fsync per batch."""

    def __init__(self, path: Path, synchronous: str, max_batch: int, max_rows: int) -> None:
        super().__init__(name="postline-sqlite-writer", daemon=True)
        self._path = path
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._max_rows = max_rows
        self._lanes: tuple[deque[_Op], deque[_Op], deque[_Op]] = (deque(), deque(), deque())
        self._cond = threading.Condition()
        self._closing = False
        self.ready = threading.Event()
        self.open_error: BaseException | None = None
        self.batches = 0
        self.ops = 0

    def submit(self, op: _Op, lane: int) -> None:
        with self._cond:
            if self._closing:
                raise StoreUnavailable("the store is closing")
            self._lanes[lane].append(op)
            self._cond.notify()

    def close(self) -> None:
        """Finish what waits, then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()

    def waiting(self) -> tuple[int, int, int]:
        """Operations waiting per lane (urgent, normal, bulk)."""
        u, n, b = self._lanes
        return len(u), len(n), len(b)

    def _next_batch(self) -> list[_Op] | None:
        with self._cond:
            while not any(self._lanes):
                if self._closing:
                    return None
                self._cond.wait()
            batch: list[_Op] = []
            rows = 0
            full = False
            for lane in self._lanes:
                while lane and not full:
                    if len(batch) >= self._max_batch or (
                        batch and rows + lane[0].weight > self._max_rows
                    ):
                        full = True
                        break
                    op = lane.popleft()
                    batch.append(op)
                    rows += op.weight
            bulk = self._lanes[BULK]
            if bulk and full:
                # Leasing always progresses, however busy the other lanes are.
                batch.append(bulk.popleft())
            return batch

    def run(self) -> None:
        try:
            conn = _connect(self._path, self._synchronous)
            _apply_schema(conn)
        except BaseException as exc:  # reported to open()
            self.open_error = _translate(exc)
            self.ready.set()
            return
        self.ready.set()
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    break
                try:
                    self._run(conn, batch)
                except BaseException as exc:  # the writer must outlive any one batch
                    log.exception("store writer failed a batch", extra={"action": "store.writer"})
                    try:
                        if conn.in_transaction:
                            conn.rollback()
                    except sqlite3.Error:
                        pass
                    err: BaseException = StoreUnavailable(f"SQLite writer: {exc}")
                    for op in batch:
                        failed: list[tuple[_Op, Any, BaseException | None]] = [(op, None, err)]
                        try:
                            op.loop.call_soon_threadsafe(_settle, failed)
                        except RuntimeError:
                            pass
        finally:
            conn.close()

    def _run(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        results = self._transaction(conn, batch)
        if results is None:
            # One operation failed: the batch was rolled back, and each runs alone now,
            # so only the failing one fails. (Savepoints per operation would spare the
            # rerun, but cost 20 % on small batches and made large ones 30-70x slower.)
            results = []
            for op in batch:
                alone = self._transaction(conn, [op])
                assert alone is not None
                results.extend(alone)
        self.batches += 1
        self.ops += len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Op, Any, BaseException | None]]] = {}
        for item in results:
            by_loop.setdefault(item[0].loop, []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, items)
            except RuntimeError:  # loop closed: nobody is waiting any more
                pass

    @staticmethod
    def _transaction(
        conn: sqlite3.Connection, batch: list[_Op]
    ) -> list[tuple[_Op, Any, BaseException | None]] | None:
        """Run ``batch`` in one transaction: every result, or None when an operation of a
        batch of several failed (then nothing of it was committed)."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            err = _translate(exc)
            return [(op, None, err) for op in batch]
        values = []
        for op in batch:
            # Cancelled callers still get their write: an outcome must never be lost.
            try:
                values.append(op.fn(conn))
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                if len(batch) == 1:
                    return [(op, None, _translate(exc))]
                return None
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            err = _translate(exc)
            return [(op, None, err) for op in batch]
        return [(op, value, None) for op, value in zip(batch, values, strict=True)]


def _bodies(conn: sqlite3.Connection, ids: Collection[str]) -> dict[str, tuple[Any, ...]]:
    """Message rows (tenant, mail from, body, Message-ID, source, stream) by id."""
    if not ids:
        return {}
    (found,) = conn.execute(_Q["lease_bodies"], {"ids": json.dumps(list(ids))}).fetchone()
    return {
        mid: (tenant, mail_from, bytes.fromhex(body), header, source, stream)
        for mid, tenant, mail_from, body, header, source, stream in json.loads(found)
    }


class SQLiteStore:
    """The embedded store (see module docstring)."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "full",
        max_batch: int = 512,
        max_rows: int = 2_000,
        readers: int = 2,
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._max_rows = max_rows
        self._readers = readers
        self._writer: _Writer | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    # -- plumbing --------------------------------------------------------------------
    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = _Writer(self.path, self._synchronous, self._max_batch, self._max_rows)
        writer.start()
        await asyncio.to_thread(writer.ready.wait)
        if writer.open_error is not None:
            err = writer.open_error
            if isinstance(err, StoreError):
                # Say which file, and what usually causes it.
                raise type(err)(
                    f"{err} (store {self.path}: is the disk full, or the file or its "
                    "directory not writable by this user?)"
                ) from err
            raise err
        self._writer = writer
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix="postline-sqlite-read")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        with self._lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    @property
    def stats(self) -> dict[str, int]:
        w = self._writer
        return {"batches": w.batches, "ops": w.ops} if w else {"batches": 0, "ops": 0}

    async def _write(
        self, fn: Callable[[sqlite3.Connection], T], *, lane: int = NORMAL, rows: int = 1
    ) -> T:
        """Run ``fn`` in the writer; ``rows``: about how many rows it writes."""
        if self._writer is None:
            raise StoreUnavailable("the store is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writer.submit(_Op(fn, loop, future, max(1, rows)), lane)
        return await future

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, self._synchronous, readonly=True)
            self._local.conn = conn
            with self._lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._pool is None:
            raise StoreUnavailable("the store is closed")

        def run() -> T:
            try:
                return fn(self._reader())
            except sqlite3.Error as exc:
                raise _translate(exc) from exc

        return await asyncio.get_running_loop().run_in_executor(self._pool, run)

    def _read_inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A point lookup on this thread's own read connection, without the hop to the
        reader pool: WAL readers never wait for the writer, and a primary-key lookup
        takes microseconds, less than the hop itself (used on the per-RCPT path)."""
        if self._pool is None:
            raise StoreUnavailable("the store is closed")
        try:
            return fn(self._reader())
        except sqlite3.Error as exc:
            raise _translate(exc) from exc

    # -- tenants and keys ------------------------------------------------------------
    async def create_tenant(self, name: str) -> Tenant:
        tenant = Tenant(id=new_id(), name=name, created_at=time.time())

        def op(conn: sqlite3.Connection) -> Tenant:
            try:
                conn.execute(
                    _Q["create_tenant"],
                    {"id": tenant.id, "name": name, "created_at": tenant.created_at},
                )
            except sqlite3.IntegrityError as exc:
                raise IntegrityViolation(f"a tenant named {name!r} already exists") from exc
            return tenant

        return await self._write(op)

    async def get_tenant(self, *, name: str | None = None, id: str | None = None) -> Tenant | None:
        def op(conn: sqlite3.Connection) -> Tenant | None:
            if name is not None:
                row = conn.execute(_Q["tenant_by_name"], {"name": name}).fetchone()
            else:
                row = conn.execute(_Q["tenant_by_id"], {"id": id}).fetchone()
            return Tenant(*row) if row else None

        return await self._read(op)

    async def list_tenants(self) -> list[Tenant]:
        return await self._read(
            lambda conn: [Tenant(*row) for row in conn.execute(_Q["list_tenants"])]
        )

    async def add_api_key(self, tenant_id: str, key_hash: str, prefix: str) -> ApiKey:
        key = ApiKey(id=new_id(), tenant_id=tenant_id, prefix=prefix, created_at=time.time())

        def op(conn: sqlite3.Connection) -> ApiKey:
            conn.execute(
                _Q["add_api_key"],
                {
                    "id": key.id,
                    "tenant_id": tenant_id,
                    "key_hash": key_hash,
                    "prefix": prefix,
                    "created_at": key.created_at,
                },
            )
            return key

        return await self._write(op)

    async def tenant_for_key(self, key_hash: str) -> Tenant | None:
        def op(conn: sqlite3.Connection) -> Tenant | None:
            row = conn.execute(_Q["tenant_for_key"], {"key_hash": key_hash}).fetchone()
            return Tenant(*row) if row else None

        return await self._read(op)

    async def revoke_api_key(self, tenant_id: str, prefix: str) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                _Q["revoke_api_key"],
                {"tenant_id": tenant_id, "prefix": prefix, "now": time.time()},
            )
            return cur.rowcount > 0

        return await self._write(op)

    # -- ingest ----------------------------------------------------------------------
    async def enqueue(
        self,
        messages: Sequence[NewMessage],
        *,
        idempotency: IdempotencyClaim | None = None,
        tenant_id: str | None = None,
        node_id: str = "",
        leased: Mapping[str, Collection[int]] | None = None,
        lease_until: float = 0.0,
    ) -> IdempotencyRecord | None:
        if idempotency is not None and tenant_id is None:
            raise ValueError("an idempotency claim needs the tenant_id")
        msg_rows = []
        rcpt_rows = []
        event_rows = []
        for m in messages:
            msg_rows.append(
                (
                    m.id,
                    m.tenant_id,
                    m.created_at,
                    m.mail_from,
                    m.message_id_header,
                    m.subject,
                    m.source,
                    m.stream,
                    json.dumps(list(m.tags)),
                    json.dumps(m.metadata),
                    len(m.body),
                    m.body,
                )
            )
            data: dict[str, Any] = {"source": m.source}
            if m.next_attempt_at > m.created_at + 1:
                data["send_at"] = m.next_attempt_at
            event_data = json.dumps(data)
            direct = leased.get(m.id, ()) if leased else ()
            for r in m.recipients:
                owned = r.idx in direct
                suppressed = r.suppressed is not None
                rcpt_rows.append(
                    (
                        m.id,
                        r.idx,
                        m.tenant_id,
                        r.address,
                        r.domain,
                        RecipientState.SUPPRESSED.value if suppressed else "queued",
                        m.created_at,
                        lease_until if owned else m.next_attempt_at,
                        m.expires_at,
                        m.created_at,
                        node_id if owned else None,
                        lease_until if owned else None,
                    )
                )
                event_rows.append(
                    (
                        m.created_at,
                        m.tenant_id,
                        EventType.SUPPRESSED.value if suppressed else EventType.ACCEPTED.value,
                        m.id,
                        r.idx,
                        r.address,
                        node_id,
                        json.dumps({**data, "reason": r.suppressed}) if suppressed else event_data,
                    )
                )

        def op(conn: sqlite3.Connection) -> IdempotencyRecord | None:
            if idempotency is not None:
                row = conn.execute(
                    _Q["get_idempotency"], {"tenant_id": tenant_id, "key": idempotency.key}
                ).fetchone()
                if row is not None:
                    return IdempotencyRecord(*row)
                conn.execute(
                    _Q["insert_idempotency"],
                    {
                        "tenant_id": tenant_id,
                        "key": idempotency.key,
                        "request_hash": idempotency.request_hash,
                        "status": idempotency.status,
                        "response": idempotency.response,
                        "created_at": idempotency.created_at,
                    },
                )
            conn.executemany(_Q["insert_message"], msg_rows)
            conn.execute(_Q["insert_recipients"], {"rows": json.dumps(rcpt_rows)})
            conn.execute(_Q["insert_events"], {"rows": json.dumps(event_rows)})
            return None

        return await self._write(op, rows=len(msg_rows) + len(rcpt_rows))

    async def get_idempotency(self, tenant_id: str, key: str) -> IdempotencyRecord | None:
        def op(conn: sqlite3.Connection) -> IdempotencyRecord | None:
            row = conn.execute(
                _Q["get_idempotency"], {"tenant_id": tenant_id, "key": key}
            ).fetchone()
            return IdempotencyRecord(*row) if row else None

        return await self._read(op)

    async def purge_idempotency(self, older_than: float) -> int:
        return await self._write(
            lambda conn: conn.execute(_Q["purge_idempotency"], {"older_than": older_than}).rowcount
        )

    # -- queue -----------------------------------------------------------------------
    async def due_queues(
        self, *, owner: str, limit: int = 5000, after: QueueKey = ("", "")
    ) -> list[QueueDue]:
        params = {
            "owner": owner,
            "limit": limit,
            "after_tenant": after[0],
            "after_domain": after[1],
        }

        def op(conn: sqlite3.Connection) -> list[QueueDue]:
            (found,) = conn.execute(_Q["due_queues"], params).fetchone()
            return [QueueDue(tenant, domain, due) for tenant, domain, due in json.loads(found)]

        return await self._read(op)

    async def lease_many(
        self, requests: Sequence[LeaseRequest], *, now: float, lease_time: float, owner: str
    ) -> list[QueueLease]:
        if not requests:
            return []
        until = now + lease_time

        def op(conn: sqlite3.Connection) -> list[QueueLease]:
            # One statement per distinct limit (a round grants most queues the same).
            per_queue: list[list[LeasedRecipient]] = [[] for _ in requests]
            leased: list[Any] = []
            by_limit: dict[int, list[int]] = {}
            for i, req in enumerate(requests):
                by_limit.setdefault(req.limit, []).append(i)
            for limit, positions in by_limit.items():
                queues = json.dumps(
                    [[requests[i].tenant_id, requests[i].domain] for i in positions]
                )
                (found,) = conn.execute(
                    _Q["lease_queues"], {"queues": queues, "now": now, "limit": limit}
                ).fetchone()
                for i, rows in zip(positions, json.loads(found), strict=True):
                    leased.extend(rows)
                    per_queue[i] = [LeasedRecipient(*row) for row in rows]
            if leased:
                conn.execute(
                    _Q["lease_mark"], {"rows": json.dumps(leased), "owner": owner, "until": until}
                )
            bodies = _bodies(conn, {r.message_id for rcpts in per_queue for r in rcpts})
            drained = [i for i, req in enumerate(requests) if len(per_queue[i]) < req.limit]
            next_due: dict[int, float | None] = {}
            if drained:
                queues = json.dumps([[requests[i].tenant_id, requests[i].domain] for i in drained])
                (found,) = conn.execute(
                    _Q["queues_next_due"], {"queues": queues, "owner": owner}
                ).fetchone()
                next_due = dict(zip(drained, json.loads(found), strict=True))
            return [
                QueueLease(
                    req.tenant_id,
                    req.domain,
                    group_leased(per_queue[i], bodies),
                    len(per_queue[i]),
                    i in next_due,
                    next_due.get(i),
                )
                for i, req in enumerate(requests)
            ]

        return await self._write(op, lane=BULK, rows=sum(r.limit for r in requests))

    async def lease(
        self, domain: str, *, now: float, limit: int, lease_time: float, owner: str
    ) -> list[LeasedMessage]:
        params = {
            "owner": owner,
            "until": now + lease_time,
            "domain": domain,
            "now": now,
            "limit": limit,
        }

        def op(conn: sqlite3.Connection) -> list[LeasedMessage]:
            rcpts = [LeasedRecipient(*row) for row in conn.execute(_Q["lease"], params)]
            return group_leased(rcpts, _bodies(conn, {r.message_id for r in rcpts}))

        return await self._write(op, lane=BULK, rows=limit)

    async def record(self, records: Sequence[AttemptRecord], *, node_id: str = "") -> None:
        # Rounds of one statement per kind (final, retry), each naming a recipient once: a
        # recipient with two records in one batch gets them applied in order.
        rounds: list[tuple[list[list[Any]], list[list[Any]]]] = [([], [])]
        seen: set[tuple[str, int]] = set()
        unknown: list[tuple[str, int]] = []  # recipients whose outcome names no domain
        event_rows: list[list[Any]] = []
        suppress_rows = []
        clear_rows = []
        for r in records:
            if r.suppress is not None:
                suppress_rows.append(
                    (
                        r.tenant_id,
                        r.address.lower(),
                        r.suppress,
                        r.at,
                        r.suppress_until,
                        "bounce",
                        r.text or "",
                        r.message_id,
                    )
                )
            if r.state is RecipientState.DELIVERED:
                clear_rows.append((r.tenant_id, r.address.lower()))
            key = (r.message_id, r.idx)
            if key in seen:
                rounds.append(([], []))
                seen.clear()
            seen.add(key)
            final_rows, retry_rows = rounds[-1]
            inc = 1 if r.counted else 0
            if r.domain is None:
                unknown.append(key)
            if r.state is RecipientState.QUEUED:
                retry_rows.append(
                    [r.message_id, r.idx, r.next_attempt_at, inc, r.at, r.code, r.enhanced,
                     r.text, r.mx, r.domain, r.tenant_id, r.owner]
                )  # fmt: skip
            else:
                final_rows.append(
                    [r.message_id, r.idx, r.state.value, inc, r.at, r.code, r.enhanced,
                     r.text, r.mx, r.domain, r.tenant_id]
                )  # fmt: skip
            if r.event is None:
                continue
            data = dict(r.data)
            if r.code is not None:
                data.setdefault("code", r.code)
                data.setdefault("enhanced", r.enhanced)
                data.setdefault("text", r.text)
            if r.mx is not None:
                data.setdefault("mx", r.mx)
            if r.state is RecipientState.QUEUED:
                data.setdefault("next_attempt_at", r.next_attempt_at)
            event_rows.append(
                [r.at, r.tenant_id, r.event.value, r.message_id, r.idx, r.address, node_id,
                 json.dumps(data)]
            )  # fmt: skip
        events = {"rows": json.dumps(event_rows)} if event_rows else None

        def op(conn: sqlite3.Connection) -> None:
            if unknown:
                domains = {}
                for key in unknown:
                    found = conn.execute(_Q["recipient_domain"], key).fetchone()
                    domains[key] = found[0] if found else None
                for final_rows, retry_rows in rounds:
                    for row in final_rows + retry_rows:
                        if row[9] is None:
                            row[9] = domains.get((row[0], row[1]))
            for final_rows, retry_rows in rounds:
                if final_rows:
                    conn.execute(_Q["record_final"], {"rows": json.dumps(final_rows)})
                if retry_rows:
                    conn.execute(_Q["record_retry"], {"rows": json.dumps(retry_rows)})
            if events is not None:
                conn.execute(_Q["insert_events"], events)
            if suppress_rows:
                conn.executemany(_Q["add_suppression"], suppress_rows)
            # A delivery ends its address's soft-bounce run; with no run anywhere (the
            # usual case) one lookup per batch spares a delete per delivered recipient.
            if clear_rows and conn.execute(_Q["any_soft_bounces"]).fetchone()[0]:
                conn.executemany(_Q["clear_soft_bounces"], clear_rows)

        await self._write(op, lane=URGENT, rows=len(records))

    async def renew_leases(
        self, owner: str, refs: Sequence[tuple[str, int, str]], *, until: float
    ) -> list[tuple[str, int]]:
        if not refs:
            return []
        params = {
            "owner": owner,
            "until": until,
            "refs": json.dumps([[m, i] for m, i, _ in refs]),
        }

        def op(conn: sqlite3.Connection) -> list[tuple[str, int]]:
            conn.execute(_Q["renew_leases"], params)
            (found,) = conn.execute(_Q["renewed_leases"], params).fetchone()
            return [(m, i) for m, i in json.loads(found)]

        return await self._write(op, lane=URGENT, rows=len(refs))

    async def release_leases(self, owner: str, *, now: float) -> int:
        return await self._write(
            lambda conn: conn.execute(_Q["release_owned"], {"owner": owner, "now": now}).rowcount,
            lane=URGENT,
        )

    async def cancel(
        self, tenant_id: str, message_id: str, *, now: float, node_id: str = ""
    ) -> int:
        def op(conn: sqlite3.Connection) -> int:
            rows = conn.execute(
                _Q["cancel"], {"message_id": message_id, "tenant_id": tenant_id, "now": now}
            ).fetchall()
            conn.executemany(
                _Q["insert_event"],
                [
                    (
                        now,
                        tenant_id,
                        EventType.CANCELLED.value,
                        message_id,
                        idx,
                        address,
                        node_id,
                        "{}",
                    )
                    for idx, address in rows
                ],
            )
            return len(rows)

        return await self._write(op)

    # -- reads -----------------------------------------------------------------------
    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageView | None:
        def op(conn: sqlite3.Connection) -> MessageView | None:
            row = conn.execute(
                _Q["get_message"], {"id": message_id, "tenant_id": tenant_id}
            ).fetchone()
            if row is None:
                return None
            now = time.time()
            rcpts = []
            for r in conn.execute(_Q["get_recipients"], {"id": message_id}):
                state = RecipientState(r[3])
                leased = r[12] is not None and (r[13] or 0) > now
                rcpts.append(
                    RecipientView(
                        idx=r[0],
                        address=r[1],
                        domain=r[2],
                        state=state,
                        attempts=r[4],
                        next_attempt_at=r[5] if state is RecipientState.QUEUED else None,
                        expires_at=r[6],
                        updated_at=r[7],
                        last_code=r[8],
                        last_enhanced=r[9],
                        last_text=r[10],
                        last_mx=r[11],
                        leased=leased and state is RecipientState.QUEUED,
                    )
                )
            return MessageView(
                id=row[0],
                tenant_id=row[1],
                created_at=row[2],
                mail_from=row[3],
                subject=row[4],
                message_id_header=row[5],
                source=row[6],
                stream=row[7],
                size=row[8],
                tags=json.loads(row[9]),
                metadata=json.loads(row[10]),
                recipients=rcpts,
            )

        return await self._read(op)

    async def events(self, query: EventQuery) -> list[Event]:
        params = {
            "tenant_id": query.tenant_id,
            "after": query.after,
            "limit": query.limit,
            "types": json.dumps(list(query.types)) if query.types else None,
            "message_id": query.message_id,
            "recipient": query.recipient,
            "since": query.since,
            "until": query.until,
        }
        sql = _Q["events_message"] if query.message_id else _Q["events"]

        def op(conn: sqlite3.Connection) -> list[Event]:
            return [
                Event(
                    id=r[0],
                    at=r[1],
                    tenant_id=r[2],
                    type=r[3],
                    message_id=r[4],
                    recipient_idx=r[5],
                    recipient=r[6],
                    node_id=r[7],
                    data=json.loads(r[8]),
                )
                for r in conn.execute(sql, params)
            ]

        return await self._read(op)

    async def queue_stats(
        self,
        tenant_id: str | None = None,
        *,
        after: str = "",
        limit: int = 1000,
        domain: str | None = None,
    ) -> list[QueueStat]:
        def op(conn: sqlite3.Connection) -> list[QueueStat]:
            if tenant_id is None:
                if domain is not None:
                    names = [domain]
                else:
                    names = [
                        d
                        for (d,) in conn.execute(
                            _Q["queue_domains_page"], {"after": after, "limit": limit}
                        )
                    ]
                out = []
                for name in names:
                    rows = conn.execute(_Q["queue_domain_tenants"], {"domain": name}).fetchall()
                    if rows:
                        out.append(sum_stats(name, rows))
                return out
            params = {"tenant_id": tenant_id, "after": after, "limit": limit, "domain": domain}
            query = "queue_page" if domain is None else "queue_one"
            rows = conn.execute(_Q[query], params).fetchall()
            stats = [stat_of(row) for row in rows]
            # Domains paused for the tenant with nothing queued are listed too.
            paused = [
                d
                for d, _at in conn.execute(_Q["paused_tenant"], {"tenant_id": tenant_id})
                if d != "*" and d > after and (domain is None or d == domain)
            ]
            return with_paused(stats, paused, limit)

        return await self._read(op)

    async def queue_depths(self, top: int = 50) -> QueueDepths:
        def op(conn: sqlite3.Connection) -> QueueDepths:
            (total,) = conn.execute(_Q["queue_depth_total"]).fetchone()
            ranked = [(d, int(n)) for d, n in conn.execute(_Q["queue_depths_top"], {"top": top})]
            return QueueDepths(int(total), ranked)

        return await self._read(op)

    async def drop_empty_queues(self) -> int:
        return await self._write(lambda conn: conn.execute(_Q["drop_empty_queues"]).rowcount)

    async def state_counts(self) -> dict[str, int]:
        return await self._read(lambda conn: dict(conn.execute(_Q["state_counts"]).fetchall()))

    # -- suppression ------------------------------------------------------------------
    async def suppressed(
        self, tenant_id: str, addresses: Sequence[str], *, now: float
    ) -> dict[str, Suppression]:
        if not addresses:
            return {}
        wanted = sorted({a.lower() for a in addresses})
        params: dict[str, Any]
        if len(wanted) == 1:
            query = _Q["suppressed_one"]
            params = {"tenant_id": tenant_id, "address": wanted[0], "now": now}
        else:
            query = _Q["suppressed"]
            params = {"tenant_id": tenant_id, "addresses": json.dumps(wanted), "now": now}

        def op(conn: sqlite3.Connection) -> dict[str, Suppression]:
            out: dict[str, Suppression] = {}
            for row in conn.execute(query, params):
                entry = Suppression(*row)
                # The tenant's own entry wins over a global one.
                if entry.address not in out or entry.tenant_id != "*":
                    out[entry.address] = entry
            return out

        if len(addresses) <= 16:
            return self._read_inline(op)
        return await self._read(op)

    async def add_suppressions(self, entries: Sequence[Suppression]) -> int:
        rows = [
            (
                e.tenant_id,
                e.address.lower(),
                e.reason,
                e.created_at,
                e.expires_at,
                e.source,
                e.detail,
                e.message_id,
            )
            for e in entries
        ]

        def op(conn: sqlite3.Connection) -> int:
            conn.executemany(_Q["add_suppression"], rows)
            return len(rows)

        return await self._write(op)

    async def remove_suppression(self, tenant_id: str, address: str) -> bool:
        params = {"tenant_id": tenant_id, "address": address.lower()}
        return await self._write(
            lambda conn: conn.execute(_Q["remove_suppression"], params).rowcount > 0
        )

    async def list_suppressions(
        self,
        tenant_id: str,
        *,
        after: str = "",
        limit: int = 100,
        reason: str | None = None,
        now: float,
    ) -> list[Suppression]:
        params = {
            "tenant_id": tenant_id,
            "after": after.lower(),
            "limit": limit,
            "reason": reason,
            "now": now,
        }
        return await self._read(
            lambda conn: [
                Suppression(*row) for row in conn.execute(_Q["list_suppressions"], params)
            ]
        )

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
        def op(conn: sqlite3.Connection) -> list[str]:
            reached = []
            for address in {a.lower() for a in addresses}:
                (count,) = conn.execute(
                    _Q["note_soft_bounce"],
                    {"tenant_id": tenant_id, "address": address, "now": now, "window": window},
                ).fetchone()
                if count >= limit:
                    conn.execute(
                        _Q["add_suppression"],
                        (
                            tenant_id,
                            address,
                            "soft_bounce",
                            now,
                            expires_at,
                            "bounce",
                            f"{count} soft bounces in a row",
                            None,
                        ),
                    )
                    conn.execute(_Q["clear_soft_bounces"], (tenant_id, address))
                    reached.append(address)
            return reached

        return await self._write(op)

    async def append_events(self, events: Sequence[NewEvent], *, node_id: str = "") -> None:
        rows = [
            (
                e.at,
                e.tenant_id,
                e.type.value,
                e.message_id,
                e.recipient_idx,
                e.recipient,
                node_id,
                json.dumps(e.data),
            )
            for e in events
        ]

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(_Q["insert_event"], rows)

        await self._write(op)

    # -- inbound reports --------------------------------------------------------------
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

    # -- reputation -------------------------------------------------------------------
    async def add_reputation_counts(self, counts: Sequence[ReputationCount]) -> None:
        rows = [
            (key[0], key[1], key[2], c[0], c[1], c[2])
            for key, c in sorted(merge_counts(counts).items())
        ]
        if not rows:
            return

        def op(conn: sqlite3.Connection) -> None:
            conn.executemany(_Q["add_reputation_count"], rows)

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

    async def tenant_statuses(self, tenant_id: str | None = None) -> list[TenantStatus]:
        params = {"tenant_id": tenant_id}
        return await self._read(
            lambda conn: [TenantStatus(*row) for row in conn.execute(_Q["tenant_statuses"], params)]
        )

    async def set_tenant_status(
        self,
        status: TenantStatus,
        *,
        expected: Collection[str] | None = None,
        event: NewEvent | None = None,
        node_id: str = "",
    ) -> bool:
        params = {
            "tenant_id": status.tenant_id,
            "status": status.status,
            "reason": status.reason,
            "changed_at": status.changed_at,
            "changed_by": status.changed_by,
            "judged_since": status.judged_since,
        }
        wanted = None if expected is None else set(expected)

        def op(conn: sqlite3.Connection) -> bool:
            if wanted is not None:
                row = conn.execute(
                    _Q["tenant_status_of"], {"tenant_id": status.tenant_id}
                ).fetchone()
                if (row[0] if row else "ok") not in wanted:
                    return False
            conn.execute(_Q["set_tenant_status"], params)
            hold = "hold_tenant" if status.status == "paused" else "release_tenant"
            conn.execute(_Q[hold], params)
            if event is not None:
                conn.execute(
                    _Q["insert_event"],
                    (
                        event.at,
                        event.tenant_id,
                        event.type.value,
                        event.message_id,
                        event.recipient_idx,
                        event.recipient,
                        node_id,
                        json.dumps(event.data),
                    ),
                )
            return True

        return await self._write(op)

    # -- sender domains ---------------------------------------------------------------
    async def add_sender_domain(self, domain: SenderDomain) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            added = conn.execute(
                _Q["add_sender_domain"],
                (
                    domain.tenant_id,
                    domain.domain,
                    domain.created_at,
                    domain.status,
                    domain.verified_at,
                    domain.checked_at,
                    domain.check,
                ),
            ).rowcount
            if not added:
                return False
            for k in domain.keys:
                self._add_key(conn, domain.tenant_id, domain.domain, k)
            return True

        return await self._write(op)

    @staticmethod
    def _add_key(conn: sqlite3.Connection, tenant_id: str, domain: str, k: DkimKeyRecord) -> int:
        return conn.execute(
            _Q["add_dkim_key"],
            (
                tenant_id,
                domain,
                k.selector,
                k.algorithm,
                k.public_key,
                k.private_sealed,
                k.created_at,
                k.state,
            ),
        ).rowcount

    async def _domains(self, tenant_id: str | None, domain: str | None) -> list[SenderDomain]:
        params = {"tenant_id": tenant_id, "domain": domain}

        def op(conn: sqlite3.Connection) -> list[SenderDomain]:
            return assemble_domains(
                conn.execute(_Q["get_sender_domains"], params).fetchall(),
                conn.execute(_Q["get_dkim_keys"], params).fetchall(),
            )

        return await self._read(op)

    async def get_sender_domain(self, tenant_id: str, domain: str) -> SenderDomain | None:
        found = await self._domains(tenant_id, domain)
        return found[0] if found else None

    async def list_sender_domains(self, tenant_id: str | None = None) -> list[SenderDomain]:
        return await self._domains(tenant_id, None)

    async def update_sender_domain(
        self,
        tenant_id: str,
        domain: str,
        *,
        status: str,
        checked_at: float,
        verified_at: float | None,
        check: str,
        key_states: Mapping[str, str] | None = None,
    ) -> bool:
        def op(conn: sqlite3.Connection) -> bool:
            updated = conn.execute(
                _Q["update_sender_domain"],
                {
                    "tenant_id": tenant_id,
                    "domain": domain,
                    "status": status,
                    "checked_at": checked_at,
                    "verified_at": verified_at,
                    "check": check,
                },
            ).rowcount
            for selector, state in (key_states or {}).items():
                conn.execute(
                    _Q["set_dkim_key_state"],
                    {
                        "tenant_id": tenant_id,
                        "domain": domain,
                        "selector": selector,
                        "state": state,
                    },
                )
            return updated > 0

        return await self._write(op)

    async def add_dkim_key(self, tenant_id: str, domain: str, key: DkimKeyRecord) -> bool:
        return await self._write(lambda conn: self._add_key(conn, tenant_id, domain, key) > 0)

    async def remove_sender_domain(self, tenant_id: str, domain: str) -> bool:
        params = {"tenant_id": tenant_id, "domain": domain}

        def op(conn: sqlite3.Connection) -> bool:
            conn.execute(_Q["remove_dkim_keys"], params)
            return conn.execute(_Q["remove_sender_domain"], params).rowcount > 0

        return await self._write(op)

    async def listen_due(self, callback: Callable[[frozenset[QueueKey]], None]) -> None:
        """One node per SQLite file: ingest wakes the engine in-process, nothing to hear."""

    async def paused_queues(self) -> set[tuple[str, str]]:
        return await self._read(lambda conn: {(t, d) for t, d in conn.execute(_Q["paused_all"])})

    async def set_paused(
        self, tenant_id: str, domain: str, paused: bool, *, now: float, reason: str = ""
    ) -> None:
        params = {"tenant_id": tenant_id, "domain": domain, "now": now, "reason": reason}
        sql = _Q["pause"] if paused else _Q["resume"]

        def op(conn: sqlite3.Connection) -> None:
            conn.execute(sql, params)

        await self._write(op)
