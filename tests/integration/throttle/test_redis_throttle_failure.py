"""Failure policy: while Redis is away every call fails closed, and the backend recovers
by itself when Redis is back (scripts included)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest
import redis.asyncio as aioredis

from postline.errors import PostlineError
from postline.throttle.redis import RedisThrottleBackend, ThrottleError, ThrottleUnavailable
from postline.throttle.rules import Limits
from support.redisserver import RedisServer, require_redis

LIMITS = Limits(messages=10, period=1.0)


@pytest.fixture
def own_server() -> Iterator[RedisServer]:
    """A server of this test alone, which it may stop, freeze and restart."""
    with RedisServer(require_redis()) as server:
        yield server


async def _every_call_is_unavailable(backend: RedisThrottleBackend, key: str) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: backend.try_acquire(key, LIMITS),
        lambda: backend.acquire_connection(key, 1, "n", 30.0),
        lambda: backend.renew_connection(key, "lease", 30.0),
        lambda: backend.release_connection(key, "lease"),
        lambda: backend.connections(key),
        lambda: backend.report_throttled(key),
        lambda: backend.state(key),
        lambda: backend.open(),
    ]
    for call in calls:
        with pytest.raises(ThrottleUnavailable) as caught:
            await call()
        assert isinstance(caught.value, PostlineError)
        assert caught.value.__cause__ is not None


async def test_calls_fail_closed_while_redis_is_down_and_work_again_after(
    own_server: RedisServer,
) -> None:
    key = f"k-{uuid.uuid4().hex}"
    backend = await RedisThrottleBackend.connect(own_server.url, timeout=0.5)
    try:
        assert await backend.try_acquire(key, LIMITS) == 0.0
        port = own_server.port
        own_server.kill()
        # hold the port while Redis is away, so no other server can take it meanwhile
        with socket.socket() as placeholder:
            placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            placeholder.bind(("127.0.0.1", port))
            started = time.monotonic()
            await _every_call_is_unavailable(backend, key)
            assert time.monotonic() - started < 3.0  # refused connections fail fast
        own_server.start(port=port)
        # a fresh server knows no scripts: NOSCRIPT falls back to EVAL
        assert await backend.try_acquire(key, LIMITS) == 0.0
        assert await backend.acquire_connection(key, 1, "n", 30.0) is not None
    finally:
        await backend.close()


async def test_a_frozen_server_times_out_instead_of_stalling(own_server: RedisServer) -> None:
    key = f"k-{uuid.uuid4().hex}"
    backend = await RedisThrottleBackend.connect(own_server.url, timeout=0.2)
    os.kill(own_server.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(ThrottleUnavailable):
            await backend.try_acquire(key, LIMITS)
        # one attempt and one retry, each bounded by the timeout
        assert time.monotonic() - started < 1.5
    finally:
        os.kill(own_server.pid, signal.SIGCONT)
    try:
        assert await backend.try_acquire(key, LIMITS) == 0.0
    finally:
        await backend.close()


async def test_connecting_to_nothing_raises_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        with pytest.raises(ThrottleUnavailable):
            await RedisThrottleBackend.connect(f"redis://127.0.0.1:{port}/0", timeout=0.5)


async def test_a_wrong_record_is_an_error_not_an_outage(redis_url: str) -> None:
    key = f"k-{uuid.uuid4().hex}"
    backend = await RedisThrottleBackend.connect(redis_url)
    raw = aioredis.Redis.from_url(redis_url)
    try:
        await raw.set(backend.keys(key).leases, "not a sorted set", px=10_000)
        with pytest.raises(ThrottleError) as caught:
            await backend.acquire_connection(key, 1, "n", 30.0)
        assert not isinstance(caught.value, ThrottleUnavailable)
        assert "WRONGTYPE" in str(caught.value)
    finally:
        await raw.aclose()
        await backend.close()


async def test_a_burst_of_calls_waits_for_connections_instead_of_failing(
    own_server: RedisServer,
) -> None:
    """More calls at once than the pool has connections: they queue for one (a burst
    is not an outage), and every one succeeds."""
    backend = await RedisThrottleBackend.connect(own_server.url, timeout=5.0)
    try:
        keys = [f"burst-{uuid.uuid4().hex}" for _ in range(600)]
        waits = await asyncio.gather(*(backend.try_acquire(k, LIMITS) for k in keys))
        assert waits == [0.0] * len(keys)
    finally:
        await backend.close()
