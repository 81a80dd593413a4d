"""With ``overflow = "wait"`` mail beyond a warming source's cap waits for the next window.

One source, on day 1 of a plan allowing 3 recipients an hour. The plan's calendar
(``engine.paths.clock``, the only time moved here) is set a few seconds before the end
of a UTC hour, so the next window opens during the test. Of 6 messages, 3 go out at
once; the other 3 are deferred without an attempt counted (reason ``warmup_cap``) until
the hour ends, then delivered from the same address. Nothing is dropped or sent twice.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from support.e2e import domain, internet

LEAD = 4.0


def _pool(start: str) -> str:
    return f"""
[[delivery.sources]]
name = "ip-new"
address = "127.0.0.2"
warmup = "hourly"
warmup_start = "{start}"
[[delivery.warmup]]
name = "hourly"
days = 30
overflow = "wait"
[[delivery.warmup.caps]]
provider = "*"
day_caps = [100]
hour_caps = [3]
"""


async def test_mail_over_the_cap_waits_for_the_next_hour(tmp_path: Path) -> None:
    today = datetime.now(UTC).date().isoformat()
    async with internet(tmp_path, [domain("wait.test")], delivery_extra=_pool(today)) as net:
        engine = net.node.engine
        assert engine is not None
        assert engine.paths is not None
        now = time.time()
        hour_end = (now // 3600 + 1) * 3600
        offset = hour_end - LEAD - now
        engine.paths.clock = lambda: time.time() + offset
        boundary = now + LEAD  # system time at which the plan's next hour starts

        await net.send_many([f"user{i}@wait.test" for i in range(6)])
        assert await net.settle(6, timeout=30) == {"delivered": 6}

        records = sorted(net.sim.report().records, key=lambda r: r.time)
        assert {r.client_ip for r in records} == {"127.0.0.2"}
        assert len({r.recipient for r in records}) == 6
        before = [r for r in records if r.time < boundary]
        assert len(before) == 3
        deferred = await net.events(type="deferred")
        assert len(deferred) == 3
        assert {(e["data"]["reason"], e["data"]["source"]) for e in deferred} == {
            ("warmup_cap", "ip-new")
        }
        # the wait counted no attempt: each delivered on its first
        delivered = await net.events(type="delivered")
        assert {e["data"]["attempt"] for e in delivered} == {1}
