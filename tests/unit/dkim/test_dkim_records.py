"""What a sender domain publishes (postline.dkim.records), without DNS."""

from __future__ import annotations

import dataclasses
import json

import dns.nameserver
import pytest

from postline.dkim import DnsRecord, RecordStatus, dkim_record, expected_records, make_resolver
from postline.dkim.records import _same_mechanism, _with_mechanisms, parse_tags
from postline.errors import ConfigError

P = "MCowBQYDK2VwAyEA" + "A" * 28


def test_expected_records() -> None:
    records = expected_records(
        "Shop.Example.",
        "pl202611r",
        P,
        "rsa-sha256",
        spf="include:spf.postline.example",
        bounce_domain="bounce.postline.example",
        bounce_mx="mx.postline.example",
        dmarc_rua="dmarc@shop.example",
    )
    assert records == [
        DnsRecord("TXT", "pl202611r._domainkey.shop.example", f"v=DKIM1; k=rsa; p={P}", "dkim"),
        DnsRecord("TXT", "shop.example", "v=spf1 include:spf.postline.example ~all", "spf"),
        DnsRecord(
            "TXT", "_dmarc.shop.example", "v=DMARC1; p=none; rua=mailto:dmarc@shop.example", "dmarc"
        ),
        DnsRecord("MX", "bounce.postline.example", "10 mx.postline.example", "return_path"),
    ]


def test_expected_records_variants() -> None:
    records = expected_records(
        "bücher.example",
        "pl202611e",
        P,
        "ed25519-sha256",
        spf="ip4:192.0.2.1  ip6:2001:db8::1",
        bounce_domain="bounce.postline.example",
        return_path_cname="bounces.bücher.example",
    )
    assert [r.purpose for r in records] == ["dkim", "spf", "dmarc", "return_path"]
    assert records[0].value == f"v=DKIM1; k=ed25519; p={P}"
    assert records[0].name == "pl202611e._domainkey.xn--bcher-kva.example"
    assert records[1].value == "v=spf1 ip4:192.0.2.1 ip6:2001:db8::1 ~all"
    assert records[2].value == "v=DMARC1; p=none"
    assert records[3] == DnsRecord(
        "CNAME", "bounces.xn--bcher-kva.example", "bounce.postline.example", "return_path"
    )
    no_bounce = expected_records("shop.example", "s", P, "rsa-sha256", spf="mx")
    assert len(no_bounce) == 3
    any_mx = expected_records(
        "shop.example", "s", P, "rsa-sha256", spf="mx", bounce_domain="b.example"
    )
    assert any_mx[3] == DnsRecord("MX", "b.example", "", "return_path")


@pytest.mark.parametrize("spf", ["", "v=spf1 include:x.example", "include:x.example ~all"])
def test_bad_spf_mechanism(spf: str) -> None:
    with pytest.raises(ConfigError, match="SPF"):
        expected_records("shop.example", "s", P, "rsa-sha256", spf=spf)


def test_bad_names() -> None:
    with pytest.raises(ConfigError):
        dkim_record("shop example", "s", P, "rsa-sha256")
    with pytest.raises(ConfigError):
        dkim_record("shop.example", "s s", P, "rsa-sha256")
    with pytest.raises(ConfigError, match="DMARC"):
        expected_records("shop.example", "s", P, "rsa-sha256", spf="mx", dmarc_rua="nobody")


def test_records_and_statuses_are_json() -> None:
    record = dkim_record("shop.example", "s", P, "rsa-sha256")
    status = RecordStatus(record, "missing", (), "publish it")
    data = json.loads(json.dumps(dataclasses.asdict(status)))
    assert data["record"]["name"] == "s._domainkey.shop.example"
    assert DnsRecord(**data["record"]) == record
    assert not status.ok


def test_parse_tags() -> None:
    assert parse_tags(" v = DKIM1 ;k=rsa;\tp=AB CD ; ") == {"v": "DKIM1", "k": "rsa", "p": "AB CD"}
    assert parse_tags("") == {}
    with pytest.raises(ValueError, match="twice"):
        parse_tags("p=a; p=b")
    with pytest.raises(ValueError, match="tag=value"):
        parse_tags("v=DKIM1; garbage")


@pytest.mark.parametrize(
    ("theirs", "ours", "same"),
    [
        ("include:spf.postline.example", "include:spf.postline.example", True),
        ("INCLUDE:Spf.Postline.Example.", "include:spf.postline.example", True),
        ("include:other.example", "include:spf.postline.example", False),
        ("ip4:192.0.2.0/24", "ip4:192.0.2.1", True),
        ("ip4:192.0.2.1", "ip4:192.0.2.0/24", False),
        ("ip4:198.51.100.0/24", "ip4:192.0.2.1", False),
        ("ip6:2001:db8::/32", "ip6:2001:db8::1", True),
        ("ip4:192.0.2.1", "ip6:2001:db8::1", False),
        ("a", "a", True),
    ],
)
def test_same_mechanism(theirs: str, ours: str, same: bool) -> None:
    assert _same_mechanism(theirs, ours) is same


def test_with_mechanisms() -> None:
    assert _with_mechanisms("v=spf1 mx -all", ["include:x"]) == "v=spf1 mx include:x -all"
    assert _with_mechanisms("v=spf1 mx", ["include:x"]) == "v=spf1 mx include:x"
    assert (
        _with_mechanisms("v=spf1 redirect=_spf.example", ["ip4:192.0.2.1"])
        == "v=spf1 ip4:192.0.2.1 redirect=_spf.example"
    )


def test_make_resolver() -> None:
    resolver = make_resolver(["127.0.0.1:5353", "[::1]:53", "192.0.2.1"], timeout=2.0)
    servers = resolver.nameservers
    assert all(isinstance(s, dns.nameserver.Do53Nameserver) for s in servers)
    assert [(s.address, s.port) for s in servers] == [  # type: ignore[union-attr]
        ("127.0.0.1", 5353),
        ("::1", 53),
        ("192.0.2.1", 53),
    ]
    assert resolver.lifetime == 2.0
    for bad in ("localhost:53", "127.0.0.1:0", "[::1]x"):
        with pytest.raises(ConfigError):
            make_resolver([bad])
    with pytest.raises(ConfigError):
        make_resolver(["127.0.0.1"], timeout=0)
