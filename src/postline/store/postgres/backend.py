"""PostgreSQL store: the fleet backend, shared by every node of a cluster.

asyncpg with a connection pool. Each operation is one statement (batches go in as arrays and
are expanded with ``unnest``), so it costs one round trip and, for writes, one commit; with
``synchronous_commit = on`` the commit is durable before the call returns. Enqueues get a
group commit as on SQLite: calls that arrive while earlier ones are being written go
together in the next statement (a few writers at a time), each call's idempotency claim and
rows tagged with its group, so one call's claim never decides another's. A batch that breaks
an integrity rule is retried call by call, so only the offending call fails.

The recipient queue is hash-partitioned by recipient domain (see ``schema.sql``, which also
says how the tables distribute on Citus). Leases take due rows of many queues (tenant,
domain) in one statement with ``FOR UPDATE SKIP LOCKED``: nodes leasing the same queue at
once get disjoint rows and never wait for each other. Statement triggers on ``recipients``
append count deltas per queue and per state; a background task folds them into the totals
every ``_FOLD_INTERVAL`` seconds, and reads add the deltas not yet folded. So
``due_queues``, queue views and metrics read counters (one index probe per queue shown),
however deep the queue is.

``enqueue`` announces domains with work on the channel ``postline_due`` (LISTEN/NOTIFY),
after its commit and coalesced with other enqueues of this store (a NOTIFY inside the
transaction would serialise every committing enqueue on PostgreSQL's notify lock).
:meth:`PostgresStore.listen_due` hands those announcements to a callback.

This module is the only place that imports ``asyncpg``; driver errors become
:mod:`postline.errors` store errors in :func:`_translate`, applied by
:meth:`PostgresStore._call` around every operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Mapping,
    Sequence,
)
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

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

__all__ = [
    "NOTIFY_CHANNEL",
    "DueCallback",
    "PostgresStore",
    "migrations",
    "schema_version",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
if TYPE_CHECKING:
    Conn: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    )
DueCallback = Callable[[frozenset[QueueKey]], None]
"""Called with queues that may have due work; an empty set means "rescan every queue"."""

NOTIFY_CHANNEL = "postline_due"
_PACKAGE = "postline.store.postgres"
_Q = load_queries(_PACKAGE)
_NOTIFY_LIMIT = 7000  # bytes per payload; PostgreSQL refuses 8000 and more
_MAX_BATCH = 256  # enqueue calls written by one statement
_MAX_BATCH_ROWS = 20_000  # messages + recipients in one statement (a lone call may exceed it)
_RETRIES = 3  # attempts of an operation that lost a deadlock or serialisation race
_HORIZON_STEP = 10_000  # event ids examined per horizon walk
_HORIZON_BACKFILL = 10_000  # ids below the newest that a fresh store re-examines
_FOLD_INTERVAL = 2.0  # seconds between folds of count deltas into the totals
_LISTEN_PING = 10.0  # seconds between liveness checks of the LISTEN connection


def _translate(exc: BaseException) -> BaseException:
    """Map a driver error to the store error a caller can act on (others pass through)."""
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityViolation(f"PostgreSQL: {exc}")
    if isinstance(
        exc,
        asyncpg.PostgresConnectionError
        | asyncpg.ConnectionDoesNotExistError
        | asyncpg.InsufficientResourcesError
        | asyncpg.OperatorInterventionError
        | asyncpg.TransactionRollbackError
        | asyncpg.CannotConnectNowError,
    ):
        return StoreUnavailable(f"PostgreSQL: {exc}")
    if isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc):
        return StoreUnavailable(f"PostgreSQL: {exc}")
    if isinstance(exc, OSError | TimeoutError):
        return StoreUnavailable(f"PostgreSQL unreachable: {exc}")
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return StoreError(f"PostgreSQL: {exc}")
    return exc


def _retryable(exc: BaseException) -> bool:
    """A race lost to another transaction; nothing of the operation was applied."""
    return isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError)


def migrations() -> list[tuple[int, str]]:
    """(version, sql) of every file ``migrations/NNNN_<what>.sql``, in order."""
    out = []
    for entry in resources.files(_PACKAGE).joinpath("migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            out.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(out)


def _schema_text() -> str:
    return resources.files(_PACKAGE).joinpath("schema.sql").read_text(encoding="utf-8")


def schema_version() -> int:
    """The version ``schema.sql`` installs (the newest migration's number)."""
    marker = "INSERT INTO postline_schema (version) VALUES ("
    for line in _schema_text().splitlines():
        if line.startswith(marker):
            return int(line.removeprefix(marker).split(")")[0])
    raise StoreError("schema.sql does not set a version")


async def _apply_schema(conn: Conn) -> None:
    """Install the schema, or migrate an older one, under a cluster-wide lock."""
    async with conn.transaction():
        await conn.execute(_Q["schema_lock"])
        if not await conn.fetchval(_Q["schema_installed"]):
            await conn.execute(_schema_text())
            return
        version = int(await conn.fetchval(_Q["schema_version"]))
        newest = schema_version()
        if version > newest:
            raise StoreError(
                f"the database schema is version {version}, newer than this postline's "
                f"{newest}; upgrade postline"
            )
        for number, sql in migrations():
            if number > version:
                log.info("applying migration %04d", number, extra={"action": "store.migrate"})
                await conn.execute(sql)
                await conn.execute(_Q["set_schema_version"], number)


def _notify_payloads(
    origin: str, now: Collection[QueueKey], later: Mapping[QueueKey, float], rescan: bool = False
) -> list[str]:
    """JSON payloads of at most ``_NOTIFY_LIMIT`` bytes:
    ``{"o", "now": [[tenant, domain], ...], "at": [[tenant, domain, time], ...]}``, and
    ``"rescan": true`` asking every node to scan its queues."""
    payloads: list[str] = []
    cur_now: list[list[str]] = []
    cur_at: list[list[Any]] = []
    size = 0
    base = len(json.dumps({"o": origin, "now": [], "at": []}))

    def flush() -> None:
        nonlocal cur_now, cur_at, size
        if cur_now or cur_at:
            payloads.append(json.dumps({"o": origin, "now": cur_now, "at": cur_at}))
        cur_now, cur_at, size = [], [], 0

    if rescan:
        payloads.append(json.dumps({"o": origin, "rescan": True}))
    for tenant, domain in sorted(now):
        n = len(tenant) + len(domain) + 10
        if base + size + n > _NOTIFY_LIMIT:
            flush()
        cur_now.append([tenant, domain])
        size += n
    for (tenant, domain), at in sorted(later.items()):
        n = len(tenant) + len(domain) + 36
        if base + size + n > _NOTIFY_LIMIT:
            flush()
        cur_at.append([tenant, domain, at])
        size += n
    flush()
    return payloads


class _Listener:
    """A dedicated connection LISTENing on the due channel; reconnects when it drops."""

    def __init__(self, store: PostgresStore, callback: DueCallback, include_own: bool) -> None:
        self.store = store
        self.callback = callback
        self.include_own = include_own
        self.timers: dict[QueueKey, asyncio.TimerHandle] = {}
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.lost = asyncio.Event()
        self.error: BaseException | None = None

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        try:
            data = json.loads(str(payload))
            if not self.include_own and data.get("o") == self.store.origin:
                return
            entries = list(data.get("now", ())) + [e[:2] for e in data.get("at", ())]
            if data.get("rescan") or any(not isinstance(e, list) for e in entries):
                # A rescan, or a node of an older version naming domains only.
                self._deliver(frozenset())
                return
            now_queues = frozenset((str(t), str(d)) for t, d in data.get("now", ()))
            later = {(str(t), str(d)): float(at) for t, d, at in data.get("at", ())}
        except (ValueError, TypeError, AttributeError):
            log.warning("bad due notification %r", payload, extra={"action": "store.notify_bad"})
            return
        if now_queues:
            self._deliver(now_queues)
        if later:
            self._schedule(later)

    def _deliver(self, queues: frozenset[QueueKey]) -> None:
        try:
            self.callback(queues)
        except Exception:
            log.exception("due callback failed", extra={"action": "store.listen_callback"})

    def _schedule(self, later: Mapping[QueueKey, float]) -> None:
        loop = asyncio.get_running_loop()
        wall = time.time()
        mono = loop.time()
        due_now = set()
        for key, at in later.items():
            if at <= wall:
                due_now.add(key)
                continue
            when = mono + (at - wall)
            timer = self.timers.get(key)
            if timer is not None and not timer.cancelled() and timer.when() <= when:
                continue
            if timer is not None:
                timer.cancel()
            self.timers[key] = loop.call_at(when, self._fire, key)
        if due_now:
            self._deliver(frozenset(due_now))

    def _fire(self, key: QueueKey) -> None:
        self.timers.pop(key, None)
        self._deliver(frozenset({key}))

    def _on_terminate(self, _conn: object) -> None:
        self.lost.set()

    async def run(self) -> None:
        delay = 0.1
        first = True
        while True:
            conn: asyncpg.Connection[asyncpg.Record] | None = None
            try:
                conn = await asyncpg.connect(
                    self.store.dsn,
                    timeout=10,
                    server_settings={"application_name": self.store.app_name("listen")},
                )
                self.lost.clear()
                conn.add_termination_listener(self._on_terminate)
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                if not first:
                    # Announcements may have been missed while the connection was down.
                    self._deliver(frozenset())
                first = False
                delay = 0.1
                self.ready.set()
                while not self.lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.lost.wait(), _LISTEN_PING)
                    if not self.lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=_LISTEN_PING)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if first:
                    self.error = _translate(exc)
                    self.ready.set()
                    return
                log.warning(
                    "LISTEN connection lost: %s; reconnecting",
                    exc,
                    extra={"action": "store.listen_lost"},
                )
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


