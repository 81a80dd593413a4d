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
:meth:`~postline.store.postgres.queue.PostgresQueue.listen_due` hands those
announcements to a callback.

The store URL may name several hosts (libpq's syntax, see
:func:`postline.config.postgres_url`): every connection — the pool's, the LISTEN
connections', each reconnect after one dropped — tries them in order, each for at most
``connect_timeout`` seconds, and takes the first that matches ``target_session_attrs``;
with ``read-write`` that is the current primary, so a node follows a failover by itself.
A pooled connection that meets a read-only server (a primary fenced or demoted under it)
is closed rather than handed out again.

This module is the only place that imports ``asyncpg``; driver errors become
:mod:`postline.errors` store errors in :func:`_translate`, applied by
:meth:`PostgresCore._call` around every operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import asyncpg

from postline.config import postgres_url
from postline.errors import IntegrityViolation, StoreError, StoreUnavailable
from postline.model.ids import new_id
from postline.store.announce import DueCallback, DueRelay, PendingDue
from postline.store.health import StoreHealth
from postline.store.postgres.pending import _Enqueue
from postline.store.queries import load_queries

__all__ = ["NOTIFY_CHANNEL", "DueCallback", "PostgresCore", "migrations", "schema_version"]

log = logging.getLogger(__name__)

T = TypeVar("T")
if TYPE_CHECKING:
    Conn: TypeAlias = (
        asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]
    )

NOTIFY_CHANNEL = "postline_due"
_PACKAGE = "postline.store.postgres"
_Q = load_queries(_PACKAGE)
_RETRIES = 3  # attempts of an operation that lost a deadlock or serialisation race
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
        | asyncpg.CannotConnectNowError
        | asyncpg.ReadOnlySQLTransactionError,
    ):
        return StoreUnavailable(f"PostgreSQL: {exc}")
    if isinstance(exc, asyncpg.TargetServerAttributeNotMatched):
        return StoreUnavailable(f"PostgreSQL: no host is usable ({exc}); failover under way?")
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


class _Listener:
    """A dedicated connection LISTENing on the due channel; reconnects when it drops."""

    def __init__(self, store: PostgresCore, callback: DueCallback, include_own: bool) -> None:
        self.store = store
        self.relay = DueRelay(store.origin, callback, include_own=include_own)
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()
        self.lost = asyncio.Event()
        self.error: BaseException | None = None

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self.relay.received(str(payload))

    def _on_terminate(self, _conn: object) -> None:
        self.lost.set()

    async def run(self) -> None:
        """Listen; a lost connection marks the store down at once (it is the first to
        know when the server goes away, before any request does), is logged once, and
        is made again until it works."""
        delay = 0.1
        first = True
        lost = False
        while True:
            conn: asyncpg.Connection[asyncpg.Record] | None = None
            try:
                conn = await self.store.connect(
                    server_settings={"application_name": self.store.app_name("listen")},
                )
                self.lost.clear()
                conn.add_termination_listener(self._on_terminate)
                await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
                if not first:
                    # Announcements may have been missed while the connection was down.
                    self.relay.deliver(frozenset())
                if lost:
                    log.warning("LISTEN connection back", extra={"action": "store.listen_back"})
                first = lost = False
                delay = 0.1
                self.ready.set()
                while not self.lost.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.lost.wait(), _LISTEN_PING)
                    if not self.lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=_LISTEN_PING)
                error: BaseException = StoreUnavailable("PostgreSQL: the connection was lost")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if first:
                    self.error = _translate(exc)
                    self.ready.set()
                    return
                error = exc
            finally:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.close(), 2)
            mapped = _translate(error)
            if isinstance(mapped, StoreUnavailable):
                self.store.health.failed("listen", mapped)
            if not lost:
                log.warning(
                    "LISTEN connection lost: %s; reconnecting",
                    error,
                    extra={"action": "store.listen_lost"},
                )
                lost = True
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def stop(self) -> None:
        self.relay.close()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


