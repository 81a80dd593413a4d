"""The records POST /v1/domains asks a sender domain to publish: an SPF suggestion only
when the node knows what it sends from (never a bare ``a``, which would authorise the
sender domain's own host), a note for every record not asked for, and TXT values cut
into the 255-byte strings DNS carries, with a zone-file line dnspython reads back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dns.name
import dns.rdatatype
import dns.zone

from support.node import add_tenant, api_client, running_node


async def _add(tmp_path: Path, extra: str, algorithm: str = "rsa-2048") -> dict[str, Any]:
    async with running_node(tmp_path, extra) as node:
        key = await add_tenant(node)
        async with api_client(node, key) as api:
            r = await api.post("/v1/domains", json={"domain": "shop.test", "algorithm": algorithm})
            assert r.status_code == 201, r.text
            return dict(r.json())


async def test_no_spf_suggestion_when_the_node_does_not_know_its_address(
    tmp_path: Path,
) -> None:
    body = await _add(tmp_path, '[delivery]\nhelo_hostname = "localhost"\n')
    assert {r["purpose"] for r in body["records"]} == {"dkim", "dmarc"}
    assert "v=spf1" not in str(body["records"])
    notes = {n["purpose"]: n for n in body["notes"]}
    assert set(notes) == {"spf", "return_path"}
    assert "[domains] spf" in notes["spf"]["fix"]
    assert "[bounce] domain" in notes["return_path"]["fix"]


async def test_spf_names_the_node_and_every_record_is_asked_for(tmp_path: Path) -> None:
    body = await _add(
        tmp_path,
        '[delivery]\nhelo_hostname = "mx1.sender.example"\n'
        '[bounce]\ndomain = "bounce.sender.example"\n',
    )
    spf = [r for r in body["records"] if r["purpose"] == "spf"]
    assert [r["value"] for r in spf] == ["v=spf1 a:mx1.sender.example ~all"]
    assert {r["purpose"] for r in body["records"]} == {"dkim", "spf", "dmarc", "return_path"}
    assert body["notes"] == []


async def test_configured_spf_wins(tmp_path: Path) -> None:
    body = await _add(
        tmp_path, '[delivery]\nhelo_hostname = "localhost"\n[domains]\nspf = "ip4:192.0.2.10"\n'
    )
    spf = [r["value"] for r in body["records"] if r["purpose"] == "spf"]
    assert spf == ["v=spf1 ip4:192.0.2.10 ~all"]
    assert [n["purpose"] for n in body["notes"]] == ["return_path"]


async def test_long_txt_values_come_in_255_byte_strings(tmp_path: Path) -> None:
    body = await _add(tmp_path, "", algorithm="rsa-4096")
    zone_lines = []
    for record in body["records"]:
        assert "".join(record["strings"]) == record["value"]
        assert all(0 < len(s.encode()) <= 255 for s in record["strings"])
        zone_lines.append(record["zone"])
    dkim = next(r for r in body["records"] if r["purpose"] == "dkim")
    assert len(dkim["value"]) > 255
    assert len(dkim["strings"]) >= 2
    # The zone-file lines are read back by an independent parser as the same strings.
    zone = dns.zone.from_text(
        "$TTL 3600\n@ IN SOA ns. host. 1 2 3 4 5\n@ IN NS ns.\n" + "\n".join(zone_lines) + "\n",
        origin="shop.test.",
        relativize=False,
        check_origin=False,
    )
    name = dns.name.from_text(dkim["name"])
    rdataset = zone.find_rdataset(name, dns.rdatatype.TXT)
    (rdata,) = list(rdataset)
    assert [s.decode() for s in rdata.strings] == dkim["strings"]
