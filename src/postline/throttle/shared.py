"""The node-local shared throttle backend: one SQLite file that every worker process opens.

A node that runs several worker processes must hold its per-destination limits (rate,
connections, quotas, slow-downs) for the whole node, not per process. This backend keeps
the memory backend's semantics with its state in one SQLite file (e.g.
``<data_dir>/throttle.db``) that every process of the node opens; it is not the store and
holds nothing that must outlive the node.

**Atomicity.** Every method is one atomic step across processes. A call that writes runs
one ``BEGIN IMMEDIATE … COMMIT`` transaction while holding an exclusive ``fcntl.flock`` on
``<path>.lock``: writers queue in the kernel and the next one wakes as soon as the lock is
released, instead of polling in SQLite's busy handler (which sleeps 1–100 ms at a time and
would stall the event loop). ``busy_timeout`` stays set as a fallback for anything that
takes SQLite's own locks without the file lock. Calls are synchronous SQLite operations
inside the ``async`` methods (tens of microseconds, no thread hop); a critical section holds
no ``await``, so one process never waits on itself.

Reads need no lock: in WAL mode a statement sees the last committed state. ``state``,
``connections`` and ``quota_used`` only read. ``try_acquire``, ``acquire_connection`` and
``take_quota`` first decide on a read: an unlimited rate, a suspension, a refused GCRA
request, a full connection count or a full quota window writes nothing, and that answer is
exact for the state committed at the moment of the read, so the call takes its place in
the order of writes right there. Only a call that may grant takes the lock and decides
again inside its write transaction. Times are read before the lock is waited for, so a call
that queued behind others decides on a slightly earlier time: more waiting, never less.

A blocked ``flock`` blocks the process's event loop; it is held only for the few statements
of one call, so this is a wait of microseconds unless the holder is stopped (a debugger,
``SIGSTOP``), which stalls every process of the node until it resumes or dies (the kernel
releases the lock of a dead process and SQLite rolls its transaction back).

**Records.** ``bucket`` holds a key's GCRA theoretical arrival time and adaptive state
(strikes as text, the ``report_throttled`` parameters as JSON) and ``idle_at``, the time
from which the row reads the same as a missing one (TAT passed, factor recovered, strikes
out of their window, suspension over; computed with the slower of the backend's and the
key's parameters, plus one recovery step against rounding). ``lease`` holds one row per
connection lease (live while ``expires > now``; its id is a random prefix of the backend
instance and a counter), ``quota`` one counter per fixed window.
Nothing runs in the background: every ``_PRUNE_EVERY`` calls of a process, one write
transaction deletes up to ``_PRUNE_LIMIT`` expired leases, idle buckets and spent counters
(each by an index on its expiry), so the file follows the busy destinations and not every
destination ever seen.

**Time.** ``time.time()`` (wall clock), the one clock all processes of a machine share, as
the Redis backend shares its server's ``TIME``; ``clock`` replaces it and every method
takes ``now`` for tests. Mixing clocks on one file is meaningless.

**Durability: none by design.** ``journal_mode=WAL`` with ``synchronous=OFF``: a machine
crash may lose or corrupt the file, and nothing is lost that matters (leases expire, rates
restart). The node's supervisor calls ``SharedThrottleBackend.reset(path)`` once before it
starts its workers, which wipes the state of a previous run. The database, its WAL and
shared-memory files and the lock file are created with mode 0600.

**Processes.** Open one backend per process, after the fork: an instance refuses to be
used from another process than the one that made it (an inherited SQLite connection or
file lock would be shared with the parent instead of excluding it).

**Failure policy: fail closed**, as with Redis. A busy, locked, full or unreadable file, or
a lock file that cannot be locked, raises ``ThrottleUnavailable``; any other SQLite error
raises ``ThrottleError``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import itertools
import json
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType

from postline.errors import ThrottleError, ThrottleUnavailable
from postline.throttle.adaptive import (
    DEFAULT_PARAMS,
    AdaptiveParams,
    AdaptiveState,
    current_factor,
    on_throttled,
)
from postline.throttle.base import QuotaWindow, ThrottleStatus
from postline.throttle.gcra import effective_rate, gcra, gcra_all
from postline.throttle.rules import Limits

__all__ = ["SharedThrottleBackend"]

#: Calls of one process between two prunes, and rows deleted per table by one prune. One
#: call adds at most one bucket, one lease or a few quota counters, so a prune deletes
#: more than the calls since the last one can have added.
_PRUNE_EVERY = 256
_PRUNE_LIMIT = 1024
_SCHEMA_VERSION = 1
_BUSY_TIMEOUT_MS = 5000
_MODE = 0o600

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS bucket (
    key TEXT PRIMARY KEY,
    tat REAL,                                 -- NULL: never granted (minus infinity)
    factor REAL NOT NULL DEFAULT 1.0,
    suspended_until REAL NOT NULL DEFAULT 0.0,
    last_update REAL NOT NULL DEFAULT 0.0,
    strikes TEXT NOT NULL DEFAULT '',         -- episode times, separated by spaces
    params TEXT,                              -- report_throttled(params=...), JSON
    fresh_at REAL,                            -- the adaptive state reads as fresh from here
    idle_at REAL NOT NULL                     -- the whole row reads as fresh from here
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bucket_idle_at ON bucket (idle_at);
CREATE TABLE IF NOT EXISTS lease (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS lease_key ON lease (key, expires);
CREATE INDEX IF NOT EXISTS lease_expires ON lease (expires);
CREATE TABLE IF NOT EXISTS quota (
    grp TEXT NOT NULL,
    name TEXT NOT NULL,
    used INTEGER NOT NULL,
    expires REAL NOT NULL,
    PRIMARY KEY (grp, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS quota_expires ON quota (expires);
PRAGMA user_version = {_SCHEMA_VERSION};
"""

