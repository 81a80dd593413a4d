"""Connection limits hold on the wire, for one domain and for an MX rollup.

The simulated receivers have no connection limit of their own and answer a little slowly
(a tarpit before every reply), so each connection stays busy and a node without a limit
would open many. The sim counts concurrent connections from accept to close on its side:
that count may never exceed the node rule, with no tolerance. In the rollup case three
domains with three different MX host sets share one rule bucket (``mx`` pattern, scope
``rule``), so the limit spans sites the node keeps apart.
"""

from __future__ import annotations

import time
from pathlib import Path

from postline.sim.profiles import DomainSpec, MXHostSpec, Profile
from support.e2e import domain, internet

SLOW_REPLIES = Profile(name="slow-replies", tarpit=0.01)


async def test_domain_connection_limit_is_never_exceeded(tmp_path: Path) -> None:
    rule = {
        "name": "three",
        "domains": ["held.test"],
        "scope": "domain",
        "connections": 3,
        # Short connections: every slot is closed and opened again many times.
        "messages_per_connection": 10,
    }
    async with internet(tmp_path, [domain("held.test", SLOW_REPLIES)], rules=[rule]) as net:
        t0 = time.monotonic()
        await net.send_many([f"user{i}@held.test" for i in range(300)])
        counts = await net.settle(300, timeout=30)
        elapsed = time.monotonic() - t0
        assert counts == {"delivered": 300}

        report = net.sim.report()
        assert report.accepted_by_domain == {"held.test": 300}
        assert report.duplicate_count == 0
        by_domain = report.connections_by_domain["held.test"]
        by_host = report.connections_by_host["mx1.held.test"]
        print(
            f"\nconnections = 3: 300 delivered in {elapsed:.2f}s; sim peak "
            f"{by_domain.peak} concurrent (domain), {by_host.peak} (host); "
            f"{by_domain.opened} connections opened"
        )
        assert by_domain.peak <= 3
        assert by_host.peak <= 3
        # The limit is used: more than one connection carried the mail at once, and
        # slots were handed over from closed connections to new ones.
        assert by_domain.peak > 1
        assert by_domain.opened >= 300 // 10


SHARED = Profile(name="shared", tarpit=0.01)
MX1 = "mx1.shared.test"
MX2 = "mx2.shared.test"
MX3 = "mx3.shared.test"
ROLLUP_DOMAINS = [
    # Three MX host sets, hence three sites on the node, all matched by one rule.
    DomainSpec("one.test", mx=(MXHostSpec(MX1, 10), MXHostSpec(MX2, 20)), profile=SHARED),
    DomainSpec("two.test", mx=(MXHostSpec(MX2, 10), MXHostSpec(MX3, 20)), profile=SHARED),
    DomainSpec("three.test", mx=(MXHostSpec(MX3, 10),), profile=SHARED),
]


async def test_mx_rollup_shares_one_connection_limit(tmp_path: Path) -> None:
    for spec in ROLLUP_DOMAINS:
        assert spec.provider is None  # the sim joins them into one provider by shared hosts
    rule = {
        "name": "shared",
        "mx": ["*.shared.test"],
        "scope": "rule",
        "connections": 4,
        # Short connections: slots change hands between the sites many times.
        "messages_per_connection": 10,
    }
    async with internet(tmp_path, ROLLUP_DOMAINS, rules=[rule]) as net:
        providers = {net.sim.hosts[h].provider for h in (MX1, MX2, MX3)}
        assert len(providers) == 1, providers
        (provider,) = providers
        addresses = [
            f"user{i}@{d}" for i in range(100) for d in ("one.test", "two.test", "three.test")
        ]
        t0 = time.monotonic()
        await net.send_many(addresses)
        counts = await net.settle(300, timeout=30)
        elapsed = time.monotonic() - t0
        assert counts == {"delivered": 300}

        report = net.sim.report()
        assert report.accepted_by_domain == {"one.test": 100, "three.test": 100, "two.test": 100}
        assert report.duplicate_count == 0
        peak = report.connections_by_provider[provider].peak
        hosts = {h: report.connections_by_host[h] for h in (MX1, MX2, MX3)}
        print(
            f"\nrollup connections = 4 over 3 sites: 300 delivered in {elapsed:.2f}s; sim peak "
            f"{peak} concurrent (provider {provider}); per host "
            + ", ".join(f"{h} peak {s.peak}/opened {s.opened}" for h, s in hosts.items())
        )
        assert peak <= 4
        # The rule bucket is one for the three sites: the node's sites all use it.
        engine = net.node.engine
        assert engine is not None
        sites = [s for s in engine.sites if s.destination.rule.name == "shared"]
        assert len(sites) == 3
        assert len({s.bucket for s in sites}) == 1
        # Each site delivered through its preferred host; slots were used in parallel.
        assert {r.host for r in report.records if r.domain == "one.test"} == {MX1}
        assert {r.host for r in report.records if r.domain == "two.test"} == {MX2}
        assert {r.host for r in report.records if r.domain == "three.test"} == {MX3}
        assert peak > 1
