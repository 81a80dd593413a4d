"""The Lua scripts compute exactly what the memory backend computes.

Random sequences of calls, with injected times, run on both backends side by side; every
answer must be identical (floats compared with ``==``: both sides do the same IEEE
arithmetic in the same order).
"""

from __future__ import annotations

import random
import uuid

import pytest

from postline.throttle.adaptive import AdaptiveParams
from postline.throttle.memory import MemoryThrottleBackend
from postline.throttle.redis import RedisThrottleBackend
from postline.throttle.rules import Limits

PARAMS = (
    AdaptiveParams(
        decrease=0.5,
        floor=0.1,
        recover_step=0.25,
        recover_interval=2.0,
        cut_cooldown=1.0,
        strikes=3,
        strike_window=10.0,
        suspend_for=20.0,
    ),
    # factors that are not binary fractions (0.7, 0.49, 0.3...) test the rounding
    AdaptiveParams(
        decrease=0.7,
        floor=0.05,
        recover_step=0.1,
        recover_interval=1.5,
        cut_cooldown=0.5,
        strikes=4,
        strike_window=6.0,
        suspend_for=15.0,
    ),
)
T0 = 1_000_000.0
LIMITS = (
    Limits(messages=10, period=1.0, burst=3),
    Limits(messages=7, period=3.0),
    Limits(messages=3000, period=60.0),
    Limits(messages=1, period=0.7, burst=2),
    Limits(messages=100, period=1.0, burst=10),
    Limits(messages=600, period=60.0, burst=30),
    Limits(connections=2),
)


@pytest.mark.parametrize("seed", range(28))
async def test_random_calls_get_the_same_answers_from_both_backends(
    redis_url: str, seed: int
) -> None:
    rnd = random.Random(seed)
    params = PARAMS[seed % 2]
    memory = MemoryThrottleBackend(params)
    redis = await RedisThrottleBackend.connect(redis_url, params=params)
    key = f"eq-{uuid.uuid4().hex}"
    limits = LIMITS[seed // len(PARAMS) % len(LIMITS)]
    leases: list[tuple[str, str]] = []  # (memory id, redis id) of the same lease
    now = 1_700_000_000.0 + rnd.random()
    try:
        for step in range(150):
            now += rnd.choice((0.0, 0.0, 0.01, 0.05, 0.1, 0.3, 1.0, 2.5, 7.0))
            op = rnd.choices(
                ("acquire", "report", "state", "lease", "renew", "release", "count"),
                weights=(8, 2, 2, 2, 1, 1, 1),
            )[0]
            where = f"seed {seed} step {step} {op} at {now!r}"
            if op == "acquire":
                n = rnd.choice((1, 1, 1, 2, 3, 5))
                got = await redis.try_acquire(key, limits, n, now=now)
                assert got == await memory.try_acquire(key, limits, n, now=now), where
            elif op == "report":
                got_state = await redis.report_throttled(key, now=now)
                assert got_state == await memory.report_throttled(key, now=now), where
            elif op == "state":
                assert await redis.state(key, now=now) == await memory.state(key, now=now), where
            elif op == "lease":
                limit = rnd.choice((1, 2, 3, None))
                ttl = rnd.choice((0.5, 2.0, 5.0))
                a = await memory.acquire_connection(key, limit, "n", ttl, now=now)
                b = await redis.acquire_connection(key, limit, "n", ttl, now=now)
                assert (a is None) == (b is None), where
                if a is not None and b is not None:
                    leases.append((a, b))
            elif op == "renew" and leases:
                a, b = rnd.choice(leases)
                ttl = rnd.choice((0.5, 2.0, 5.0))
                got_renew = await redis.renew_connection(key, b, ttl, now=now)
                assert got_renew == await memory.renew_connection(key, a, ttl, now=now), where
            elif op == "release" and leases:
                a, b = leases.pop(rnd.randrange(len(leases)))
                await memory.release_connection(key, a, now=now)
                await redis.release_connection(key, b, now=now)
            else:
                got_count = await redis.connections(key, now=now)
                assert got_count == await memory.connections(key, now=now), where
    finally:
        await memory.close()
        await redis.close()


async def test_a_burst_just_below_a_whole_number_rounds_like_memory(redis_url: str) -> None:
    # 0.7 + 0.1 is 0.7999999999999999: a burst of 10 at that factor is 8, not 7
    params = AdaptiveParams(decrease=0.7, recover_step=0.1, recover_interval=1.0)
    limits = Limits(messages=10, period=1.0, burst=10)
    key = f"eq-{uuid.uuid4().hex}"
    for backend in (
        MemoryThrottleBackend(params),
        await RedisThrottleBackend.connect(redis_url, params=params),
    ):
        try:
            assert (await backend.report_throttled(key, now=T0)).factor == 0.7
            assert (await backend.state(key, now=T0 + 1)).factor == 0.7 + 0.1
            waits = [await backend.try_acquire(key, limits, now=T0 + 1) for _ in range(9)]
            assert waits[:8] == [0.0] * 8, backend
            assert waits[8] > 0.0, backend
        finally:
            await backend.close()
