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

Several processes may open one file (the workers of a node, a CLI command beside a running
node). SQLite lets one of them write at a time; each writer takes an exclusive ``flock`` on
``<store>.lock`` around its transaction, so a writer waiting for another sleeps in the
kernel and wakes the moment the lock is free, instead of SQLite's busy handler polling
every 1-100 ms. The lock covers the transaction only: with ``synchronous = full`` the
write-ahead log is fsync'd right after the commit, outside the lock (the connection runs
with NORMAL, which writes the log without syncing it), and only then are the callers
answered; checkpoints run in a thread of their own (``_Checkpointer``), never inside a
commit. So the fsyncs of two workers overlap, and the lock is held for the writing alone.

This module is the only place that imports ``sqlite3``; driver errors become
:mod:`postline.errors` store errors in :func:`_translate`.
"""

from __future__ import annotations

import _sqlite3
import asyncio
import contextlib
import ctypes
import fcntl
import functools
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from postline.errors import IntegrityViolation, StoreError, StoreUnavailable
from postline.model.ids import new_id
from postline.store.health import StoreHealth
from postline.store.queries import load_queries
from postline.store.sqlite.peers import DuePeers

__all__ = ["SQLiteCore", "schema_version"]

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


# Pages each connection keeps in its own cache, in KiB. In WAL mode SQLite drops a
# connection's cache when another connection has written since its last transaction, so
# on a node that is writing, a cache holds little more than one transaction's pages: the
# sizes bound what one large transaction keeps (the writer's batches walk the queue's
# indexes; readers look up rows and read counters; the checkpointer copies the log to the
# database without the cache). ``postline_sqlite_memory_bytes`` shows what they hold.
WRITER_CACHE_KIB = 65536
READER_CACHE_KIB = 8192
CHECKPOINT_CACHE_KIB = 1024


def memory_used() -> int:
    """Bytes SQLite holds in this process (page caches, statements, schema), from
    ``sqlite3_status64(SQLITE_STATUS_MEMORY_USED)``; 0 when the library does not count."""
    status = _status64()
    if status is None:
        return 0
    current, highest = ctypes.c_int64(), ctypes.c_int64()
    if status(0, ctypes.byref(current), ctypes.byref(highest), 0) != 0:
        return 0
    return int(current.value)


@functools.cache
def _status64() -> Any:
    try:
        function = ctypes.CDLL(_sqlite3.__file__).sqlite3_status64
    except (OSError, AttributeError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int64),
        ctypes.POINTER(ctypes.c_int64),
        ctypes.c_int,
    ]
    function.restype = ctypes.c_int
    return function


def _connect(
    path: Path, synchronous: str, *, readonly: bool = False, cache_kib: int = WRITER_CACHE_KIB
) -> sqlite3.Connection:
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
        # After a checkpoint the log file is cut back to this size (bounded disk use).
        conn.execute("PRAGMA journal_size_limit = 67108864")
    conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    conn.execute("PRAGMA temp_store = MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only = ON")
    return conn


def _apply_schema(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == 0:
        text = resources.files(_PACKAGE).joinpath("schema.sql").read_text(encoding="utf-8")
        conn.executescript(text)
        _incremental_vacuum(conn)
        return
    for number, sql in _migrations():
        if number > version:
            log.info("applying migration %04d", number, extra={"action": "store.migrate"})
            conn.executescript(f"BEGIN;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;")
    _incremental_vacuum(conn)


_VACUUM_AT_OPEN = 256 * 1024 * 1024
"""Largest store converted to incremental auto-vacuum when it is opened (a full rewrite)."""


def _incremental_vacuum(conn: sqlite3.Connection) -> None:
    """Space freed by the cleaner goes back to the file system step by step (compact())
    with incremental auto-vacuum, which SQLite turns on only by rewriting the file (in WAL
    mode even a new one). A new or small store is rewritten now; a large one made before
    retention existed keeps reusing freed pages (its file stops growing rather than
    shrinking) until ``VACUUM`` is run on it once, offline."""
    (mode,) = conn.execute("PRAGMA auto_vacuum").fetchone()
    if mode == 2:
        return
    (pages,) = conn.execute("PRAGMA page_count").fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    if pages * page_size > _VACUUM_AT_OPEN:
        log.warning(
            "the store has no incremental auto-vacuum: deleted data is reused but the file "
            "does not shrink; run sqlite3 FILE 'PRAGMA auto_vacuum=INCREMENTAL; VACUUM;' "
            "while the node is stopped",
            extra={"action": "store.vacuum"},
        )
        return
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")


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
        self._lock_fd = -1
        # With synchronous = "full" the log is fsync'd after the commit, outside the write
        # lock (the connection itself runs with NORMAL): the fsync of one process does not
        # hold up the writes of the others, and nothing is acknowledged before it.
        self._sync_after = synchronous.lower() == "full"
        self._log_path = path.with_name(path.name + "-wal")
        self._log_fd = -1
        self.committed = threading.Event()  # set after each batch (wakes the checkpointer)

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
            self._lock_fd = os.open(
                self._path.with_name(self._path.name + ".lock"), os.O_CREAT | os.O_RDWR, 0o600
            )
            conn = _connect(self._path, "normal" if self._sync_after else self._synchronous)
            with self._locked():
                _apply_schema(conn)
            # Checkpoints run in their own thread (_Checkpointer), never inside a commit:
            # a commit holds the write lock, which every process on the file waits for.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException as exc:  # reported to open()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
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
            os.close(self._lock_fd)
            if self._log_fd >= 0:
                os.close(self._log_fd)

    def _sync_log(self) -> None:
        """fsync the write-ahead log (every commit so far, of any process, is durable)."""
        fd = self._log_fd
        if fd >= 0 and os.fstat(fd).st_nlink == 0:  # the log file was removed and made anew
            os.close(fd)
            fd = -1
        if fd < 0:
            fd = self._log_fd = os.open(self._log_path, os.O_RDONLY | os.O_CLOEXEC)
        os.fsync(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """The write lock shared with every other process on this file."""
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _run(self, conn: sqlite3.Connection, batch: list[_Op]) -> None:
        with self._locked():
            results = self._transaction(conn, batch)
        if results is None:
            # One operation failed: the batch was rolled back, and each runs alone now,
            # so only the failing one fails. (Savepoints per operation would spare the
            # rerun, but cost 20 % on small batches and made large ones 30-70x slower.)
            results = []
            for op in batch:
                with self._locked():
                    alone = self._transaction(conn, [op])
                assert alone is not None
                results.extend(alone)
        if self._sync_after and any(error is None for _, _, error in results):
            try:
                self._sync_log()
            except OSError as exc:
                err = StoreUnavailable(f"SQLite: the write-ahead log could not be synced: {exc}")
                results = [(op, None, err) for op, _, _ in results]
        self.batches += 1
        self.ops += len(batch)
        self.committed.set()
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


_CHECKPOINT_EVERY = 0.25  # seconds at least between two checkpoints


class _Checkpointer(threading.Thread):
    """Copies the write-ahead log into the database file, beside the writer.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold, with
    the write lock held: every writer of the file (each worker of a node) would wait for
    a copy of megabytes and the fsync of the database file. Here a PASSIVE checkpoint runs
    on its own connection at most every ``_CHECKPOINT_EVERY`` seconds while commits come
    in; it waits for no reader or writer, and a checkpoint another process is running
    makes this one skip a turn. Idle, it sleeps until the next commit.
    """

    def __init__(self, path: Path, synchronous: str, committed: threading.Event) -> None:
        super().__init__(name="postline-sqlite-checkpoint", daemon=True)
        self._path = path
        self._synchronous = synchronous
        self._committed = committed
        self._closing = False

    def close(self) -> None:
        self._closing = True
        self._committed.set()

    def run(self) -> None:
        try:
            conn = _connect(self._path, self._synchronous, cache_kib=CHECKPOINT_CACHE_KIB)
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error:
            log.exception("no checkpoint connection", extra={"action": "store.checkpoint"})
            return
        try:
            while True:
                self._committed.wait()
                if self._closing:
                    break
                self._committed.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    log.warning("checkpoint failed: %s", exc, extra={"action": "store.checkpoint"})
                time.sleep(_CHECKPOINT_EVERY)
        finally:
            conn.close()


def _bodies(conn: sqlite3.Connection, ids: Collection[str]) -> dict[str, tuple[Any, ...]]:
    """Message rows (tenant, mail from, body, Message-ID, source, stream) by id."""
    if not ids:
        return {}
    (found,) = conn.execute(_Q["lease_bodies"], {"ids": json.dumps(list(ids))}).fetchone()
    return {
        mid: (tenant, mail_from, bytes.fromhex(body), header, source, stream)
        for mid, tenant, mail_from, body, header, source, stream in json.loads(found)
    }


class SQLiteCore:
    """The connection plumbing every role of the SQLite store runs on: the writer thread
    and its lanes, the reader pool."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "full",
        max_batch: int = 512,
        max_rows: int = 2_000,
        readers: int = 2,
        lease_chunk: int = 0,
    ) -> None:
        self.path = Path(path)
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._max_rows = max_rows
        self._readers = readers
        # Queues one lease transaction takes at most (0: all of a call). Several processes
        # writing to the file wait for each other's transactions; on a deep store a lease
        # of many queues holds the lock for tens of milliseconds (see lease_many).
        self._lease_chunk = lease_chunk
        self._writer: _Writer | None = None
        self._checkpointer: _Checkpointer | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.origin = new_id()  # tells this store's own announcements from other processes'
        self._peers = DuePeers(self.path, self.origin)
        self.health = StoreHealth(self.ping)

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
        self._checkpointer = _Checkpointer(self.path, self._synchronous, writer.committed)
        self._checkpointer.start()
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix="postline-sqlite-read")

    async def ping(self) -> None:
        # An empty write transaction: it needs the write lock, as every write does.
        await self._write(lambda conn: None, lane=URGENT)

    async def close(self) -> None:
        await self.health.close()
        self._peers.close()
        if self._writer is not None:
            self._writer.close()
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        if self._checkpointer is not None:
            self._checkpointer.close()
            await asyncio.to_thread(self._checkpointer.join)
            self._checkpointer = None
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
            conn = _connect(self.path, self._synchronous, readonly=True, cache_kib=READER_CACHE_KIB)
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
