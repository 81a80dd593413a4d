"""The same delivery on the fleet backends: PostgreSQL store and Redis throttles.

One node on a throwaway PostgreSQL and Redis delivers to the sim; a connection limit held
in Redis is honoured on the wire, with the Redis server named directly or found through a
sentinel. (Several nodes sharing them are the fleet tests.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postline.sim.profiles import Profile
from support import pgserver, redisserver
from support.e2e import domain, internet

pg_server = pgserver.pg_server
pg_dsn = pgserver.pg_dsn
redis_server = redisserver.redis_server
redis_url = redisserver.redis_url
redis_sentinel_url = redisserver.redis_sentinel_url


@pytest.mark.parametrize("throttle", ["redis_url", "redis_sentinel_url"])
async def test_postgres_store_and_redis_throttles(
    tmp_path: Path, pg_dsn: str, throttle: str, request: pytest.FixtureRequest
) -> None:
    throttle_backend: str = request.getfixturevalue(throttle)
    slow = domain("held.test", Profile(name="held", tarpit=0.01))
    rules = [
        {"name": "held", "domains": ["held.test"], "connections": 2, "messages_per_connection": 5},
        {"name": "default", "connections": 5},
    ]
    async with internet(
        tmp_path,
        [slow, domain("fast.test"), domain("grey.test", Profile(name="grey", greylist=1.0))],
        store=pg_dsn,
        throttle_backend=throttle_backend,
        rules=rules,
    ) as net:
        addresses = (
            [f"u{i}@held.test" for i in range(60)]
            + [f"u{i}@fast.test" for i in range(60)]
            + [f"u{i}@grey.test" for i in range(10)]
            + ["unknown1@fast.test"]
        )
        await net.send_many(addresses)
        counts = await net.settle(len(addresses), timeout=40)
        assert counts == {"delivered": 130, "bounced": 1}
        report = net.sim.report()
        assert report.duplicate_count == 0
        assert report.connections_by_domain["held.test"].peak <= 2
        assert report.connections_by_domain["held.test"].opened >= 12
        queues = (await net.api.get("/v1/queues")).json()["queues"]
        assert queues == []
        events = await net.events(type="deferred")
        assert {e["data"]["enhanced"] for e in events} == {"4.7.1"}
