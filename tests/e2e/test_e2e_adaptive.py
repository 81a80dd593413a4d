"""Adaptive slow-down: a receiver slower than the node's rule answers with its throttling
reply, the node defers and cuts its rate, and every message still arrives exactly once.

The sim plays Yahoo at 20 messages per second per sending IP (``421 4.7.0 [TSS04] ...``
at MAIL FROM, closing the connection); the node's rule allows 100 per second. The test
watches ``GET /v1/queues`` while the mail goes out and checks the throttle state there.
Two throttling episodes (at least 5 s apart, the cut cooldown) suspend the destination
for 2 s, which the sim sees as a pause in the traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from pathlib import Path
from typing import Any

from postline.sim.profiles import Profile
from support.e2e import E2E, FAST_RETRY, domain, internet

SIM_RATE = 20
NODE_RATE = 100
TOTAL = 150
YAHOO = Profile(name="yahoo-ish", rate=SIM_RATE, throttle_style="yahoo")
RULE = {
    "name": "ymail",
    "domains": ["ymail.test"],
    "scope": "domain",
    "messages": NODE_RATE,
    "period": "1s",
    "connections": 5,
}
THROTTLE = """
[throttle]
suspend_after = 2
suspend_for = "2s"
recover_interval = "1s"
"""


async def _watch(net: E2E, seen: list[dict[str, Any]]) -> None:
    """Keep the throttle state of ymail.test as the API shows it, with its time."""
    while True:
        queues = (await net.api.get("/v1/queues")).json()["queues"]
        for q in queues:
            if q["domain"] == "ymail.test" and q["throttle"] is not None:
                seen.append({"t": time.monotonic(), **q["throttle"]})
        await asyncio.sleep(0.05)


async def test_throttling_replies_slow_the_node_down(tmp_path: Path) -> None:
    async with internet(
        tmp_path, [domain("ymail.test", YAHOO)], rules=[RULE], node_extra=FAST_RETRY + THROTTLE
    ) as net:
        seen: list[dict[str, Any]] = []
        watcher = asyncio.create_task(_watch(net, seen))
        try:
            t0 = time.monotonic()
            await net.send_many([f"user{i}@ymail.test" for i in range(TOTAL)])
            counts = await net.settle(TOTAL, timeout=40)
            elapsed = time.monotonic() - t0
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
        assert counts == {"delivered": TOTAL}

        report = net.sim.report()
        assert report.accepted_by_domain == {"ymail.test": TOTAL}
        assert report.duplicate_count == 0
        assert len(report.accepted_pairs()) == TOTAL

        # The sim said "slow down" with Yahoo's words, at MAIL FROM ...
        tss04 = [j for j in report.rejections if "[TSS04]" in j.text]
        assert tss04, report.rejected_by_code
        assert {(j.code, j.enhanced, j.command) for j in tss04} == {(421, "4.7.0", "MAIL FROM")}
        assert len(tss04) == len(report.rejections)

        # ... and every such reply is a deferral of the node, recorded with that text.
        deferred = await net.events(type="deferred")
        throttled = [e for e in deferred if "[TSS04]" in e["data"]["text"]]
        held = [e for e in deferred if e not in throttled]
        assert {(e["data"]["code"], e["data"]["enhanced"]) for e in throttled} == {(421, "4.7.0")}
        assert len(throttled) == len(tss04)
        # Any other deferral is work the suspension took back from the ready buffer
        # (there may be none: mail that waits for its retry is not buffered).
        for e in held:
            assert e["data"]["reason"] == "suspended", e
            assert (e["data"]["code"], e["data"]["enhanced"]) == (451, "4.7.0")
            assert "suspended for 2s" in e["data"]["text"]
        delivered = await net.events(type="delivered")
        assert len(delivered) == TOTAL
        # Throttled recipients were tried again and delivered.
        retried = {e["recipient"] for e in throttled}
        assert retried <= {e["recipient"] for e in delivered}
        assert all(e["data"]["attempt"] >= 2 for e in delivered if e["recipient"] in retried)
        # The suspension is a pause on the wire: the sim accepted nothing for ~2 s.
        times = sorted(r.time for r in report.records)
        gap = max(b - a for a, b in itertools.pairwise(times))
        assert gap >= 1.5, gap

        factors = [s["rate_factor"] for s in seen]
        assert factors, "the throttle state never showed up in GET /v1/queues"
        assert {s["rule"] for s in seen} == {"ymail"}
        assert {s["rate_limit"] for s in seen} == {NODE_RATE}
        suspended = max(s["suspended_for"] for s in seen)
        print(
            f"\nadaptive: sim {SIM_RATE}/s, node rule {NODE_RATE}/s: {TOTAL} delivered in "
            f"{elapsed:.2f}s; {len(tss04)} [TSS04] replies = {len(throttled)} deferrals for "
            f"{len(retried)} recipients, {len(held)} held by the suspension; lowest "
            f"rate_factor {min(factors)}, longest suspension seen {suspended}s, longest pause "
            f"on the wire {gap:.2f}s; sim peak {report.peak_rate_by_domain['ymail.test']}/s"
        )
        assert min(factors) < 1.0
        # Cut by the configured decrease (0.5) at least once, never below the floor.
        assert min(factors) <= 0.5
        assert min(factors) >= 0.05
        assert 0 < suspended <= 2.0
        # The whole run cannot beat the receiver's own limit.
        assert elapsed >= (TOTAL - SIM_RATE) / SIM_RATE
