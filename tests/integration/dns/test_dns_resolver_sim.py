"""The resolver against the simulator's DNS server on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
import uvloop

from postline.dns import DNSTemporaryError, Resolver
from postline.sim.dns import DNSServer, Zone


def make_zone() -> Zone:
    return Zone(
        mx={
            "example.test": [(20, "mx2.example.test"), (10, "mx1.example.test")],
            "spread.test": [
                (10, "a.spread.test"),
                (10, "b.spread.test"),
                (10, "c.spread.test"),
                (20, "backup.spread.test"),
            ],
            "null.test": [(0, ".")],
            "dead-hosts.test": [(10, "gone.dead-hosts.test")],
            "half.test": [(10, "ok.half.test"), (20, "broken.half.test")],
            "failing-hosts.test": [(10, "broken.failing-hosts.test")],
            "alias-mx.test": [(10, "alias.alias-mx.test")],
            "literal-mx.test": [(10, "192.0.2.1")],
            "bücher.example": [(5, "mx.bücher.example")],
        },
        a={
            "mx1.example.test": ["127.0.0.11"],
            "mx2.example.test": ["127.0.0.12", "127.0.0.13"],
            "a.spread.test": ["127.0.1.1"],
            "b.spread.test": ["127.0.1.2"],
            "c.spread.test": ["127.0.1.3"],
            "backup.spread.test": ["127.0.1.4"],
            "implicit.test": ["127.0.0.20"],
            "ok.half.test": ["127.0.0.30"],
            "real.alias-mx.test": ["127.0.0.40"],
            "mx.xn--bcher-kva.example": ["127.0.0.50"],
        },
        aaaa={"mx1.example.test": ["::1"]},
        txt={
            "txt-only.test": ["v=spf1 -all"],
            "_dmarc.example.test": ["v=DMARC1; p=reject", "second record"],
            "dkim.example.test": ["p=" + "A" * 400],
            "big.test": [f"record {i:02d} " + "x" * 120 for i in range(12)],
        },
        cname={"alias.alias-mx.test": "real.alias-mx.test"},
        servfail={"servfail.test", "broken.half.test", "broken.failing-hosts.test", "sf-txt.test"},
        blackhole={"blackhole.test"},
    )


@pytest.fixture
async def server() -> AsyncIterator[DNSServer]:
    async with DNSServer(make_zone()) as srv:
        yield srv


@pytest.fixture
async def resolver(server: DNSServer) -> AsyncIterator[Resolver]:
    res = Resolver([server.address], timeout=1.0)
    yield res
    await res.aclose()


async def test_mx_by_preference_with_addresses(resolver: Resolver) -> None:
    result = await resolver.mx("Example.TEST")
    assert result.status == "ok"
    assert result.domain == "example.test"
    assert not result.implicit
    assert [(h.preference, h.name) for h in result.hosts] == [
        (10, "mx1.example.test"),
        (20, "mx2.example.test"),
    ]
    assert result.hosts[0].addresses == ("127.0.0.11",)  # no AAAA unless ipv6=True
    assert sorted(result.hosts[1].addresses) == ["127.0.0.12", "127.0.0.13"]
    assert result.site == "mx1.example.test,mx2.example.test"


async def test_ipv6_adds_aaaa(server: DNSServer) -> None:
    resolver = Resolver([server.address], timeout=1.0, ipv6=True)
    result = await resolver.mx("example.test")
    assert result.hosts[0].addresses == ("127.0.0.11", "::1")
    assert await resolver.addresses("mx1.example.test") == ("127.0.0.11", "::1")


async def test_equal_preference_is_shuffled_but_site_stable(resolver: Resolver) -> None:
    orders = set()
    sites = set()
    for _ in range(40):
        result = await resolver.mx("spread.test")
        names = [h.name for h in result.hosts]
        assert names[-1] == "backup.spread.test"
        orders.add(tuple(names[:3]))
        sites.add(result.site)
    assert len(orders) > 1
    assert sites == {"a.spread.test,b.spread.test,backup.spread.test,c.spread.test"}


async def test_null_mx(resolver: Resolver) -> None:
    result = await resolver.mx("null.test")
    assert result.status == "null_mx"
    assert result.permanent
    assert result.hosts == ()
    assert "null MX" in result.detail


async def test_nxdomain(resolver: Resolver) -> None:
    result = await resolver.mx("no-such-domain.test")
    assert result.status == "nxdomain"
    assert result.permanent
    assert "NXDOMAIN" in result.detail


async def test_implicit_mx_from_a(resolver: Resolver) -> None:
    result = await resolver.mx("implicit.test")
    assert result.status == "ok"
    assert result.implicit
    assert [(h.preference, h.name, h.addresses) for h in result.hosts] == [
        (0, "implicit.test", ("127.0.0.20",))
    ]
    assert result.site == "implicit.test"


async def test_no_mx_no_a_is_no_mail(resolver: Resolver) -> None:
    result = await resolver.mx("txt-only.test")
    assert result.status == "no_mail"
    assert result.detail == "no MX or A records"


async def test_mx_hosts_without_addresses_is_no_mail(resolver: Resolver) -> None:
    result = await resolver.mx("dead-hosts.test")
    assert result.status == "no_mail"
    assert "gone.dead-hosts.test (NXDOMAIN)" in result.detail


async def test_servfail_is_temp_fail(resolver: Resolver, server: DNSServer) -> None:
    result = await resolver.mx("servfail.test")
    assert result.status == "temp_fail"
    assert not result.permanent
    assert f"SERVFAIL from {server.address}" in result.detail


async def test_mx_hosts_that_fail_temporarily(resolver: Resolver) -> None:
    result = await resolver.mx("failing-hosts.test")
    assert result.status == "temp_fail"
    assert "broken.failing-hosts.test" in result.detail
    half = await resolver.mx("half.test")
    assert half.status == "ok"
    assert [h.name for h in half.hosts] == ["ok.half.test"]


async def test_partial_result_is_cached_only_briefly(server: DNSServer) -> None:
    resolver = Resolver([server.address], timeout=1.0, temp_fail_ttl=0.2)
    assert [h.name for h in (await resolver.mx("half.test")).hosts] == ["ok.half.test"]
    server.zone.servfail.discard("broken.half.test")
    server.zone.a["broken.half.test"] = ["127.0.0.31"]
    assert len((await resolver.mx("half.test")).hosts) == 1  # still cached
    await asyncio.sleep(0.3)
    assert len((await resolver.mx("half.test")).hosts) == 2


async def test_blackhole_is_temp_fail_within_timeout(server: DNSServer) -> None:
    resolver = Resolver([server.address], timeout=0.3)
    started = time.monotonic()
    result = await resolver.mx("blackhole.test")
    elapsed = time.monotonic() - started
    assert result.status == "temp_fail"
    assert "no answer within 0.3 s" in result.detail
    assert 0.25 <= elapsed < 0.6
    assert server.count("blackhole.test", "MX") >= 2  # dnspython tried more than once


async def test_refused_port_is_temp_fail() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there now: the kernel refuses the datagram.
    resolver = Resolver([f"127.0.0.1:{port}"], timeout=0.5)
    result = await resolver.mx("example.test")
    assert result.status == "temp_fail"
    assert result.detail.startswith("MX example.test: ")


async def test_positive_cache_hit(resolver: Resolver, server: DNSServer) -> None:
    first = await resolver.mx("example.test")
    answered = server.queries
    assert answered == 3  # MX, then A of each exchanger
    second = await resolver.mx("example.test")
    assert server.queries == answered
    assert second.site == first.site
    assert resolver.stats["hits"] >= 1
    assert resolver.stats["queries"] == 3
    await resolver.addresses("mx1.example.test")  # filled by the MX lookup
    assert server.queries == answered


async def test_ttl_is_clamped_to_max_ttl_and_expires(server: DNSServer) -> None:
    resolver = Resolver([server.address], timeout=1.0, min_ttl=0.05, max_ttl=0.2)
    await resolver.mx("example.test")
    before = server.count("example.test", "MX")
    await resolver.mx("example.test")
    assert server.count("example.test", "MX") == before
    await asyncio.sleep(0.3)  # the zone says 300 s; max_ttl says 0.2 s
    await resolver.mx("example.test")
    assert server.count("example.test", "MX") == before + 1


async def test_ttl_is_raised_to_min_ttl() -> None:
    zone = make_zone()
    zone.ttl = 0
    async with DNSServer(zone) as server:
        resolver = Resolver([server.address], timeout=1.0, min_ttl=0.3, max_ttl=10)
        await resolver.mx("example.test")
        await resolver.mx("example.test")
        assert server.count("example.test", "MX") == 1
        await asyncio.sleep(0.4)
        await resolver.mx("example.test")
        assert server.count("example.test", "MX") == 2


async def test_negative_cache(server: DNSServer) -> None:
    resolver = Resolver([server.address], timeout=1.0, min_ttl=0.0, negative_ttl=0.3)
    assert (await resolver.mx("later.test")).status == "nxdomain"
    server.zone.a["later.test"] = ["127.0.0.60"]
    assert (await resolver.mx("later.test")).status == "nxdomain"  # cached
    assert server.count("later.test", "MX") == 1
    await asyncio.sleep(0.4)
    result = await resolver.mx("later.test")
    assert result.status == "ok"
    assert result.implicit


async def test_soa_minimum_shortens_negative_cache() -> None:
    zone = make_zone()
    zone.negative_ttl = 0  # the zone asks resolvers not to keep negative answers
    async with DNSServer(zone) as server:
        resolver = Resolver([server.address], timeout=1.0, min_ttl=0.2, negative_ttl=300)
        await resolver.mx("null-ish.test")
        await resolver.mx("null-ish.test")
        assert server.count("null-ish.test", "MX") == 1  # min_ttl still holds it
        await asyncio.sleep(0.3)
        await resolver.mx("null-ish.test")
        assert server.count("null-ish.test", "MX") == 2  # not 300 s


async def test_temp_fail_is_cached_for_temp_fail_ttl(server: DNSServer) -> None:
    resolver = Resolver([server.address], timeout=1.0, temp_fail_ttl=0.2)
    assert (await resolver.mx("servfail.test")).status == "temp_fail"
    assert (await resolver.mx("servfail.test")).status == "temp_fail"
    assert server.count("servfail.test", "MX") == 1
    server.zone.servfail.discard("servfail.test")
    server.zone.mx["servfail.test"] = [(10, "mx1.example.test")]
    await asyncio.sleep(0.3)
    assert (await resolver.mx("servfail.test")).status == "ok"


async def test_single_flight(resolver: Resolver, server: DNSServer) -> None:
    server.zone.delay["example.test"] = 0.1  # keep the first query in flight a while
    results = await asyncio.gather(*(resolver.mx("example.test") for _ in range(50)))
    assert server.count("example.test", "MX") == 1
    assert server.count("mx1.example.test", "A") == 1
    assert {r.site for r in results} == {"mx1.example.test,mx2.example.test"}
    assert resolver.stats["shared"] == 49


async def test_cancelled_caller_does_not_cancel_shared_lookup(
    resolver: Resolver, server: DNSServer
) -> None:
    server.zone.delay["example.test"] = 0.2
    first = asyncio.create_task(resolver.mx("example.test"))
    second = asyncio.create_task(resolver.mx("example.test"))
    await asyncio.sleep(0.05)
    first.cancel()
    result = await second
    assert first.cancelled()
    assert result.status == "ok"
    assert server.count("example.test", "MX") == 1


async def test_idn_domain(resolver: Resolver, server: DNSServer) -> None:
    result = await resolver.mx("BÜCHER.example")
    assert result.status == "ok"
    assert result.domain == "xn--bcher-kva.example"
    assert result.hosts[0].name == "mx.xn--bcher-kva.example"
    assert result.hosts[0].addresses == ("127.0.0.50",)
    again = await resolver.mx("xn--bcher-kva.example.")
    assert again.site == result.site
    assert server.count("xn--bcher-kva.example", "MX") == 1  # same cache key


async def test_mx_pointing_at_a_cname(resolver: Resolver) -> None:
    result = await resolver.mx("alias-mx.test")
    assert result.status == "ok"
    assert result.hosts[0].name == "alias.alias-mx.test"
    assert result.hosts[0].addresses == ("127.0.0.40",)


async def test_mx_pointing_at_an_ip_literal_does_not_crash(resolver: Resolver) -> None:
    result = await resolver.mx("literal-mx.test")
    assert result.status == "no_mail"
    assert "192.0.2.1" in result.detail


async def test_txt(resolver: Resolver) -> None:
    records = await resolver.txt("_dmarc.example.test")
    assert sorted(records or []) == ["second record", "v=DMARC1; p=reject"]
    assert await resolver.txt("dkim.example.test") == ["p=" + "A" * 400]  # 3 strings joined
    assert await resolver.txt("no-such-name.test") is None
    assert await resolver.txt("example.test") is None  # exists, no TXT
    with pytest.raises(DNSTemporaryError, match="SERVFAIL"):
        await resolver.txt("sf-txt.test")


async def test_truncated_answer_is_retried_over_tcp(resolver: Resolver, server: DNSServer) -> None:
    records = await resolver.txt("big.test")
    assert records is not None
    assert sorted(records) == sorted(make_zone().txt["big.test"])
    assert server.count("big.test", "TXT", "udp") == 1
    assert server.count("big.test", "TXT", "tcp") == 1


async def test_clear(resolver: Resolver, server: DNSServer) -> None:
    await resolver.mx("example.test")
    resolver.clear()
    await resolver.mx("example.test")
    assert server.count("example.test", "MX") == 2


async def test_cache_is_bounded(server: DNSServer) -> None:
    resolver = Resolver([server.address], timeout=1.0, max_entries=2)
    for domain in ("example.test", "null.test", "implicit.test"):
        await resolver.mx(domain)
    await resolver.mx("implicit.test")
    assert server.count("implicit.test", "MX") == 1
    await resolver.mx("example.test")  # the oldest entry was dropped
    assert server.count("example.test", "MX") == 2


async def test_addresses(resolver: Resolver) -> None:
    assert sorted(await resolver.addresses("mx2.example.test")) == ["127.0.0.12", "127.0.0.13"]
    assert await resolver.addresses("nowhere.example.test") == ()
    assert await resolver.addresses("servfail.test") == ()


def test_works_under_uvloop() -> None:
    async def main() -> tuple[str, int, list[str] | None]:
        async with DNSServer(make_zone()) as server:
            resolver = Resolver([server.address], timeout=1.0)
            result = await resolver.mx("example.test")
            big = await resolver.txt("big.test")  # UDP, then TCP
            blackholed = await Resolver([server.address], timeout=0.2).mx("blackhole.test")
            assert blackholed.status == "temp_fail"
            return result.site, server.count(transport="tcp"), big

    site, tcp_queries, big = uvloop.run(main())
    assert site == "mx1.example.test,mx2.example.test"
    assert tcp_queries == 1
    assert big is not None
    assert len(big) == 12