_SELECT_RATE = "SELECT tat, factor, suspended_until, last_update FROM bucket WHERE key = ?"
_SELECT_SUSPENDED = "SELECT suspended_until FROM bucket WHERE key = ?"
_STORE_TAT = """
INSERT INTO bucket (key, tat, idle_at) VALUES (:key, :tat, :tat)
ON CONFLICT (key) DO UPDATE SET
    tat = excluded.tat,
    idle_at = max(excluded.tat, coalesce(bucket.fresh_at, excluded.tat))
"""
_SELECT_ADAPTIVE = """
SELECT factor, suspended_until, last_update, strikes, params FROM bucket WHERE key = ?
"""
_STORE_ADAPTIVE = """
INSERT INTO bucket (key, factor, suspended_until, last_update, strikes, params, fresh_at, idle_at)
VALUES (:key, :factor, :suspended_until, :last_update, :strikes, :params, :fresh_at, :fresh_at)
ON CONFLICT (key) DO UPDATE SET
    factor = excluded.factor,
    suspended_until = excluded.suspended_until,
    last_update = excluded.last_update,
    strikes = excluded.strikes,
    params = excluded.params,
    fresh_at = excluded.fresh_at,
    idle_at = max(excluded.fresh_at, coalesce(bucket.tat, excluded.fresh_at))
"""
_COUNT_LEASES = "SELECT count(*) FROM lease WHERE key = ? AND expires > ?"
_INSERT_LEASE = "INSERT INTO lease (id, key, holder, expires) VALUES (?, ?, ?, ?)"
_RENEW_LEASE = "UPDATE lease SET expires = ? WHERE id = ? AND key = ? AND expires > ?"
_DELETE_LEASE = "DELETE FROM lease WHERE id = ? AND key = ?"
_STATE = """
SELECT (SELECT count(*) FROM lease WHERE key = :key AND expires > :now),
       b.factor, b.suspended_until, b.last_update, b.strikes, b.params
FROM (SELECT 1) LEFT JOIN bucket AS b ON b.key = :key
"""
_QUOTA_USED = "SELECT used FROM quota WHERE grp = ? AND name = ? AND expires > ?"
_ADD_QUOTA = """
INSERT INTO quota (grp, name, used, expires) VALUES (:grp, :name, :n, :expires)
ON CONFLICT (grp, name) DO UPDATE SET
    used = CASE WHEN quota.expires <= :now THEN excluded.used
                ELSE quota.used + excluded.used END,
    expires = CASE WHEN quota.expires <= :now THEN excluded.expires
                   ELSE max(quota.expires, excluded.expires) END
"""
_PRUNE = (
    "DELETE FROM lease WHERE id IN (SELECT id FROM lease WHERE expires <= :now LIMIT :limit)",
    "DELETE FROM bucket WHERE key IN (SELECT key FROM bucket WHERE idle_at <= :now LIMIT :limit)",
    "DELETE FROM quota WHERE (grp, name) IN"
    " (SELECT grp, name FROM quota WHERE expires <= :now LIMIT :limit)",
)

