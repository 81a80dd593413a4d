"""The records check (postline.dkim.records.check) against the simulator's DNS server.

Records are reported missing, then ok once published, and wrong when what is published
differs; the zone is changed while the server runs, as a customer's DNS would be.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import dns.asyncresolver
import pytest

from postline.dkim import DkimKey, check, expected_records, make_resolver, new_key
from postline.dkim.records import DnsRecord, RecordStatus
from postline.sim.dns import DNSServer, Zone

DOMAIN = "shop.example"
SPF = "include:spf.postline.example"


@pytest.fixture(scope="module")
def rsa_key() -> DkimKey:
    return new_key(DOMAIN, "rsa-sha256", selector="pl202611r")


@pytest.fixture(scope="module")
def ed_key() -> DkimKey:
    return new_key(DOMAIN, "ed25519-sha256", selector="pl202611e")


@pytest.fixture
async def server() -> AsyncIterator[DNSServer]:
    async with DNSServer(Zone(ttl=1)) as dns_server:
        yield dns_server


@pytest.fixture
def resolver(server: DNSServer) -> dns.asyncresolver.Resolver:
    return make_resolver([server.address], timeout=2.0)


def plan(key: DkimKey, *, spf: str = SPF, return_path_cname: str | None = None) -> list[DnsRecord]:
    return expected_records(
        key.domain,
        key.selector,
        key.public_key,
        key.algorithm,
        spf=spf,
        bounce_domain="bounce.postline.example",
        bounce_mx="mx.postline.example",
        return_path_cname=return_path_cname,
        dmarc_rua="dmarc@shop.example",
    )


def publish(zone: Zone, records: list[DnsRecord]) -> None:
    for record in records:
        if record.type == "TXT":
            zone.txt.setdefault(record.name, []).append(record.value)
        elif record.type == "MX":
            preference, host = record.value.split()
            zone.mx[record.name] = [(int(preference), host)]
        else:
            zone.cname[record.name] = record.value


def by_purpose(statuses: list[RecordStatus]) -> dict[str, RecordStatus]:
    return {status.record.purpose: status for status in statuses}


async def test_missing_then_ok(
    server: DNSServer, resolver: dns.asyncresolver.Resolver, rsa_key: DkimKey
) -> None:
    records = plan(rsa_key)
    before = await check(records, resolver)
    assert [s.status for s in before] == ["missing"] * 4
    assert [s.record for s in before] == records
    dkim = before[0]
    assert dkim.fix == (
        f"publish TXT pl202611r._domainkey.shop.example with value "
        f"v=DKIM1; k=rsa; p={rsa_key.public_key}"
    )
    assert by_purpose(before)["spf"].fix == (
        "publish TXT shop.example with value v=spf1 include:spf.postline.example ~all"
    )
    assert "_dmarc.shop.example" in by_purpose(before)["dmarc"].fix
    assert by_purpose(before)["return_path"].fix == (
        "publish MX bounce.postline.example with value 10 mx.postline.example"
    )

    publish(server.zone, records)
    after = await check(records, resolver)
    assert [s.status for s in after] == ["ok"] * 4, [s.fix for s in after]
    assert all(s.fix == "" for s in after)
    # a 2048-bit key's record is longer than 255 bytes: it came back as several strings
    assert len(records[0].value) > 255
    assert after[0].found == (records[0].value,)


async def test_dkim_record_written_differently_is_ok(
    server: DNSServer, resolver: dns.asyncresolver.Resolver, ed_key: DkimKey, rsa_key: DkimKey
) -> None:
    ed, rsa = plan(ed_key)[0], plan(rsa_key)[0]
    p = ed_key.public_key
    server.zone.txt[ed.name] = [f"  p={p[:20]} {p[20:]} ;k = ed25519;v=DKIM1;  "]
    half = len(rsa_key.public_key) // 2
    server.zone.txt[rsa.name] = [
        f"k=rsa; t=s; p={rsa_key.public_key[:half]}\t{rsa_key.public_key[half:]}"
    ]
    statuses = await check([ed, rsa], resolver)
    assert [s.status for s in statuses] == ["ok", "ok"], [s.fix for s in statuses]


@pytest.mark.parametrize(
    ("published", "problem"),
    [
        ("v=DKIM1; k=ed25519; p={other}", "publishes a different public key"),
        ("v=DKIM1; k=rsa; p={p}", "has k=rsa, not k=ed25519"),
        ("v=DKIM1; k=ed25519; p=", "empty p= (the key is revoked)"),
        ("v=DKIM2; k=ed25519; p={p}", "has v=DKIM2"),
        ("v=DKIM1; k=ed25519", "has no p= tag"),
        ("v=DKIM1; k=ed25519; p={p}; p={p}", "not a valid DKIM key record"),
    ],
)
async def test_dkim_wrong(
    server: DNSServer,
    resolver: dns.asyncresolver.Resolver,
    ed_key: DkimKey,
    published: str,
    problem: str,
) -> None:
    record = plan(ed_key)[0]
    other = new_key(DOMAIN, "ed25519-sha256").public_key
    server.zone.txt[record.name] = [published.format(p=ed_key.public_key, other=other)]
    (status,) = await check([record], resolver)
    assert status.status == "wrong"
    assert problem in status.fix
    assert status.fix.endswith(f"replace it with the value {record.value}")


async def test_dkim_two_records(
    server: DNSServer, resolver: dns.asyncresolver.Resolver, ed_key: DkimKey
) -> None:
    record = plan(ed_key)[0]
    server.zone.txt[record.name] = [record.value, "v=DKIM1; k=ed25519; p=old"]
    (status,) = await check([record], resolver)
    assert status.status == "wrong"
    assert "has 2 TXT records" in status.fix
    assert set(status.found) == {record.value, "v=DKIM1; k=ed25519; p=old"}


@pytest.mark.parametrize(
    ("published", "status"),
    [
        ("v=spf1 include:spf.postline.example ~all", "ok"),
        ("v=spf1 mx a:mail.shop.example +include:SPF.postline.example -all", "ok"),
        ("v=spf1 ip4:192.0.2.0/24 include:_spf.google.com ~all", "wrong"),
        ("v=spf1 -all include:spf.postline.example", "wrong"),  # after all: never read
        ("v=spf1 ~include:spf.postline.example -all", "wrong"),
        ("v=spf1 include:_spf.shop.example -all", "ok"),  # through an include
        ("v=spf1 redirect=_spf.shop.example", "ok"),
        ("v=spf1 include:_loop.shop.example -all", "wrong"),  # bounded, not endless
    ],
)
async def test_spf(
    server: DNSServer,
    resolver: dns.asyncresolver.Resolver,
    ed_key: DkimKey,
    published: str,
    status: str,
) -> None:
    record = plan(ed_key)[1]
    server.zone.txt[DOMAIN] = ["google-site-verification=abc", published]
    server.zone.txt["_spf.shop.example"] = ["v=spf1 ip4:198.51.100.7 include:spf.postline.example"]
    server.zone.txt["_loop.shop.example"] = ["v=spf1 include:_loop.shop.example ~all"]
    (result,) = await check([record], resolver)
    assert result.status == status, result.fix
    assert result.found == (published,)
    if status == "wrong":
        assert result.fix.startswith(
            "your SPF record does not include include:spf.postline.example; add it"
        )


async def test_spf_suggestion_keeps_their_record(
    server: DNSServer, resolver: dns.asyncresolver.Resolver, ed_key: DkimKey
) -> None:
    record = plan(ed_key)[1]
    server.zone.txt[DOMAIN] = ["v=spf1 mx include:_spf.google.com -all"]
    (result,) = await check([record], resolver)
    assert result.fix.endswith(
        ": v=spf1 mx include:_spf.google.com include:spf.postline.example -all"
    )


async def test_spf_ip_networks(
    server: DNSServer, resolver: dns.asyncresolver.Resolver, ed_key: DkimKey
) -> None:
    record = plan(ed_key, spf="ip4:127.0.0.1")[1]
    assert record.value == "v=spf1 ip4:127.0.0.1 ~all"
    server.zone.txt[DOMAIN] = ["v=spf1 ip4:127.0.0.0/8 -all"]
    assert (await check([record], resolver))[0].status == "ok"
    server.zone.txt[DOMAIN] = ["v=spf1 ip4:127.0.0.2 -all"]
    assert (await check([record], resolver))[0].status == "wrong"


async def test_multiple_spf_records(
    server: DNSServer, resolver: dns.asyncresolver.Resolver, ed_key: DkimKey
) -> None:
    record = plan(ed_key)[1]
    server.zone.txt[DOMAIN] = [
        "v=spf1 include:spf.postline.example ~all",
        "v=spf1 include:_spf.google.com ~all",
    ]
    (result,) = await check([record], resolver)
    assert result.status == "wrong"
    assert "has 2 SPF records" in result.fix and "permerror" in result.fix
    assert len(result.found) == 2


@pytest.mark.parametrize(
    ("published", "status", "problem"),
    [
        (["v=DMARC1; p=none"], "ok", ""),
        (["v=DMARC1;p=reject;rua=mailto:x@other.example;pct=100"], "ok", ""),
        (["v=DMARC1; p=QUARANTINE"], "ok", ""),
        (["v=DMARC1; p=block"], "wrong", "has p=block, which is not none"),
        (["v=DMARC1; rua=mailto:x@shop.example"], "wrong", "has no valid p= tag"),
        (["v=DMARC1; p=none", "v=DMARC1; p=reject"], "wrong", "has 2 DMARC records"),
        (["some other text"], "missing", "publish TXT _dmarc.shop.example"),
    ],
)
async def test_dmarc(
    server: DNSServer,
    resolver: dns.asyncresolver.Resolver,
    ed_key: DkimKey,
    published: list[str],
    status: str,
    problem: str,
) -> None:
    record = plan(ed_key)[2]
    server.zone.txt["_dmarc.shop.example"] = published
    (result,) = await check([record], resolver)
    assert result.status == status
    assert problem in result.fix


async def test_return_path_mx(
    server: DNSServer, resolver: dns.asyncresolver.Resolver, ed_key: DkimKey
) -> None:
    record = plan(ed_key)[3]
    server.zone.mx["bounce.postline.example"] = [(10, "elsewhere.example")]
    (result,) = await check([record], resolver)
    assert result.status == "wrong"
    assert "names elsewhere.example, not mx.postline.example" in result.fix
    server.zone.mx["bounce.postline.example"] = [(0, ".")]
    (result,) = await check([record], resolver)
    assert result.status == "wrong" and "null MX" in result.fix
    server.zone.mx["bounce.postline.example"] = [(5, "MX.postline.example."), (9, "x.example")]
    assert (await check([record], resolver))[0].status == "ok"
    any_host = DnsRecord("MX", "bounce.postline.example", "", "return_path")
    assert (await check([any_host], resolver))[0].status == "ok"


async def test_return_path_cname(
    server: DNSServer, resolver: dns.asyncresolver.Resolver, ed_key: DkimKey
) -> None:
    record = plan(ed_key, return_path_cname="bounces.shop.example")[3]
    assert record == DnsRecord(
        "CNAME", "bounces.shop.example", "bounce.postline.example", "return_path"
    )
    assert (await check([record], resolver))[0].status == "missing"
    server.zone.cname["bounces.shop.example"] = "bounce.other.example"
    (result,) = await check([record], resolver)
    assert result.status == "wrong" and "points to bounce.other.example" in result.fix
    server.zone.cname["bounces.shop.example"] = "bounce.postline.example"
    assert (await check([record], resolver))[0].status == "ok"


async def test_failed_lookups_are_errors_not_missing(server: DNSServer, ed_key: DkimKey) -> None:
    records = plan(ed_key)
    server.zone.servfail.add(records[0].name)
    server.zone.blackhole.add("_dmarc.shop.example")
    resolver = make_resolver([server.address], timeout=0.5)
    statuses = await check(records, resolver)
    assert statuses[0].status == "error"
    assert "failed" in statuses[0].fix and "check again later" in statuses[0].fix
    assert statuses[2].status == "error"
    assert statuses[1].status == "missing"


async def test_dkim_key_delegated_by_cname(
    server: DNSServer, resolver: dns.asyncresolver.Resolver, ed_key: DkimKey
) -> None:
    record = plan(ed_key)[0]
    server.zone.cname[record.name] = "shop-example.keys.postline.example"
    server.zone.txt["shop-example.keys.postline.example"] = [record.value]
    (status,) = await check([record], resolver)
    assert status.status == "ok", status.fix