class _Retry:
    """The claim lost to a key that was purged before it could be read."""


class _Enqueue:
    """One enqueue call, flattened into the columns of the ``enqueue`` statement."""

    __slots__ = (
        "claim",
        "claim_key",
        "due_at",
        "due_now",
        "future",
        "m_cols",
        "r_cols",
        "rows",
    )

    def __init__(
        self,
        messages: Sequence[NewMessage],
        idempotency: IdempotencyClaim | None,
        tenant_id: str | None,
        node_id: str,
        leased: Mapping[str, Collection[int]] | None,
        lease_until: float,
    ) -> None:
        self.future: asyncio.Future[IdempotencyRecord | None]
        self.claim = idempotency
        self.claim_key = (str(tenant_id), idempotency.key) if idempotency is not None else None
        self.m_cols: list[list[Any]] = [[] for _ in range(12)]
        self.r_cols: list[list[Any]] = [[] for _ in range(14)]
        self.due_now: set[QueueKey] = set()
        self.due_at: dict[QueueKey, float] = {}
        wall = time.time()
        for m in messages:
            for col, value in zip(
                self.m_cols,
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
                ),
                strict=True,
            ):
                col.append(value)
            data: dict[str, Any] = {"source": m.source}
            if m.next_attempt_at > m.created_at + 1:
                data["send_at"] = m.next_attempt_at
            encoded = json.dumps(data)
            direct = leased.get(m.id, ()) if leased else ()
            for r in m.recipients:
                owned = r.idx in direct
                suppressed = r.suppressed is not None
                for col, value in zip(
                    self.r_cols,
                    (
                        m.id,
                        r.idx,
                        m.tenant_id,
                        r.address,
                        r.domain,
                        m.created_at,
                        lease_until if owned else m.next_attempt_at,
                        m.expires_at,
                        node_id if owned else None,
                        lease_until if owned else None,
                        json.dumps({**data, "reason": r.suppressed}) if suppressed else encoded,
                        node_id,
                        RecipientState.SUPPRESSED.value if suppressed else "queued",
                        EventType.SUPPRESSED.value if suppressed else EventType.ACCEPTED.value,
                    ),
                    strict=True,
                ):
                    col.append(value)
                if owned or suppressed:
                    continue
                key = (m.tenant_id, r.domain)
                if m.next_attempt_at <= wall:
                    self.due_now.add(key)
                elif m.next_attempt_at < self.due_at.get(key, float("inf")):
                    self.due_at[key] = m.next_attempt_at
        self.rows = len(self.m_cols[0]) + len(self.r_cols[0])


