"""A node rate rule is enforced on the wire: 20 messages per second, burst 1.

The simulated domain accepts any rate, so whatever pace the sim sees is the node's own.
The peak accepted rate over sliding windows of 2 s and 5 s stays within 5 % of the limit
(plus the burst spread over the window), and the run lasts at least (N - burst) / rate
seconds, so the limit is applied, not just measured.
"""

from __future__ import annotations

import time
from pathlib import Path

from support.e2e import domain, internet
from support.node import wait_for

RATE = 20
BURST = 1
TOTAL = 200
RULE = {
    "name": "paced",
    "domains": ["paced.test"],
    "scope": "domain",
    "messages": RATE,
    "period": "1s",
    "burst": BURST,
    "connections": 5,
}


async def test_rate_rule_paces_delivery(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("paced.test")], rules=[RULE]) as net:
        addresses = [f"user{i}@paced.test" for i in range(TOTAL)]
        t0 = time.monotonic()
        accepted = await net.send_many(addresses)
        assert len(accepted) == TOTAL

        # While mail is still queued the queue shows the rule and its limit (once the
        # destination's route is known).
        async def throttle_state() -> dict[str, object] | None:
            queues = (await net.api.get("/v1/queues")).json()["queues"]
            paced = [q for q in queues if q["domain"] == "paced.test"]
            assert paced, queues
            state: dict[str, object] | None = paced[0]["throttle"]
            return state

        throttle = await wait_for(throttle_state, timeout=5)
        assert throttle["rule"] == "paced"
        assert throttle["rate_limit"] == RATE

        counts = await net.settle(TOTAL, timeout=30)
        elapsed = time.monotonic() - t0
        assert counts == {"delivered": TOTAL}

        report = net.sim.report()
        assert report.accepted_by_domain == {"paced.test": TOTAL}
        assert report.duplicate_count == 0
        times = sorted(r.time for r in report.records)
        span = times[-1] - times[0]
        peaks = {w: net.sim.recorder.peak_rate("paced.test", window=w) for w in (1.0, 2.0, 5.0)}
        print(
            f"\nrate rule {RATE}/s burst {BURST}: {TOTAL} delivered in {elapsed:.2f}s "
            f"(first to last accept {span:.2f}s); peak rate "
            + ", ".join(f"{w:g}s window {p:.2f}/s" for w, p in peaks.items())
        )

        for window in (2.0, 5.0):
            assert peaks[window] <= RATE * 1.05 + BURST / window, (window, peaks[window])
        # The limit is used, not undershot: a 5 s window runs close to the rate.
        assert peaks[5.0] >= RATE * 0.85, peaks
        # GCRA grants one message per 1/RATE s after the burst: the whole run cannot be
        # shorter than (N - burst) / rate (a little slack for the wire between grant and 250).
        minimum = (TOTAL - BURST) / RATE
        assert span >= minimum - 0.2, (span, minimum)
        assert elapsed >= minimum, (elapsed, minimum)
        # ... and not much longer either: nothing else slows this destination down.
        assert span <= minimum * 1.25 + 1.0, (span, minimum)
