"""The Redis throttle backend: limits, leases and slow-downs shared by a fleet of nodes.

Each ``ThrottleBackend`` call is ONE Lua script (``throttle/lua/*.lua``, package data)
run atomically on the bucket's records, named by ``keys.backend_keys``:

- ``…:{key}:rate``: the GCRA theoretical arrival time (a string);
- ``…:{key}:adaptive``: factor, suspension end, last update and recent strikes (a hash);
- ``…:{key}:leases``: connection leases, lease id → expiry time (a sorted set).

Buckets taken together (``acquire_all``: a tenant's and its API key's sending rates) are
``…throttle:{group}:<name>:rate`` (``keys.group_rate_keys``), the group as hash tag, so
one script checks and counts all of them atomically.

Quota counters (warm-up caps) live apart, one plain integer per fixed window:
``…quota:{group}:<window>`` (``keys.quota_keys``); Redis expires them when their window
is over.

The ``{key}`` hash tag puts the three records in one Redis Cluster slot, so every script
touches a single slot. The scripts mirror ``gcra.py`` and ``adaptive.py`` operation for
operation on IEEE doubles, and pass numbers as ``%.17g`` text, so both backends compute
exactly the same values. Every record expires (``PX`` / ``PEXPIRE``) once it reads the
same as a missing one (TAT passed, leases expired, factor recovered, strikes out of the
window) plus one second, so Redis holds only busy buckets.

Scripts are sent with ``EVALSHA`` (their SHA-1 is computed locally); a server that does
not know one (restart, ``SCRIPT FLUSH``, failover) answers ``NOSCRIPT`` and the call is
repeated once with ``EVAL``, which also caches it. ``open`` runs ``SCRIPT LOAD`` for all
of them up front.

**Time.** Without ``now`` and without a ``clock``, a script reads the Redis server's
``TIME``: one clock for the whole fleet, so nodes whose clocks disagree still share one
rate, and a lease's expiry means the same to every node. Passing ``now=`` (tests) or a
``clock`` makes the script use that time instead; mixing clocks on one bucket is
meaningless. ``ThrottleStatus.suspended_until`` is server time (seconds since the epoch);
``suspended_for`` does not depend on the clock. Requires Redis ≥ 5 (scripts that read
``TIME`` and then write are replicated by effects).

**Failure policy: fail closed.** A Redis that cannot be reached (refused, timed out,
loading, read-only replica after a failover, out of memory, cluster down) raises
``ThrottleUnavailable``; any other Redis failure raises ``ThrottleError``. Nothing is
granted while Redis is away: a destination's reputation is worth more than a few minutes
of delay, and a node that sent unthrottled would break the limits the fleet promised. The
delivery engine should treat ``ThrottleUnavailable`` like "no slot / wait": keep the work
leased in its buffer or hand it back to the queue, retry after a short pause (about a
second, capped backoff), and report the backend as not ready (``/readyz``, metrics).
Releasing a lease may fail too: the lease then expires after its ``ttl`` by itself. A call
whose reply was lost may have been applied (one retry on a broken connection): the error
is on the safe side (a message counted twice, a slot held until its lease expires).

**Sentinel** (``redis+sentinel://sentinel:26379,.../<service>``, ``postline.redisurl``).
Every new connection asks the sentinels where the master of ``<service>`` is (new
connections opened together share one question); the pool is the same blocking pool of
``_POOL_SIZE`` connections. While the master is down and no replica is promoted yet,
calls fail with ``ThrottleUnavailable`` like any outage (the sentinels knowing no master
included); a connection that meets a demoted master (``READONLY``) is dropped and the
sentinels asked again. The promoted replica has its own run_id, so the fencing below
treats a failover as a new epoch. Redis Cluster is refused (see the last paragraph).

**Fencing connection slots** (``quarantine=True``, which every node of a fleet runs). A
Redis that comes back empty (restart without persistence), from an old snapshot, as a
promoted replica that missed the last writes, or as another server behind the same
address does not know every slot that nodes still use. Two halves keep a bucket within
its limit anyway:

- *Server side, epochs.* The record ``…throttle:fence`` names the server that granted the
  leases by its ``INFO`` run_id, which every server start changes. A connection script
  run by another run_id begins a new epoch and a *quarantine* of one lease lifetime
  (``ttl``, the longest any caller passes): no new slot of a limited bucket is granted,
  and a lease that the new epoch does not know is re-registered when its holder renews
  it (``renew_connection`` sends the epoch that last confirmed it) while the bucket has
  room. A holder that cannot renew in time gives its slot up (below); when the
  quarantine ends, no lease of the old epoch can still be in use.
- *Node side, deadlines* (``deliver.site``). A holder trusts a slot until ``ttl`` minus a
  margin after it SENT the call that last confirmed it, on its own monotonic clock, and
  closes the connection at that deadline if no renewal confirmed the slot since. The
  server's expiry of the same lease is ``ttl`` after it RAN the call, on its own clock,
  which cannot be earlier; the margin absorbs the closing and the two clocks running at
  different rates. So a node cut off from Redis while the others are not stops using a
  slot before Redis lets another node take it.

Both use one clock each: the quarantine is measured on the server's ``TIME`` (a step of
the server's wall clock during a quarantine shortens or lengthens it), the deadline on
the node's monotonic clock. Limits: a server whose records survive but whose run_id does
not change cannot lose leases, except by ``FLUSHALL`` / ``DEL`` by hand (delete the fence
record too, and the next call quarantines); two primaries at once (a failover while the
old primary still answers some nodes) are two fleets; and rate limits are not fenced:
a new epoch forgets the GCRA state, so each bucket may send one burst early. The fence
record is one key for all buckets, so this backend does not run on Redis Cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rexc
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

from postline.errors import ThrottleError, ThrottleUnavailable
from postline.redisurl import RedisUrl, redis_url
from postline.throttle.adaptive import DEFAULT_PARAMS, AdaptiveParams, AdaptiveState
from postline.throttle.base import QuotaWindow, ThrottleStatus
from postline.throttle.keys import BackendKeys, backend_keys, group_rate_keys, quota_keys
from postline.throttle.rules import Limits

__all__ = ["RedisThrottleBackend", "ThrottleError", "ThrottleUnavailable"]

log = logging.getLogger(__name__)

_SCRIPTS = (
    "try_acquire",
    "acquire_connection",
    "renew_connection",
    "release_connection",
    "connections",
    "report_throttled",
    "state",
    "take_quota",
    "acquire_all",
)

# Failures that mean "not now" rather than "wrong": the server is down, unreachable,
# loading, a replica after a failover, out of memory, or its cluster is changing; the
# sentinels know no master (``MasterNotFoundError`` is a ``ConnectionError``). (MOVED
# and ASK are not among them: this client does not follow cluster redirections, so they
# mean a configuration to fix.)
_UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    rexc.ConnectionError,
    rexc.TimeoutError,
    OSError,
    rexc.ReadOnlyError,
    rexc.OutOfMemoryError,
    rexc.ClusterDownError,
    rexc.TryAgainError,
)
# The same, told by the text of replies that redis-py has no class for.
_UNAVAILABLE_REPLIES = ("BUSY", "NOREPLICAS", "LOADING", "MASTERDOWN", "CLUSTERDOWN")


@dataclass(frozen=True, slots=True)
class _Script:
    name: str
    text: str
    sha: str


@cache
def _scripts() -> dict[str, _Script]:
    """Every script with the shared helpers prepended, and its SHA-1."""
    folder = resources.files("postline.throttle").joinpath("lua")
    common = folder.joinpath("_common.lua").read_text(encoding="utf-8")
    out: dict[str, _Script] = {}
    for name in _SCRIPTS:
        text = common + "\n" + folder.joinpath(f"{name}.lua").read_text(encoding="utf-8")
        sha = hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()
        out[name] = _Script(name, text, sha)
    return out


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """Turn redis-py errors into ``ThrottleUnavailable`` / ``ThrottleError``, chained."""
    try:
        yield
    except (rexc.AuthenticationError, rexc.AuthorizationError) as exc:
        raise ThrottleError(f"Redis refused the credentials ({what}): {exc}") from exc
    except _UNAVAILABLE_ERRORS as exc:
        raise ThrottleUnavailable(f"Redis unavailable ({what}): {exc}") from exc
    except rexc.ResponseError as exc:
        if str(exc).startswith(_UNAVAILABLE_REPLIES):
            raise ThrottleUnavailable(f"Redis unavailable ({what}): {exc}") from exc
        raise ThrottleError(f"Redis failed ({what}): {exc}") from exc
    except rexc.RedisError as exc:
        raise ThrottleError(f"Redis failed ({what}): {exc}") from exc


def _num(value: float) -> str:
    """A float as text that Lua's ``tonumber`` reads back exactly."""
    return repr(float(value))