async def _insert(
    conn: Conn, batch: Sequence[_Enqueue]
) -> dict[int, IdempotencyRecord | _Retry | None]:
    """Write a batch of enqueues in one statement; per request: None (stored), the earlier
    record of its idempotency key, or ``_Retry``."""
    claims: list[list[Any]] = [[] for _ in range(7)]
    free: list[int] = []
    m_cols: list[list[Any]] = [[] for _ in range(13)]
    r_cols: list[list[Any]] = [[] for _ in range(11)]
    extra: list[list[Any]] = [[], [], [], []]
    for g, request in enumerate(batch):
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
    stored = set(await conn.fetchval(_Q["enqueue"], *claims, free, *m_cols, *r_cols, *extra))
    out: dict[int, IdempotencyRecord | _Retry | None] = {
        g: None for g in range(len(batch)) if g in stored
    }
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
            out[g] = records.get(key, _Retry()) if key else _Retry()
    return out


class PostgresStore:
    """The fleet store (see module docstring)."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        node_id: str = "",
        acquire_timeout: float = 30.0,
        event_gap_grace: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self.node_id = node_id
        self.origin = new_id()  # tells this store's own announcements from other nodes'
        self._min_size = min_size
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._event_gap_grace = event_gap_grace
        self._horizon = -1  # event ids up to here are final; -1: not looked yet
        self._holes: dict[int, float] = {}  # first missing id -> when it was first seen
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._pending_now: set[QueueKey] = set()
        self._pending_at: dict[QueueKey, float] = {}
        self._pending_rescan = False
        self._flusher: asyncio.Task[None] | None = None
        self._listeners: list[_Listener] = []
        self._pending: list[_Enqueue] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._max_writers = max(1, min(4, max_size - 1))
        self._batches = 0
        self._ops = 0
        self._folder: asyncio.Task[None] | None = None

    # -- plumbing --------------------------------------------------------------------
    async def open(self) -> None:
        settings = {
            "synchronous_commit": "on",
            "application_name": self.app_name(),
            "jit": "off",
        }
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=settings,
            )
        except Exception as exc:
            mapped = _translate(exc)
            if mapped is exc:
                raise
            raise mapped from exc
        self._pool = pool
        try:
            await self._call(_apply_schema)
        except BaseException:
            await self.close()
            raise
        self._folder = asyncio.get_running_loop().create_task(
            self._fold_loop(), name="postline-pg-fold"
        )

    async def close(self) -> None:
        while self._writers:
            await asyncio.gather(*self._writers, return_exceptions=True)
        for listener in self._listeners:
            await listener.stop()
        self._listeners.clear()
        if self._folder is not None:
            self._folder.cancel()
            with contextlib.suppress(BaseException):
                await self._folder
            self._folder = None
        if self._flusher is not None and not self._flusher.done():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._flusher), 5)
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 10)
            except TimeoutError:
                pool.terminate()

    def app_name(self, role: str = "") -> str:
        """What ``pg_stat_activity`` shows for this store's connections."""
        return " ".join(p for p in ("postline", self.node_id, role) if p)[:63]

    @property
    def stats(self) -> dict[str, int]:
        """Enqueue statements written (``batches``) and the enqueue calls they carried."""
        return {"batches": self._batches, "ops": self._ops}

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[Conn]:
        if self._pool is None:
            raise StoreUnavailable("the store is closed")
        async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
            yield conn

    async def _call(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` on a pooled connection: the one edge where driver errors are mapped."""
        attempt = 0
        while True:
            attempt += 1
            try:
                async with self._acquire() as conn:
                    return await fn(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if _retryable(exc) and attempt < _RETRIES:
                    await asyncio.sleep(0.005 * attempt)
                    continue
                mapped = _translate(exc)
                if mapped is exc:
                    raise
                raise mapped from exc

    # -- tenants and keys ------------------------------------------------------------
    async def create_tenant(self, name: str) -> Tenant:
        tenant = Tenant(id=new_id(), name=name, created_at=time.time())

        async def op(conn: Conn) -> None:
            await conn.execute(_Q["create_tenant"], tenant.id, name, tenant.created_at)

        try:
            await self._call(op)
        except IntegrityViolation as exc:
            raise IntegrityViolation(f"a tenant named {name!r} already exists") from exc
        return tenant

    async def get_tenant(self, *, name: str | None = None, id: str | None = None) -> Tenant | None:
        async def op(conn: Conn) -> Tenant | None:
            if name is not None:
                row = await conn.fetchrow(_Q["tenant_by_name"], name)
            else:
                row = await conn.fetchrow(_Q["tenant_by_id"], id)
            return Tenant(*row) if row else None

        return await self._call(op)

    async def list_tenants(self) -> list[Tenant]:
        async def op(conn: Conn) -> list[Tenant]:
            return [Tenant(*row) for row in await conn.fetch(_Q["list_tenants"])]

        return await self._call(op)

    async def add_api_key(self, tenant_id: str, key_hash: str, prefix: str) -> ApiKey:
        key = ApiKey(id=new_id(), tenant_id=tenant_id, prefix=prefix, created_at=time.time())

        async def op(conn: Conn) -> None:
            await conn.execute(
                _Q["add_api_key"], key.id, tenant_id, key_hash, prefix, key.created_at
            )

        await self._call(op)
        return key

    async def tenant_for_key(self, key_hash: str) -> Tenant | None:
        async def op(conn: Conn) -> Tenant | None:
            row = await conn.fetchrow(_Q["tenant_for_key"], key_hash)
            return Tenant(*row) if row else None

        return await self._call(op)

    async def revoke_api_key(self, tenant_id: str, prefix: str) -> bool:
        async def op(conn: Conn) -> bool:
            status = await conn.execute(_Q["revoke_api_key"], tenant_id, prefix, time.time())
            return _rowcount(status) > 0

        return await self._call(op)

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
        if self._pool is None:
            raise StoreUnavailable("the store is closed")
        request = _Enqueue(messages, idempotency, tenant_id, node_id, leased, lease_until)
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

    def _settle(
        self, batch: list[_Enqueue], outcome: dict[int, IdempotencyRecord | _Retry | None]
    ) -> None:
        for i, request in enumerate(batch):
            result = outcome[i]
            if isinstance(result, _Retry):
                self._pending.append(request)  # the key was purged meanwhile: claim again
            elif not request.future.done():
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

    # -- notifications ---------------------------------------------------------------
    def _announce(
        self, now: Collection[QueueKey], later: Mapping[QueueKey, float], rescan: bool = False
    ) -> None:
        """Queue queues for the next NOTIFY; one flusher task sends what piled up."""
        if not now and not later and not rescan:
            return
        self._pending_now.update(now)
        self._pending_rescan = self._pending_rescan or rescan
        for key, at in later.items():
            if at < self._pending_at.get(key, float("inf")):
                self._pending_at[key] = at
        if self._flusher is None:
            self._flusher = asyncio.get_running_loop().create_task(
                self._flush_notifications(), name="postline-pg-notify"
            )

    async def _flush_notifications(self) -> None:
        try:
            while self._pending_now or self._pending_at or self._pending_rescan:
                now, self._pending_now = self._pending_now, set()
                later, self._pending_at = self._pending_at, {}
                rescan, self._pending_rescan = self._pending_rescan, False
                payloads = _notify_payloads(self.origin, now, later, rescan)

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

    # -- sender domains ---------------------------------------------------------------
    async def add_sender_domain(self, domain: SenderDomain) -> bool:
        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                status = await conn.execute(
                    _Q["add_sender_domain"],
                    domain.tenant_id,
                    domain.domain,
                    domain.created_at,
                    domain.status,
                    domain.verified_at,
                    domain.checked_at,
                    domain.check,
                )
                if status.endswith(" 0"):
                    return False
                for k in domain.keys:
                    await self._add_key(conn, domain.tenant_id, domain.domain, k)
                return True

        return await self._call(op)

    @staticmethod
    async def _add_key(conn: Conn, tenant_id: str, domain: str, k: DkimKeyRecord) -> bool:
        status = await conn.execute(
            _Q["add_dkim_key"],
            tenant_id,
            domain,
            k.selector,
            k.algorithm,
            k.public_key,
            k.private_sealed,
            k.created_at,
            k.state,
        )
        return not status.endswith(" 0")

    async def _domains(self, tenant_id: str | None, domain: str | None) -> list[SenderDomain]:
        async def op(conn: Conn) -> list[SenderDomain]:
            rows = await conn.fetch(_Q["get_sender_domains"], tenant_id, domain)
            keys = await conn.fetch(_Q["get_dkim_keys"], tenant_id, domain)
            return assemble_domains([tuple(r) for r in rows], [tuple(k) for k in keys])

        return await self._call(op)

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
        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                result = await conn.execute(
                    _Q["update_sender_domain"],
                    tenant_id,
                    domain,
                    status,
                    checked_at,
                    verified_at,
                    check,
                )
                for selector, state in (key_states or {}).items():
                    await conn.execute(_Q["set_dkim_key_state"], tenant_id, domain, selector, state)
                return not result.endswith(" 0")

        return await self._call(op)

    async def add_dkim_key(self, tenant_id: str, domain: str, key: DkimKeyRecord) -> bool:
        async def op(conn: Conn) -> bool:
            return await self._add_key(conn, tenant_id, domain, key)

        return await self._call(op)

    async def remove_sender_domain(self, tenant_id: str, domain: str) -> bool:
        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                await conn.execute(_Q["remove_dkim_keys"], tenant_id, domain)
                status = await conn.execute(_Q["remove_sender_domain"], tenant_id, domain)
                return not status.endswith(" 0")

        return await self._call(op)

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

    # -- queue -----------------------------------------------------------------------
    async def _fold_loop(self) -> None:
        """Fold count deltas into the totals now and then (see module docstring)."""
        while True:
            await asyncio.sleep(_FOLD_INTERVAL)
            try:
                await self.fold_counts()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("count fold skipped: %s", exc, extra={"action": "store.fold"})

    async def fold_counts(self) -> int:
        """Move pending count deltas into the totals; returns how many delta rows."""

        async def op(conn: Conn) -> int:
            return int(await conn.fetchval(_Q["fold_counts"]))

        return await self._call(op)

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
        for r in records:
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
            for col, value in zip(
                e_cols,
                (
                    r.at,
                    r.tenant_id,
                    r.event.value,
                    r.message_id,
                    r.idx,
                    r.address,
                    json.dumps(data),
                ),
                strict=True,
            ):
                col.append(value)

        s_cols: list[list[Any]] = [[], [], [], []]
        s_extra: list[list[Any]] = [[], []]
        c_cols: list[list[Any]] = [[], []]
        for r in records:
            if r.suppress is not None:
                for col, value in zip(
                    s_cols, (r.tenant_id, r.address.lower(), r.suppress, r.text or ""), strict=True
                ):
                    col.append(value)
                s_extra[0].append(r.suppress_until)
                s_extra[1].append(r.message_id)
            if r.state is RecipientState.DELIVERED:
                c_cols[0].append(r.tenant_id)
                c_cols[1].append(r.address.lower())
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

    # -- reads -----------------------------------------------------------------------
    async def get_message(self, tenant_id: str | None, message_id: str) -> MessageView | None:
        async def op(conn: Conn) -> MessageView | None:
            row = await conn.fetchrow(_Q["get_message"], message_id, tenant_id)
            if row is None:
                return None
            rows = await conn.fetch(_Q["get_recipients"], message_id)
            now = time.time()
            rcpts = []
            for r in rows:
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

        return await self._call(op)

    async def events(self, query: EventQuery) -> list[Event]:
        """Events after the cursor, never past an id that may still be committed later.

        Writers on several connections commit event ids out of order, so a reader that
        saw id 101 must not have skipped id 100 still in flight: events are served only
        up to the horizon below which every id is visible (see :meth:`_advance_horizon`).
        """
        args: list[Any] = [
            query.tenant_id,
            query.after,
            list(query.types) if query.types else None,
            query.recipient,
            query.since,
            query.until,
            query.limit,
        ]
        if query.message_id:
            sql = _Q["events_message"]
            args.append(query.message_id)
        else:
            sql = _Q["events"]

        async def op(conn: Conn) -> list[Event]:
            horizon = await self._advance_horizon(conn)
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
                for r in await conn.fetch(sql, *args[:7], horizon, *args[7:])
            ]

        return await self._call(op)

    async def _advance_horizon(self, conn: Conn) -> int:
        """The largest event id up to which no id can still appear.

        Walks the ids above the last horizon in order. A hole is an id taken by a
        transaction still running (it will fill) or by one rolled back (it never will): the
        walk stops at a hole until it has been open for ``event_gap_grace`` seconds, then
        steps over it.
        """
        if self._horizon < 0:
            top = await conn.fetchval(_Q["events_max_id"])
            self._horizon = max(0, int(top or 0) - _HORIZON_BACKFILL)
        now = time.monotonic()
        horizon = self._horizon
        for (event_id,) in await conn.fetch(_Q["events_above"], horizon, _HORIZON_STEP):
            if event_id != horizon + 1:
                seen = self._holes.setdefault(horizon + 1, now)
                if now - seen < self._event_gap_grace:
                    break
            horizon = event_id
        self._horizon = horizon = max(self._horizon, horizon)
        for hole in [h for h in self._holes if h <= horizon]:
            del self._holes[hole]
        return horizon

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
            return QueueDepths(total, [(d, int(n)) for d, n in rows if d is not None])

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

    # -- suppression ------------------------------------------------------------------
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

    async def append_events(self, events: Sequence[NewEvent], *, node_id: str = "") -> None:
        if not events:
            return
        cols: list[list[Any]] = [[] for _ in range(7)]
        for e in events:
            for col, value in zip(
                cols,
                (
                    e.at,
                    e.tenant_id,
                    e.type.value,
                    e.message_id,
                    e.recipient_idx,
                    e.recipient,
                    json.dumps(e.data),
                ),
                strict=True,
            ):
                col.append(value)

        async def op(conn: Conn) -> None:
            await conn.execute(_Q["append_events"], *cols, node_id)

        await self._call(op)

    # -- inbound reports --------------------------------------------------------------
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

    # -- reputation -------------------------------------------------------------------
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

    async def tenant_statuses(self, tenant_id: str | None = None) -> list[TenantStatus]:
        async def op(conn: Conn) -> list[TenantStatus]:
            return [
                TenantStatus(*row) for row in await conn.fetch(_Q["tenant_statuses"], tenant_id)
            ]

        return await self._call(op)

    async def set_tenant_status(
        self,
        status: TenantStatus,
        *,
        expected: Collection[str] | None = None,
        event: NewEvent | None = None,
        node_id: str = "",
    ) -> bool:
        wanted = None if expected is None else set(expected)
        t = status

        async def op(conn: Conn) -> bool:
            async with conn.transaction():
                if wanted is not None:
                    # Lock the tenant's row (made first when missing): of several nodes
                    # judging the same tenant at once, one makes the change.
                    await conn.execute(_Q["tenant_status_row"], t.tenant_id)
                    current = await conn.fetchval(_Q["tenant_status_lock"], t.tenant_id)
                    if current not in wanted:
                        return False
                await conn.execute(
                    _Q["set_tenant_status"],
                    t.tenant_id,
                    t.status,
                    t.reason,
                    t.changed_at,
                    t.changed_by,
                    t.judged_since,
                )
                if t.status == "paused":
                    await conn.execute(_Q["hold_tenant"], t.tenant_id, t.changed_at, t.reason)
                else:
                    await conn.execute(_Q["release_tenant"], t.tenant_id)
                if event is not None:
                    await conn.execute(
                        _Q["append_events"],
                        [event.at],
                        [event.tenant_id],
                        [event.type.value],
                        [event.message_id],
                        [event.recipient_idx],
                        [event.recipient],
                        [json.dumps(event.data)],
                        node_id,
                    )
            return True

        return await self._call(op)

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
            # Mail held back by the pause may be due now, on any node.
            if tenant_id == "*" or domain == "*":
                self._announce((), {}, rescan=True)
            else:
                self._announce({(tenant_id, domain)}, {})


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3`` or ``DELETE 0``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
