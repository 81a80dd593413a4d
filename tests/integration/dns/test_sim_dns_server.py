"""The simulator's DNS server on real loopback sockets, checked with dnspython as a client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.nameserver
import dns.rcode
import dns.resolver
import pytest

from postline.sim.dns import DNSServer, Zone


@pytest.fixture
async def server() -> AsyncIterator[DNSServer]:
    zone = Zone(
        mx={"example.test": [(10, "mx1.example.test")]},
        a={"mx1.example.test": ["127.0.0.2"]},
        txt={"big.test": [f"{i:02d}" + "y" * 100 for i in range(10)]},
        blackhole={"silent.test"},
        ttl=77,
        negative_ttl=11,
    )
    async with DNSServer(zone) as srv:
        yield srv


def stub(server: DNSServer) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(server.host, server.port)]
    resolver.lifetime = 1.0
    return resolver


async def test_udp_and_tcp_share_the_port(server: DNSServer) -> None:
    assert server.port > 0
    assert server.address == f"127.0.0.1:{server.port}"
    query = dns.message.make_query("example.test", "MX")
    udp = await dns.asyncquery.udp(query, server.host, port=server.port, timeout=1)
    tcp = await dns.asyncquery.tcp(query, server.host, port=server.port, timeout=1)
    assert udp.answer == tcp.answer
    assert udp.answer[0][0].to_text() == "10 mx1.example.test."
    assert server.queries == 2
    assert server.count("example.test", "MX", "udp") == 1
    assert server.count("example.test", "MX", "tcp") == 1


async def test_stub_resolver_accepts_answers(server: DNSServer) -> None:
    resolver = stub(server)
    answer = await resolver.resolve("example.test", "MX")
    assert answer.rrset is not None
    assert answer.chaining_result.minimum_ttl == 77
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("nope.test", "A")
    nodata = await resolver.resolve("example.test", "A", raise_on_no_answer=False)
    assert nodata.rrset is None
    assert nodata.chaining_result.minimum_ttl == 11  # SOA MINIMUM (RFC 2308)


async def test_truncated_udp_answer_is_completed_over_tcp(server: DNSServer) -> None:
    query = dns.message.make_query("big.test", "TXT")
    udp = await dns.asyncquery.udp(query, server.host, port=server.port, timeout=1)
    assert udp.flags & dns.flags.TC
    response, used_tcp = await dns.asyncquery.udp_with_fallback(
        query, server.host, port=server.port, timeout=1
    )
    assert used_tcp
    assert len(response.answer[0]) == 10


async def test_several_queries_on_one_tcp_connection(server: DNSServer) -> None:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        queries = [dns.message.make_query(n, "A") for n in ("mx1.example.test", "nope.test")]
        writer.write(b"".join(q.to_wire(prepend_length=True) for q in queries))
        await writer.drain()
        for query in queries:
            size = int.from_bytes(await reader.readexactly(2), "big")
            response = dns.message.from_wire(await reader.readexactly(size))
            assert response.id == query.id
        assert server.count(transport="tcp") == 2
    finally:
        writer.close()
        await writer.wait_closed()


async def test_stop_closes_open_connections() -> None:
    zone = Zone(blackhole={"silent.test"})
    server = DNSServer(zone)
    await server.start()
    reader, writer = await asyncio.open_connection(server.host, server.port)
    writer.write(dns.message.make_query("silent.test", "A").to_wire(prepend_length=True))
    await writer.drain()
    while server.count("silent.test") == 0:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(server.stop(), 2)
    assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, never answered
    writer.close()
    await writer.wait_closed()


async def test_blackhole_times_out(server: DNSServer) -> None:
    query = dns.message.make_query("silent.test", "A")
    with pytest.raises(dns.exception.Timeout):
        await dns.asyncquery.udp(query, server.host, port=server.port, timeout=0.2)
    assert server.queries == 0
    assert server.count("silent.test", "A") == 1


async def test_delay(server: DNSServer) -> None:
    server.zone.delay["example.test"] = 0.2
    query = dns.message.make_query("example.test", "MX")
    started = time.monotonic()
    response = await dns.asyncquery.udp(query, server.host, port=server.port, timeout=1)
    assert time.monotonic() - started >= 0.18
    assert response.answer


async def test_runtime_records(server: DNSServer) -> None:
    resolver = stub(server)
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("new.test", "A")
    server.zone.a["new.test"] = ["127.0.0.8"]
    answer = await resolver.resolve("new.test", "A")
    assert [r.to_text() for r in answer] == ["127.0.0.8"]
    server.zone.servfail.add("new.test")
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver.resolve("new.test", "A")


async def test_explicit_port_and_restart() -> None:
    first = DNSServer(Zone(a={"x.test": ["127.0.0.1"]}))
    await first.start()
    port = first.port
    with pytest.raises(RuntimeError):
        await first.start()
    await first.stop()
    second = DNSServer(first.zone, port=port)
    await second.start()
    try:
        assert second.port == port
        response = await dns.asyncquery.tcp(
            dns.message.make_query("x.test", "A"), "127.0.0.1", port=port, timeout=1
        )
        assert response.rcode() == dns.rcode.NOERROR
    finally:
        await second.stop()


async def test_servers_get_distinct_ports() -> None:
    async with DNSServer(Zone()) as one, DNSServer(Zone()) as two:
        assert one.port != two.port