def _on_throttled_args(p: AdaptiveParams) -> tuple[str, ...]:
    """The ARGV of ``report_throttled.lua`` after the time."""
    return (
        _num(p.decrease),
        _num(p.floor),
        _num(p.recover_step),
        _num(p.recover_interval),
        _num(p.cut_cooldown),
        str(p.strikes),
        _num(p.strike_window),
        _num(p.suspend_for),
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_POOL_SIZE = 200
"""Connections to Redis per process: calls beyond them wait for one to be free."""


class _BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The master's connections, found through Sentinel, at most ``max_connections``:
    a call waits (up to ``timeout``) for a free one, as with one server.

    ``SentinelConnectionPool`` supplies the connections (each new one asks the sentinels
    where the master is, and one that meets a demoted master disconnects), the blocking
    pool ``get_connection`` / ``release``; neither overrides what the other defines.

    New connections opened together (a burst after a failover, or at start) share one
    question to the sentinels instead of asking one each: the sentinels' own clients
    hold 100 connections, and a burst of 200 look-ups would fail on them."""

    _asking: asyncio.Future[Any] | None = None

    async def get_master_address(self) -> Any:
        if self._asking is None or self._asking.done():
            asking = super().get_master_address()  # type: ignore[no-untyped-call]
            self._asking = asyncio.ensure_future(asking)
            # retrieved here, so a look-up whose callers were all cancelled logs nothing
            self._asking.add_done_callback(_retrieve)
        return await asyncio.shield(self._asking)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _pool(target: RedisUrl, timeout: float) -> tuple[aioredis.ConnectionPool, Sentinel | None]:
    """The connection pool of ``target``, and the Sentinel client it asks, if any."""
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "client_name": "postline-throttle",
    }
    if not target.is_sentinel:
        return (
            aioredis.BlockingConnectionPool.from_url(
                target.url,
                max_connections=_POOL_SIZE,
                timeout=timeout,
                decode_responses=True,
                retry=Retry(NoBackoff(), 1),
                **common,
            ),
            None,
        )
    sentinel = Sentinel(
        target.sentinels,
        sentinel_kwargs={
            **common,
            "username": target.sentinel_username,
            "password": target.sentinel_password,
        },
    )
    pool = _BlockingSentinelPool(  # type: ignore[no-untyped-call]  # redis-py's __init__
        target.service,
        sentinel,
        max_connections=_POOL_SIZE,
        timeout=timeout,
        db=target.db,
        username=target.username,
        password=target.password,
        decode_responses=True,
        retry=Retry(NoBackoff(), 1),
        **common,
    )
    return pool, sentinel


class RedisThrottleBackend:
    """``ThrottleBackend`` on Redis; see the module docstring.

    ``url`` is a redis-py URL (``redis://host:port/db``, ``rediss://``, ``unix://``) or
    ``redis+sentinel://host:26379,host:26379/<service>[/db]``: the master that Sentinel
    names, asked again on every new connection (``postline.redisurl``).
    ``clock``: None (the default) uses the server's ``TIME``; a callable supplies the time
    instead. ``key_prefix`` starts every record name (``postline:throttle:{key}:rate``).
    ``timeout`` bounds connecting and each reply, so a hung server fails a call instead of
    stalling it. The client is lazy: ``open`` (or ``connect``) checks the server early.
    ``quarantine``: fence connection slots against a server that lost them (see the
    module); every node of a fleet must agree on it and on the lease ``ttl``.
    """

    def __init__(
        self,
        url: str,
        *,
        params: AdaptiveParams = DEFAULT_PARAMS,
        clock: Callable[[], float] | None = None,
        key_prefix: str = "postline:",
        timeout: float = 2.0,
        quarantine: bool = False,
    ) -> None:
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        try:
            target = redis_url(url)
        except ValueError as exc:
            raise ThrottleError(f"throttle backend URL: {exc}") from None
        self.params = params
        self.key_prefix = key_prefix
        self.quarantine = quarantine
        self._fence_key = f"{key_prefix}throttle:fence"
        # Leases acquired here: lease id -> (limit as text, the epoch that last confirmed
        # it), for re-registration with a new epoch.
        self._held: dict[str, tuple[str, str]] = {}
        self.epoch = ""
        """The last epoch seen (the Redis run_id; '' before the first fenced call)."""
        self._clock = clock
        # A call waits (up to ``timeout``) for a free connection rather than failing
        # when all of them are busy: a burst of calls is not an outage.
        self._pool, self._sentinel = _pool(target, timeout)
        self._client = aioredis.Redis(connection_pool=self._pool)
        self._scripts = _scripts()
        p = params
        self._recovery = (_num(p.recover_step), _num(p.recover_interval))
        self._on_throttled = _on_throttled_args(p)
        self._closed = False

    @classmethod
    async def connect(
        cls,
        url: str,
        *,
        params: AdaptiveParams = DEFAULT_PARAMS,
        clock: Callable[[], float] | None = None,
        key_prefix: str = "postline:",
        timeout: float = 2.0,
        quarantine: bool = False,
    ) -> RedisThrottleBackend:
        """Build a backend and ``open`` it (raises ``ThrottleUnavailable`` if Redis is down)."""
        backend = cls(
            url,
            params=params,
            clock=clock,
            key_prefix=key_prefix,
            timeout=timeout,
            quarantine=quarantine,
        )
        try:
            await backend.open()
        except BaseException:
            await backend.close()
            raise
        return backend

    def __repr__(self) -> str:
        return f"RedisThrottleBackend(prefix={self.key_prefix!r}, closed={self._closed})"

    # --- plumbing --------------------------------------------------------------------------

    async def open(self) -> None:
        """Reach the server and load every script (``SCRIPT LOAD``); checks the SHA-1s."""
        for script in self._scripts.values():
            with _translated("SCRIPT LOAD"):
                sha = await self._client.script_load(script.text)
            if _text(sha) != script.sha:
                raise ThrottleError(f"SCRIPT LOAD {script.name}: server returned SHA-1 {sha}")

    async def server_time(self) -> float:
        """The Redis server's clock (``TIME``), seconds since the epoch."""
        self._now(0.0)  # refuses a closed backend
        with _translated("TIME"):
            seconds, micros = await self._client.time()
        return float(seconds) + float(micros) / 1_000_000

    def keys(self, key: str) -> BackendKeys:
        """The names of the records of bucket ``key``."""
        return backend_keys(key, prefix=f"{self.key_prefix}throttle")

    def _quarantine(self, ttl: float) -> str:
        """The quarantine argument of the connection scripts: one lease lifetime."""
        return _num(ttl) if self.quarantine else ""

    def _saw(self, epoch: str) -> None:
        if epoch and epoch != self.epoch:
            if self.epoch:
                log.warning(
                    "the Redis throttle server changed or lost its state (run_id %s, "
                    "was %s): no new connection slot for one lease lifetime, held slots "
                    "re-register",
                    epoch,
                    self.epoch,
                    extra={"action": "throttle.new_epoch"},
                )
            self.epoch = epoch

    def _now(self, now: float | None) -> str:
        if self._closed:
            raise RuntimeError("the throttle backend is closed")
        if now is not None:
            return _num(now)
        if self._clock is not None:
            return _num(self._clock())
        return ""

    async def _run(self, name: str, keys: Sequence[str], args: Sequence[str]) -> Any:
        script = self._scripts[name]
        with _translated(name):
            try:
                return await self._client.evalsha(script.sha, len(keys), *keys, *args)
            except rexc.NoScriptError:
                return await self._client.eval(script.text, len(keys), *keys, *args)

    # --- rate ------------------------------------------------------------------------------

    async def try_acquire(
        self, key: str, limits: Limits, n: int = 1, *, now: float | None = None
    ) -> float:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        t = self._now(now)
        k = self.keys(key)
        if limits.messages is None:
            rate: tuple[str, str, str] = ("", "", "")
        else:
            rate = (str(limits.messages), _num(limits.period), str(limits.effective_burst))
        wait = await self._run(
            "try_acquire", (k.rate, k.adaptive), (t, str(n), *rate, *self._recovery)
        )
        return float(wait)

    async def acquire_all(
        self, group: str, buckets: Sequence[tuple[str, Limits]], n: int, *, now: float | None = None
    ) -> tuple[float, int]:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        t = self._now(now)
        limited = [(i, name, limits) for i, (name, limits) in enumerate(buckets) if limits.messages]
        if not limited:
            return 0.0, -1
        keys = group_rate_keys(
            group, [name for _, name, _ in limited], prefix=f"{self.key_prefix}throttle"
        )
        args = [t, str(n)]
        for _, _, limits in limited:
            args += [str(limits.messages), _num(limits.period), str(limits.effective_burst)]
        wait, at = await self._run("acquire_all", keys, args)
        if float(wait) == 0.0:
            return 0.0, -1
        return float(wait), limited[int(at) - 1][0]

    # --- connections -----------------------------------------------------------------------

    async def acquire_connection(
        self, key: str, limit: int | None, holder: str, ttl: float, *, now: float | None = None
    ) -> str | None:
        """See ``ThrottleBackend``. The lease id is ``<uuid>@<holder>``, so the sorted set
        of leases shows which node holds each slot. With ``quarantine``, None also while
        a new epoch's quarantine lasts (limited buckets only; see the module)."""
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        t = self._now(now)
        lease_id = f"{uuid.uuid4().hex}@{holder}"
        cap = "" if limit is None else str(limit)
        granted, epoch = await self._run(
            "acquire_connection",
            (self.keys(key).leases, self._fence_key),
            (t, cap, _num(ttl), lease_id, self._quarantine(ttl)),
        )
        self._saw(_text(epoch))
        if not _text(granted):
            return None
        if self.quarantine:
            self._held[lease_id] = (cap, _text(epoch))
        return lease_id

    async def renew_connection(
        self, key: str, lease_id: str, ttl: float, *, now: float | None = None
    ) -> bool:
        """See ``ThrottleBackend``. With ``quarantine``, a lease this backend acquired that
        a new epoch does not know is re-registered while the epoch's quarantine lasts and
        the bucket has room (see the module)."""
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl!r}")
        t = self._now(now)
        cap, known = self._held.get(lease_id, ("", ""))
        renewed, epoch = await self._run(
            "renew_connection",
            (self.keys(key).leases, self._fence_key),
            (t, lease_id, _num(ttl), self._quarantine(ttl), known, cap),
        )
        epoch = _text(epoch)
        self._saw(epoch)
        if not int(renewed):
            self._held.pop(lease_id, None)
            return False
        if lease_id in self._held:
            if known != epoch:
                log.warning(
                    "connection slot of %s re-registered with a new Redis epoch",
                    key,
                    extra={"action": "throttle.slot_reregistered"},
                )
            self._held[lease_id] = (cap, epoch)
        return True

    async def release_connection(
        self, key: str, lease_id: str, *, now: float | None = None
    ) -> None:
        self._now(now)
        self._held.pop(lease_id, None)
        await self._run("release_connection", (self.keys(key).leases,), (lease_id,))

    async def connections(self, key: str, *, now: float | None = None) -> int:
        t = self._now(now)
        return int(await self._run("connections", (self.keys(key).leases,), (t,)))

    # --- adaptive --------------------------------------------------------------------------

    async def report_throttled(
        self, key: str, *, now: float | None = None, params: AdaptiveParams | None = None
    ) -> AdaptiveState:
        t = self._now(now)
        args = self._on_throttled if params is None else _on_throttled_args(params)
        reply = await self._run("report_throttled", (self.keys(key).adaptive,), (t, *args))
        factor, suspended_until, last_update, *strikes = (float(x) for x in reply)
        return AdaptiveState(
            factor=factor,
            strikes=tuple(strikes),
            suspended_until=suspended_until,
            last_update=last_update,
        )

    async def state(self, key: str, *, now: float | None = None) -> ThrottleStatus:
        t = self._now(now)
        k = self.keys(key)
        factor, suspended_until, suspended_for, strikes, connections = await self._run(
            "state",
            (k.adaptive, k.leases),
            (t, *self._recovery, _num(self.params.strike_window)),
        )
        return ThrottleStatus(
            key=key,
            factor=float(factor),
            suspended_until=float(suspended_until),
            suspended_for=float(suspended_for),
            connections=int(connections),
            strikes=int(strikes),
        )

    # --- quotas ----------------------------------------------------------------------------

    async def take_quota(
        self, group: str, windows: Sequence[QuotaWindow], n: int, *, now: float | None = None
    ) -> int:
        """See ``ThrottleBackend``. Counters expire on the server's clock (``ttl`` from
        now), whatever ``now`` says."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n!r}")
        self._now(now)
        if not windows:
            return n
        keys = quota_keys(group, [w.name for w in windows], prefix=f"{self.key_prefix}quota")
        args = [str(n)]
        for w in windows:
            args.extend((str(w.limit), _num(w.ttl)))
        return int(await self._run("take_quota", keys, args))

    async def quota_used(
        self, group: str, windows: Sequence[str], *, now: float | None = None
    ) -> list[int]:
        self._now(now)
        if not windows:
            return []
        keys = quota_keys(group, windows, prefix=f"{self.key_prefix}quota")
        with _translated("MGET"):
            values = await self._client.mget(keys)
        return [int(v) if v is not None else 0 for v in values]

    async def close(self) -> None:
        """Close the connection pool; further calls raise ``RuntimeError``."""
        self._closed = True
        self._held.clear()
        await self._client.aclose()
        await self._pool.disconnect()
        if self._sentinel is not None:
            await self._sentinel.aclose()
