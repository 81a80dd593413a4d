"""Fixtures for the Redis throttle tests: the session's server, two nodes, a raw client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from postline.throttle.adaptive import AdaptiveParams
from postline.throttle.redis import RedisThrottleBackend
from support import redisserver

redis_server = redisserver.redis_server
redis_url = redisserver.redis_url

PARAMS = AdaptiveParams(
    decrease=0.5,
    floor=0.1,
    recover_step=0.25,
    recover_interval=10.0,
    cut_cooldown=1.0,
    strikes=3,
    strike_window=60.0,
    suspend_for=300.0,
)


@pytest.fixture
def prefix() -> str:
    """A key prefix of this test alone, so it can list every record it made."""
    return f"t{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def key() -> str:
    return f"fleet-{uuid.uuid4().hex}:site=mx.test:00000000"


@pytest.fixture
async def nodes(redis_url: str, prefix: str) -> AsyncIterator[list[RedisThrottleBackend]]:
    """Two backends on one server: what two postline nodes of a fleet hold."""
    made = [
        await RedisThrottleBackend.connect(redis_url, params=PARAMS, key_prefix=prefix)
        for _ in range(2)
    ]
    try:
        yield made
    finally:
        for backend in made:
            await backend.close()


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A plain client, to look at the records the backend keeps."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()
