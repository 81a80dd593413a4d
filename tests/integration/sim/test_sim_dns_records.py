"""The standard configuration's DNS, queried with dnspython against the simulator."""

from __future__ import annotations

import asyncio

import dns.asyncresolver
import dns.resolver
import pytest

from postline.sim import DomainSpec, MXHostSpec, SimConfig, Simulator


def _resolver(sim: Simulator) -> dns.asyncresolver.Resolver:
    host, _, port = sim.dns_address.rpartition(":")
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.lifetime = 2.0
    return resolver


async def _mx(resolver: dns.asyncresolver.Resolver, name: str) -> list[tuple[int, str]]:
    answer = await resolver.resolve(name, "MX")
    return sorted((r.preference, r.exchange.to_text(omit_final_dot=True)) for r in answer)


async def _a(resolver: dns.asyncresolver.Resolver, name: str) -> list[str]:
    return sorted(r.address for r in await resolver.resolve(name, "A"))


@pytest.fixture
async def standard():
    sim = Simulator(SimConfig.standard(domains=50, seed=1))
    await sim.start()
    yield sim
    await sim.stop()


async def test_google_hosts_serve_gmail_and_workspace_domains(standard) -> None:
    resolver = _resolver(standard)
    google = [(5, "gmail-smtp-in.l.google.test"), (10, "alt1.gmail-smtp-in.l.google.test")]
    assert await _mx(resolver, "gmail.test") == google
    assert await _mx(resolver, "acme.test") == google  # Workspace: the same hosts
    for _, host in google:
        assert await _a(resolver, host) == [standard.addresses[host]]
    assert len(set(standard.addresses.values())) == len(standard.addresses)
    assert all(a.startswith("127.") and a != "127.0.0.1" for a in standard.addresses.values())


async def test_other_providers(standard) -> None:
    resolver = _resolver(standard)
    assert await _mx(resolver, "outlook.test") == [
        (10, "outlook-test.mail.protection.outlook.test")
    ]
    yahoo = await _mx(resolver, "aol.test")
    assert yahoo == await _mx(resolver, "yahoo.test")
    assert {h for _, h in yahoo} == {f"mta{i}.am0.yahoodns.test" for i in (5, 6, 7)}
    assert {h for _, h in await _mx(resolver, "icloud.test")} == {
        "mx01.mail.icloud.test",
        "mx02.mail.icloud.test",
    }


async def test_null_mx_nxdomain_implicit_and_dead_primary(standard) -> None:
    resolver = _resolver(standard)
    assert await _mx(resolver, "nullmx.test") == [(0, ".")]
    with pytest.raises(dns.resolver.NXDOMAIN):
        await resolver.resolve("nxdomain.test", "MX")
    with pytest.raises(dns.resolver.NoAnswer):
        await resolver.resolve("implicit.test", "MX")
    assert await _a(resolver, "implicit.test") == [standard.addresses["implicit.test"]]
    assert await _mx(resolver, "deadprimary.test") == [
        (10, "mx1.deadprimary.test"),
        (20, "mx2.deadprimary.test"),
    ]
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(
            standard.addresses["mx1.deadprimary.test"], standard.smtp_port
        )
    _, writer = await asyncio.open_connection(
        standard.addresses["mx2.deadprimary.test"], standard.smtp_port
    )
    writer.close()
    await writer.wait_closed()


async def test_servfail_and_blackhole_kinds(start_sim) -> None:
    sim = await start_sim(
        DomainSpec("broken.test", kind="servfail"), DomainSpec("silent.test", kind="blackhole")
    )
    resolver = _resolver(sim)
    resolver.lifetime = 0.5
    with pytest.raises(dns.resolver.NoNameservers):
        await resolver.resolve("broken.test", "MX")
    with pytest.raises(dns.resolver.LifetimeTimeout):
        await resolver.resolve("silent.test", "MX")


async def test_add_domain_after_start_on_a_running_host(start_sim, smtp, msg) -> None:
    sim = await start_sim(DomainSpec("one.test", mx=(MXHostSpec("mx.hosting.test"),)))
    sim.add_domain(DomainSpec("two.test", mx=(MXHostSpec("mx.hosting.test"),)))
    assert await _mx(_resolver(sim), "two.test") == [(10, "mx.hosting.test")]
    client = await smtp(sim, "mx.hosting.test")
    await client.ehlo()
    out = await client.send("a@sender.test", ["x@two.test"], msg("<two@x>"))
    assert out["data"].code == 250
    from postline.errors import ConfigError

    with pytest.raises(ConfigError, match="not running"):
        sim.add_domain(DomainSpec("three.test"))
    assert "three.test" not in sim.zone.mx