# Result codes (the primary code, the low byte of an extended one) that mean "not now":
# the file is busy or locked beyond the busy timeout, the disk is full, or I/O failed.
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
    }
)


class _Translated:
    """Turns SQLite and lock-file errors into ``ThrottleUnavailable`` / ``ThrottleError``
    (a class, not a generator: it is entered on every call)."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if isinstance(exc, sqlite3.Error):
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
                raise ThrottleUnavailable(
                    f"throttle file unavailable ({self.what}): {exc}"
                ) from exc
            raise ThrottleError(f"throttle file failed ({self.what}): {exc}") from exc
        if isinstance(exc, OSError):
            raise ThrottleUnavailable(f"throttle file unavailable ({self.what}): {exc}") from exc


_translated = functools.cache(_Translated)


class _Transaction:
    """One write transaction under the file lock: ``BEGIN IMMEDIATE`` on entry, ``COMMIT``
    when the block ends, ``ROLLBACK`` when it raises; the lock is held throughout."""

    __slots__ = ("conn", "fd")

    def __init__(self, conn: sqlite3.Connection, fd: int) -> None:
        self.conn = conn
        self.fd = fd

    def __enter__(self) -> sqlite3.Connection:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            raise
        return self.conn

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                try:
                    self.conn.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            else:
                self._rollback()
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _rollback(self) -> None:
        if self.conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")


# Forks of this process so far, as seen by the child: an instance made before a fork
# refuses to work after it.
_forks = 0


def _forked() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_forked)


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _create(path: Path) -> None:
    """Create ``path`` with mode 0600 if it does not exist (SQLite gives its WAL and
    shared-memory files the database file's mode)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _MODE))


@contextlib.contextmanager
def _file_lock(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _connect(path: Path) -> sqlite3.Connection:
    """Open the database, set it up for sharing and create its tables; call under the lock."""
    _create(path)
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=64)
    try:
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        # small pages: a commit appends every page it changed to the WAL, and the rows
        # are tiny (takes effect on a new file only, before WAL mode is set)
        conn.execute("PRAGMA page_size = 1024")
        (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        if str(mode).lower() != "wal":
            raise ThrottleError(f"throttle file {path}: journal_mode is {mode!r}, not WAL")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA journal_size_limit = 4194304")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version not in (0, _SCHEMA_VERSION):
            raise ThrottleError(
                f"throttle file {path} has schema version {version}, expected "
                f"{_SCHEMA_VERSION}: reset it (SharedThrottleBackend.reset)"
            )
        if version == 0:
            conn.executescript(_SCHEMA)
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_existing(path: Path) -> sqlite3.Connection:
    """A plain connection to a file made by :func:`_connect` (for one-off maintenance)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
    return conn


def _open_lock(path: Path) -> int:
    return os.open(_lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _MODE)


@functools.lru_cache(maxsize=64)
def _params_from_json(text: str) -> AdaptiveParams:
    return AdaptiveParams(**json.loads(text))


def _params_to_json(params: AdaptiveParams) -> str:
    return json.dumps(dataclasses.asdict(params), sort_keys=True)


def _strikes_text(strikes: Sequence[float]) -> str:
    return " ".join(repr(float(s)) for s in strikes)


def _strikes(text: str) -> tuple[float, ...]:
    return tuple(float(word) for word in text.split())


def _fresh_at(state: AdaptiveState, params: Sequence[AdaptiveParams]) -> float:
    """The time from which ``state`` reads as fresh under every one of ``params``
    (``adaptive.is_idle``), one recovery step late against rounding."""
    at = state.suspended_until
    for p in params:
        if state.factor < 1.0:
            steps = math.ceil((1.0 - state.factor) / p.recover_step) + 1
            at = max(at, state.last_update + steps * p.recover_interval)
        for strike in state.strikes:
            at = max(at, strike + p.strike_window)
    return at


class SharedThrottleBackend:
    """``ThrottleBackend`` in a SQLite file shared by a node's processes; see the module
    docstring.

    ``path`` is the database file (created if missing, mode 0600); the lock file is
    ``<path>.lock`` next to it. ``params`` are the adaptive parameters (as for the other
    backends); ``clock`` supplies the time when a call passes no ``now``. The file is
    opened by the constructor, which raises ``ThrottleError`` when it cannot be.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        params: AdaptiveParams = DEFAULT_PARAMS,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.params = params
        self._clock = clock
        self._forks = _forks
        self._lease_prefix = uuid.uuid4().hex[:16]
        self._leases = itertools.count(1)
        self._calls = 0
        self._closed = False
        with _translated("open"):
            self._lock_fd = _open_lock(self.path)
            try:
                with _file_lock(self._lock_fd):
                    self._conn = _connect(self.path)
                self._writing = _Transaction(self._conn, self._lock_fd)
            except BaseException:
                os.close(self._lock_fd)
                raise

    @classmethod
    def reset(cls, path: str | os.PathLike[str]) -> None:
        """Wipe the state at ``path`` and create an empty file (mode 0600).

        For the node's supervisor, once before it starts the workers: no process may have
        the file open meanwhile (it would keep the old file). The lock file is kept, so a
        process that does hold it still excludes the others.
        """
        db = Path(path)
        with _translated("reset"):
            fd = _open_lock(db)
            try:
                os.fchmod(fd, _MODE)
                with _file_lock(fd):
                    for suffix in ("", "-wal", "-shm", "-journal"):
                        db.with_name(db.name + suffix).unlink(missing_ok=True)
                    _connect(db).close()
            finally:
                os.close(fd)

    @classmethod
    def release_holder(cls, path: str | os.PathLike[str], holder: str) -> int:
        """Free every connection slot ``holder`` took; the number freed.

        For the node's supervisor when a worker died: its slots would otherwise stay taken
        until their leases expire (``[throttle] connection_lease``), and the worker started
        in its place under the same name could not open connections meanwhile.
        """
        db = Path(path)
        with _translated("release_holder"):
            fd = _open_lock(db)
            try:
                conn = _connect_existing(db)
                try:
                    with _Transaction(conn, fd) as tx:
                        return tx.execute("DELETE FROM lease WHERE holder = ?", (holder,)).rowcount
                finally:
                    conn.close()
            finally:
                os.close(fd)

    def __repr__(self) -> str:
        return f"SharedThrottleBackend(path={str(self.path)!r}, closed={self._closed})"

    # --- plumbing --------------------------------------------------------------------------

    def _now(self, now: float | None) -> float:
        if self._closed:
            raise RuntimeError("the throttle backend is closed")
        if self._forks != _forks:
            raise RuntimeError(
                "a SharedThrottleBackend cannot cross a fork: open one in each process"
            )
        t = self._clock() if now is None else now
        self._calls += 1
        if self._calls >= _PRUNE_EVERY:
            self._calls = 0
            with _translated("prune"):
                self._prune(t)
        return t

    def _prune(self, now: float) -> None:
        """Delete a bounded number of expired leases, idle buckets and spent counters."""
        args = {"now": now, "limit": _PRUNE_LIMIT}
        with self._writing as conn:
            for sql in _PRUNE:
                conn.execute(sql, args)

    # --- rate ------------------------------------------------------------------------------

    def _rate(
        self, row: tuple[float | None, float, float, float] | None, limits: Limits, n: int, t: float
    ) -> tuple[float, float | None]:
        """``(wait, new_tat)`` of a request on the bucket ``row``: ``new_tat`` is the TAT to
        store after a grant, None when nothing is to be stored."""
        if row is None:
            tat, factor, suspended_until, last_update = -math.inf, 1.0, 0.0, 0.0
        else:
            stored, factor, suspended_until, last_update = row
            tat = -math.inf if stored is None else stored
        if t < suspended_until:
            return suspended_until - t, None
        if factor < 1.0:
            state = AdaptiveState(factor=factor, last_update=last_update)
            factor = current_factor(state, t, self.params)
        rate = effective_rate(limits, factor)
        if rate is None:
            return 0.0, None
        new_tat, wait = gcra(tat, t, rate[0], rate[1], n)
        return wait, (new_tat if wait == 0.0 else None)

    async def try_acquire(
        self, key: str, limits: Limits, n: int = 1, *, now: float | None = None
    ) -> float:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        t = self._now(now)
        with _translated("try_acquire"):
            if limits.messages is None:
                row = self._conn.execute(_SELECT_SUSPENDED, (key,)).fetchone()
                return 0.0 if row is None or t >= row[0] else float(row[0] - t)
            row = self._conn.execute(_SELECT_RATE, (key,)).fetchone()
            wait, new_tat = self._rate(row, limits, n, t)
            if new_tat is None:
                return wait
            with self._writing as conn:
                row = conn.execute(_SELECT_RATE, (key,)).fetchone()
                wait, new_tat = self._rate(row, limits, n, t)
                if new_tat is not None:
                    conn.execute(_STORE_TAT, {"key": key, "tat": new_tat})
            return wait

    async def acquire_all(
        self, group: str, buckets: Sequence[tuple[str, Limits]], n: int, *, now: float | None = None
    ) -> tuple[float, int]:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        t = self._now(now)
        keys = [f"{group}|{name}" for name, _ in buckets]
        with _translated("acquire_all"), self._writing as conn:
            states = []
            for key, (_, limits) in zip(keys, buckets, strict=True):
                if limits.messages is None:  # unlimited: nothing stored to read
                    states.append((-math.inf, limits))
                    continue
                row = conn.execute(_SELECT_RATE, (key,)).fetchone()
                states.append((-math.inf if row is None or row[0] is None else row[0], limits))
            wait, at, tats = gcra_all(states, t, n)
            if at >= 0:
                return wait, at
            for key, tat in zip(keys, tats, strict=True):
                if tat is not None:
                    conn.execute(_STORE_TAT, {"key": key, "tat": tat})
            return 0.0, -1

    # --- connections -----------------------------------------------------------------------

    async def acquire_connection(
        self, key: str, limit: int | None, holder: str, ttl: float, *, now: float | None = None
    ) -> str | None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        t = self._now(now)
        lease_id = f"{self._lease_prefix}{next(self._leases):x}"
        with _translated("acquire_connection"):
            if limit is not None:
                (live,) = self._conn.execute(_COUNT_LEASES, (key, t)).fetchone()
                if live >= limit:
                    return None
            with self._writing as conn:
                if limit is not None:
                    (live,) = conn.execute(_COUNT_LEASES, (key, t)).fetchone()
                    if live >= limit:
                        return None
                conn.execute(_INSERT_LEASE, (lease_id, key, holder, t + ttl))
        return lease_id

    async def renew_connection(
        self, key: str, lease_id: str, ttl: float, *, now: float | None = None
    ) -> bool:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        t = self._now(now)
        with _translated("renew_connection"), self._writing as conn:
            return conn.execute(_RENEW_LEASE, (t + ttl, lease_id, key, t)).rowcount == 1

    async def release_connection(
        self, key: str, lease_id: str, *, now: float | None = None
    ) -> None:
        self._now(now)
        with _translated("release_connection"), self._writing as conn:
            conn.execute(_DELETE_LEASE, (lease_id, key))

    async def connections(self, key: str, *, now: float | None = None) -> int:
        t = self._now(now)
        with _translated("connections"):
            (live,) = self._conn.execute(_COUNT_LEASES, (key, t)).fetchone()
        return int(live)

    # --- adaptive --------------------------------------------------------------------------

    async def report_throttled(
        self, key: str, *, now: float | None = None, params: AdaptiveParams | None = None
    ) -> AdaptiveState:
        t = self._now(now)
        with _translated("report_throttled"), self._writing as conn:
            row = conn.execute(_SELECT_ADAPTIVE, (key,)).fetchone()
            if row is None:
                state, stored = AdaptiveState(), None
            else:
                factor, suspended_until, last_update, strikes, stored = row
                state = AdaptiveState(factor, _strikes(strikes), suspended_until, last_update)
            if params is not None:
                stored = _params_to_json(params)
            own = self.params if stored is None else _params_from_json(stored)
            state = on_throttled(state, t, own)
            conn.execute(
                _STORE_ADAPTIVE,
                {
                    "key": key,
                    "factor": state.factor,
                    "suspended_until": state.suspended_until,
                    "last_update": state.last_update,
                    "strikes": _strikes_text(state.strikes),
                    "params": stored,
                    "fresh_at": _fresh_at(state, (own, self.params)),
                },
            )
        return state

    async def state(self, key: str, *, now: float | None = None) -> ThrottleStatus:
        t = self._now(now)
        with _translated("state"):
            live, factor, suspended_until, last_update, strikes, stored = self._conn.execute(
                _STATE, {"key": key, "now": t}
            ).fetchone()
        if factor is None:
            return ThrottleStatus(key, 1.0, 0.0, 0.0, int(live), 0)
        adaptive = AdaptiveState(factor, _strikes(strikes), suspended_until, last_update)
        window = (self.params if stored is None else _params_from_json(stored)).strike_window
        return ThrottleStatus(
            key=key,
            factor=current_factor(adaptive, t, self.params),
            suspended_until=adaptive.suspended_until,
            suspended_for=max(0.0, adaptive.suspended_until - t),
            connections=int(live),
            strikes=sum(1 for s in adaptive.strikes if t - s < window),
        )

    # --- quotas ----------------------------------------------------------------------------

    @staticmethod
    def _grant(
        conn: sqlite3.Connection, group: str, windows: Sequence[QuotaWindow], n: int, t: float
    ) -> int:
        grant = n
        for w in windows:
            row = conn.execute(_QUOTA_USED, (group, w.name, t)).fetchone()
            grant = min(grant, w.limit - (0 if row is None else int(row[0])))
        return max(0, grant)

    async def take_quota(
        self, group: str, windows: Sequence[QuotaWindow], n: int, *, now: float | None = None
    ) -> int:
        """See ``ThrottleBackend``. Counters expire ``ttl`` after ``now`` (the call's time,
        as in the memory backend)."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        t = self._now(now)
        if not windows:
            return n
        with _translated("take_quota"):
            if self._grant(self._conn, group, windows, n, t) == 0:
                return 0
            with self._writing as conn:
                grant = self._grant(conn, group, windows, n, t)
                for w in windows if grant else ():
                    expires = t + w.ttl
                    args = {"grp": group, "name": w.name, "n": grant, "expires": expires, "now": t}
                    conn.execute(_ADD_QUOTA, args)
        return grant

    async def quota_used(
        self, group: str, windows: Sequence[str], *, now: float | None = None
    ) -> list[int]:
        t = self._now(now)
        out: list[int] = []
        with _translated("quota_used"):
            conn = self._conn
            conn.execute("BEGIN")  # one snapshot for every window
            try:
                for name in windows:
                    row = conn.execute(_QUOTA_USED, (group, name, t)).fetchone()
                    out.append(0 if row is None else int(row[0]))
            finally:
                conn.execute("COMMIT")
        return out

    async def close(self) -> None:
        """Close the database and the lock file; further calls raise ``RuntimeError``."""
        if self._closed:
            return
        self._closed = True
        if self._forks != _forks:
            return  # the parent's connection and lock: leave them to the parent
        with contextlib.suppress(sqlite3.Error):
            self._conn.close()
        os.close(self._lock_fd)
