"""A warming source sends no more than its cap; the rest leaves from a warmed source.

Two sources weighted alike: ``ip-new`` on day 1 of a plan that allows 5 recipients a
day to the ``warm`` destination, ``ip-old`` warmed. Of 40 messages about 20 would draw
``ip-new``; the receiver sees exactly 5 from its address and the other 35 from
``ip-old``, all delivered, none twice. /metrics and ``sources_state()`` report the
day of the plan and today's count against the cap. Once with the memory throttle
backend, once with Redis (where the count is the fleet's).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from support import redisserver
from support.e2e import domain, internet

redis_server = redisserver.redis_server
redis_url = redisserver.redis_url


def _pool(start: str, new: str) -> str:
    return f"""
[[delivery.sources]]
name = "{new}"
address = "127.0.0.2"
warmup = "tiny"
warmup_start = "{start}"
[[delivery.sources]]
name = "ip-old"
address = "127.0.0.3"
[[delivery.warmup]]
name = "tiny"
days = 30
overflow = "warmed"
hourly_share = 1.0
[[delivery.warmup.caps]]
provider = "warm"
day_caps = [5, 10]
"""


RULES = (
    {"name": "default", "connections": 10},
    {"name": "warm", "domains": ["warm.test"], "connections": 4},
)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_warmup_cap_overflows_to_the_warmed_source(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    today = datetime.now(UTC).date().isoformat()
    new = f"ip-new-{uuid.uuid4().hex[:8]}"  # counters in a shared Redis start at 0
    throttle = request.getfixturevalue("redis_url") if backend == "redis" else None
    async with internet(
        tmp_path,
        [domain("warm.test")],
        delivery_extra=_pool(today, new),
        rules=RULES,
        throttle_backend=throttle,
    ) as net:
        await net.send_many([f"user{i}@warm.test" for i in range(40)])
        assert await net.settle(40, timeout=30) == {"delivered": 40}

        report = net.sim.report()
        by_ip: dict[str, int] = {}
        for r in report.records:
            by_ip[r.client_ip] = by_ip.get(r.client_ip, 0) + 1
        assert by_ip == {"127.0.0.2": 5, "127.0.0.3": 35}
        assert report.duplicate_count == 0
        # nobody waited: the overflow went out at once from the warmed source
        assert not await net.events(type="deferred")

        engine = net.node.engine
        assert engine is not None
        state = {s["name"]: s for s in await engine.sources_state()}
        warmup = state[new]["warmup"]
        assert (warmup["schedule"], warmup["day"], warmup["warmed"]) == ("tiny", 1, False)
        (warm,) = warmup["providers"]
        assert (warm["provider"], warm["sent_today"], warm["day_cap"]) == ("warm", 5, 5)
        assert warm["hour_cap"] is None
        assert warm["capped_for"] > 0
        assert state["ip-old"]["warmup"] is None

        metrics = (await net.api.get("/metrics")).text
        assert f'postline_warmup_day{{schedule="tiny",source="{new}"}} 1.0' in metrics
        assert f'postline_warmup_sent{{provider="warm",source="{new}",window="day"}} 5.0' in metrics
        assert f'postline_warmup_cap{{provider="warm",source="{new}",window="day"}} 5.0' in metrics

        # The tenant sees the same through the API.
        pools = (await net.api.get("/v1/ip-pools")).json()["pools"]
        (pool,) = pools
        assert pool["name"] == "default" and pool["dedicated"] is False
        sources = {s["name"]: s for s in pool["sources"]}
        assert sources.keys() == {new, "ip-old"}
        assert sources[new]["address"] == "127.0.0.2"
        api_warm = sources[new]["warmup"]["providers"][0]
        assert (api_warm["sent_today"], api_warm["day_cap"]) == (5, 5)