class PostgresCore:
    """The connection plumbing every role of the PostgreSQL store runs on: the pool
    and :meth:`_call`, the LISTEN connections, the fold of count deltas."""

    def __init__(
        self,
        dsn: str,
        *,
        min_size: int = 2,
        max_size: int = 10,
        node_id: str = "",
        acquire_timeout: float = 30.0,
        event_gap_grace: float = 5.0,
        event_partition: float = 86400.0,
    ) -> None:
        self.dsn = dsn
        self.url = postgres_url(dsn)
        self.event_partition = event_partition
        """Time one partition of the event log covers (see postgres/retention.py)."""
        self.node_id = node_id
        self.origin = new_id()  # tells this store's own announcements from other nodes'
        self._min_size = min_size
        self._max_size = max_size
        self._acquire_timeout = acquire_timeout
        self._event_gap_grace = event_gap_grace
        self._horizon = -1  # event ids up to here are final; -1: not looked yet
        self._holes: dict[int, float] = {}  # first missing id -> when it was first seen
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._due = PendingDue()
        self._flusher: asyncio.Task[None] | None = None
        self._listeners: list[_Listener] = []
        self._pending: list[_Enqueue] = []
        self._writers: set[asyncio.Task[None]] = set()
        self._max_writers = max(1, min(4, max_size - 1))
        self.health = StoreHealth(self.ping)
        self._batches = 0
        self._ops = 0
        self._folder: asyncio.Task[None] | None = None

    async def open(self) -> None:
        settings = {
            # Never weaker than "on", whatever the server or role says: a 2xx is sent only
            # after the commit (on a synchronous standby too, where one is configured).
            "synchronous_commit": self.url.synchronous_commit,
            "application_name": self.app_name(),
            "jit": "off",
        }
        try:
            pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self._min_size,
                max_size=self._max_size,
                server_settings=settings,
                connect=self._pool_connect,
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

    async def connect(self, **kwargs: Any) -> asyncpg.Connection[asyncpg.Record]:
        """A connection to the first host of the URL that answers within
        ``connect_timeout`` and matches ``target_session_attrs`` (see the module)."""
        last: BaseException | None = None
        reasons: list[str] = []
        url = self.url
        for host, dsn in zip(url.hosts or ("",), url.dsns, strict=False):
            try:
                conn: asyncpg.Connection[asyncpg.Record] = await asyncpg.connect(
                    dsn, timeout=url.connect_timeout, **kwargs
                )
            except (
                OSError,
                TimeoutError,
                asyncpg.TargetServerAttributeNotMatched,
                asyncpg.PostgresConnectionError,
                asyncpg.CannotConnectNowError,
                asyncpg.InsufficientResourcesError,
            ) as exc:
                last = exc
                if isinstance(exc, asyncpg.TargetServerAttributeNotMatched):
                    why = f"not {url.target_session_attrs}"
                elif isinstance(exc, TimeoutError):
                    why = f"no answer within {url.connect_timeout:g}s"
                else:
                    why = str(exc) or type(exc).__name__
                reasons.append(f"{host}: {why}")
                continue
            return conn
        assert last is not None
        if len(url.dsns) > 1:
            raise StoreUnavailable(
                f"PostgreSQL: no host to use ({'; '.join(reasons)}); failing over?"
            ) from last
        raise last

    async def _pool_connect(
        self, dsn: str | None = None, **kwargs: Any
    ) -> asyncpg.Connection[asyncpg.Record]:
        """The pool's way to (re)connect: :meth:`connect` (``dsn`` is the URL, split)."""
        kwargs.pop("loop", None)
        return await self.connect(**kwargs)

    async def ping(self) -> None:
        async def op(conn: Conn) -> None:
            await conn.fetchval("SELECT 1")

        await self._call(op)

    async def close(self) -> None:
        await self.health.close()
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
                    try:
                        return await fn(conn)
                    except asyncpg.ReadOnlySQLTransactionError:
                        # A server that became read-only (fenced, or a standby now):
                        # the pool reconnects, to whichever host is the primary.
                        conn.terminate()
                        raise
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


def _rowcount(status: str) -> int:
    """The row count of a command tag such as ``UPDATE 3`` or ``DELETE 0``."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0
