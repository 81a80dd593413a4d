"""Per-domain isolation, measured: a tarpit and a blocklist do not slow a fast domain.

Each test makes two runs, each on a fresh node and sim: a baseline with 300 messages to a
fast domain alone, then the same 300 sent while a tarpit domain (1 s before every reply)
already holds connections with 100 messages and a domain that blocks the node (550 at
RCPT TO) has 100 more. The fast domain must finish while the tarpit still holds most of
its mail, and within a generous margin of the baseline.

None of the three domains matches a provider rule, so all fall to the catch-all rule
``default``, which is per MX site. It is overridden here to 10 connections, once with
``scope = "site"`` spelled out and once as ``docs/throttles.md`` shows it (``name`` and
limits only), which must keep the catch-all per site as well.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from postline.sim.profiles import DomainSpec, Profile
from support.e2e import E2E, domain, internet
from support.node import wait_for

FAST = 300
SLOW = 100
TARPIT = Profile(name="tarpit", tarpit=1.0)
BLOCK = Profile(name="block", block=True)


def _limit(baseline: float) -> float:
    """How long the fast domain may take next to the slow ones."""
    return max(2 * baseline, baseline + 2.0)


async def _count(net: E2E, kind: str, suffix: str) -> int:
    return sum(1 for e in await net.events(type=kind) if e["recipient"].endswith(suffix))


@contextlib.asynccontextmanager
async def _net(
    tmp_path: Path, domains: list[DomainSpec], rules: list[dict[str, Any]]
) -> AsyncIterator[E2E]:
    """``internet`` whose sim is stopped first on the way out, so the node's shutdown
    does not wait on the tarpit's slow replies."""
    tmp_path.mkdir()
    async with internet(tmp_path, domains, rules=rules) as net:
        try:
            yield net
        finally:
            await net.sim.stop()


async def _isolation(tmp_path: Path, rules: list[dict[str, Any]]) -> None:
    fast = [f"user{i}@fast.test" for i in range(FAST)]

    async with _net(tmp_path / "baseline", [domain("fast.test")], rules) as net:
        t0 = time.monotonic()
        await net.send_many(fast)
        await wait_for(lambda: net.sim.recorder.accepted_count("fast.test") >= FAST, 20, 0.01)
        baseline = time.monotonic() - t0
        assert await net.settle(FAST, timeout=10) == {"delivered": FAST}

    domains = [domain("fast.test"), domain("tarpit.test", TARPIT), domain("blocked.test", BLOCK)]
    async with _net(tmp_path / "mixed", domains, rules) as net:
        recorder = net.sim.recorder
        await net.send_many([f"user{i}@tarpit.test" for i in range(SLOW)])
        await net.send_many([f"user{i}@blocked.test" for i in range(SLOW)])
        # The tarpit is busy with several connections before the fast mail arrives.
        await wait_for(lambda: recorder.open_connections("host", "mx1.tarpit.test") >= 5, 5)
        held = recorder.open_connections("host", "mx1.tarpit.test")
        t0 = time.monotonic()
        await net.send_many(fast)
        limit = _limit(baseline)
        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: recorder.accepted_count("fast.test") >= FAST, limit, 0.01)
        mixed = time.monotonic() - t0
        fast_accepted = recorder.accepted_count("fast.test")
        tarpit_accepted = recorder.accepted_count("tarpit.test")
        queues = {q["domain"]: q for q in (await net.api.get("/v1/queues")).json()["queues"]}
        tarpit_depth = queues["tarpit.test"]["depth"]
        buckets = {
            d: (queues[d]["throttle"] or {}).get("key") for d in queues if d != "blocked.test"
        }
        print(
            f"\nisolation {rules}: fast.test {FAST} alone {baseline:.2f}s; next to {SLOW} "
            f"tarpit (holding {held} connections) + {SLOW} blocked: {fast_accepted} of {FAST} "
            f"in {mixed:.2f}s ({mixed / baseline:.2f}x, limit {limit:.2f}s); at that point "
            f"tarpit.test accepted {tarpit_accepted}, queued {tarpit_depth}; buckets {buckets}"
        )
        assert fast_accepted == FAST, (
            f"fast.test got {fast_accepted} of {FAST} within {limit:.2f}s "
            f"(baseline {baseline:.2f}s) while the tarpit held {held} connections; "
            f"throttle buckets {buckets}"
        )
        assert mixed < limit
        # At that moment the tarpit domain still holds most of its mail in the queue.
        assert tarpit_accepted <= SLOW // 10
        assert tarpit_depth >= SLOW * 9 // 10
        # The node has recorded the fast domain's outcomes, and the blocked domain's
        # bounces (it answers at once, so it does not wait behind the tarpit either).
        await wait_for(lambda: _count_is(net, "delivered", "@fast.test", FAST), 5, 0.1)
        await wait_for(lambda: _count_is(net, "bounced", "@blocked.test", SLOW), 10, 0.1)
        bounced = await net.events(type="bounced")
        assert {(e["data"]["code"], e["data"]["enhanced"]) for e in bounced} == {(550, "5.7.1")}
        assert all("zen.spamhaus.org" in e["data"]["text"] for e in bounced)

        report = net.sim.report()
        assert report.accepted_by_domain["fast.test"] == FAST
        assert "blocked.test" not in report.accepted_by_domain
        assert report.duplicate_count == 0


async def _count_is(net: E2E, kind: str, suffix: str, want: int) -> bool:
    return await _count(net, kind, suffix) >= want


async def test_isolation_with_per_site_catch_all(tmp_path: Path) -> None:
    await _isolation(tmp_path, [{"name": "default", "scope": "site", "connections": 10}])


async def test_isolation_with_catch_all_overridden_as_documented(tmp_path: Path) -> None:
    """``docs/throttles.md``: a rule named ``default`` changes the catch-all's limits; the
    catch-all stays "everything else, per MX site"."""
    await _isolation(tmp_path, [{"name": "default", "connections": 10}])
