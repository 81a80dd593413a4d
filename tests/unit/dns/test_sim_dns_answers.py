"""The simulator's DNS answers, built from wire queries without sockets."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from postline.sim.dns import DNSServer, Zone


def ask(
    server: DNSServer, name: str, rdtype: str, transport: str = "udp", payload: int | None = None
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if payload is not None:
        query.use_edns(0, 0, payload)
    wire = server.respond(query.to_wire(), transport)
    assert wire is not None
    response = dns.message.from_wire(wire)
    assert response.id == query.id
    assert response.flags & dns.flags.QR
    assert response.flags & dns.flags.AA
    return response


def texts(response: dns.message.Message) -> list[str]:
    return sorted(rdata.to_text() for rrset in response.answer for rdata in rrset)


@pytest.fixture
def server() -> DNSServer:
    zone = Zone(
        mx={
            "Example.TEST.": [(10, "mx1.example.test"), (20, "MX2.example.test.")],
            "null.test": [(0, ".")],
            "bücher.example": [(5, "mx.bücher.example")],
        },
        a={"mx1.example.test": ["127.0.0.2"], "alias-target.test": ["127.0.0.7"]},
        aaaa={"mx1.example.test": ["::1"]},
        txt={"txt.test": ["v=spf1 -all"], "long.test": ["k" * 600]},
        cname={"alias.test": "alias-target.test", "dangling.test": "nowhere.test"},
        servfail={"broken.test"},
        blackhole={"silent.test"},
        ttl=120,
        negative_ttl=30,
    )
    return DNSServer(zone)


def test_mx_answer_is_authoritative_and_complete(server: DNSServer) -> None:
    response = ask(server, "example.test", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    assert texts(response) == ["10 mx1.example.test.", "20 mx2.example.test."]
    assert response.answer[0].ttl == 120


def test_names_are_case_insensitive_and_idna(server: DNSServer) -> None:
    # Compression may borrow the question's spelling for suffixes; DNS ignores case.
    upper = [t.lower() for t in texts(ask(server, "EXAMPLE.test", "MX"))]
    assert upper == texts(ask(server, "example.test.", "MX"))
    response = ask(server, "xn--bcher-kva.example", "MX")
    assert texts(response) == ["5 mx.xn--bcher-kva.example."]


def test_unknown_name_is_nxdomain_with_soa(server: DNSServer) -> None:
    response = ask(server, "nope.test", "MX")
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.answer == []
    soa = response.authority[0]
    assert soa.rdtype == dns.rdatatype.SOA
    assert soa.name.to_text() == "test."
    assert soa[0].minimum == 30  # the negative TTL


def test_known_name_without_type_is_nodata_with_soa(server: DNSServer) -> None:
    response = ask(server, "txt.test", "MX")
    assert response.rcode() == dns.rcode.NOERROR
    assert response.answer == []
    assert response.authority[0].rdtype == dns.rdatatype.SOA


def test_empty_non_terminal_exists(server: DNSServer) -> None:
    # Only mx1.example.test and deeper names own records, yet a parent name exists.
    zone = server.zone
    zone.a["host.sub.deep.test"] = ["127.0.0.9"]
    assert ask(server, "sub.deep.test", "A").rcode() == dns.rcode.NOERROR
    assert ask(server, "other.deep.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_null_mx(server: DNSServer) -> None:
    assert texts(ask(server, "null.test", "MX")) == ["0 ."]


def test_cname_is_followed(server: DNSServer) -> None:
    response = ask(server, "alias.test", "A")
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert texts(response) == ["127.0.0.7", "alias-target.test."]
    dangling = ask(server, "dangling.test", "A")
    assert dangling.rcode() == dns.rcode.NXDOMAIN
    assert dangling.answer[0].rdtype == dns.rdatatype.CNAME


def test_cname_loop_is_servfail(server: DNSServer) -> None:
    server.zone.cname.update({"loop1.test": "loop2.test", "loop2.test": "loop1.test"})
    assert ask(server, "loop1.test", "A").rcode() == dns.rcode.SERVFAIL


def test_servfail_and_blackhole(server: DNSServer) -> None:
    assert ask(server, "broken.test", "MX").rcode() == dns.rcode.SERVFAIL
    query = dns.message.make_query("silent.test", "MX")
    assert server.respond(query.to_wire()) is None
    assert server.count("silent.test", "MX") == 1
    assert server.queries == 1  # the SERVFAIL was answered, the blackholed query not


def test_long_txt_value_is_split_into_strings(server: DNSServer) -> None:
    (rrset,) = ask(server, "long.test", "TXT", transport="tcp").answer
    strings = rrset[0].strings
    assert [len(s) for s in strings] == [255, 255, 90]
    assert b"".join(strings) == b"k" * 600


def test_udp_answer_over_512_bytes_is_truncated(server: DNSServer) -> None:
    server.zone.txt["big.test"] = [f"{i:02d}" + "x" * 150 for i in range(8)]
    udp = ask(server, "big.test", "TXT")
    assert udp.flags & dns.flags.TC
    assert len(server.respond(dns.message.make_query("big.test", "TXT").to_wire()) or b"") <= 512
    tcp = ask(server, "big.test", "TXT", transport="tcp")
    assert not tcp.flags & dns.flags.TC
    assert len(tcp.answer[0]) == 8
    # A client announcing a large EDNS payload gets it all over UDP.
    edns = ask(server, "big.test", "TXT", payload=4096)
    assert not edns.flags & dns.flags.TC
    assert len(edns.answer[0]) == 8


def test_zone_changes_are_served_at_once(server: DNSServer) -> None:
    assert ask(server, "late.test", "A").rcode() == dns.rcode.NXDOMAIN
    server.zone.a["late.test"] = ["127.0.0.5"]
    assert texts(ask(server, "late.test", "A")) == ["127.0.0.5"]


def test_aaaa_and_any(server: DNSServer) -> None:
    assert texts(ask(server, "mx1.example.test", "AAAA")) == ["::1"]
    assert texts(ask(server, "mx1.example.test", "ANY")) == ["127.0.0.2", "::1"]


def test_garbage_is_ignored(server: DNSServer) -> None:
    assert server.respond(b"\x00\x01garbage") is None
    assert server.queries == 0


def test_bad_record_in_zone_gives_servfail(server: DNSServer) -> None:
    server.zone.a["bad.test"] = ["not-an-address"]
    assert ask(server, "bad.test", "A").rcode() == dns.rcode.SERVFAIL


def test_address_form() -> None:
    assert DNSServer(Zone(), "127.0.0.1", 5353).address == "127.0.0.1:5353"
    assert DNSServer(Zone(), "::1", 5353).address == "[::1]:5353"
