"""Sender domains end to end: records reported missing then ok once the sim's DNS has
them, mail signed by the verified domain and checked by an independent verifier
(Mail::DKIM), unverified domains refused when required, and one-click List-Unsubscribe
headers on marketing mail, covered by the signature."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from typing import Any

import httpx

from postline.sim.runner import Simulator
from support.e2e import E2E, FAST_RETRY, domain, internet
from support.mail_dkim import mail_dkim, require_mail_dkim
from support.node import add_tenant, api_client
from support.smtp import capture

NODE = FAST_RETRY + '[bounce]\ndomain = "bounce.postline.test"\n'


def publish(sim: Simulator, records: list[dict[str, Any]]) -> None:
    for r in records:
        if r["type"] == "TXT":
            sim.zone.txt.setdefault(r["name"], []).append(r["value"])
        elif r["type"] == "MX":
            pref, _, host = r["value"].partition(" ")
            sim.zone.mx.setdefault(r["name"], []).append((int(pref), host))
            sim.zone.a.setdefault(host.rstrip("."), ["127.0.0.1"])
        elif r["type"] == "CNAME":
            sim.zone.cname[r["name"]] = r["value"]


async def add_and_verify(net: E2E, name: str, **extra: Any) -> dict[str, Any]:
    r = await net.api.post("/v1/domains", json={"domain": name, **extra})
    assert r.status_code == 201, r.text
    body = r.json()
    assert "private" not in r.text.lower()
    assert {x["purpose"] for x in body["records"]} >= {"dkim", "spf", "dmarc", "return_path"}
    assert body["status"] == "pending"
    first = (await net.api.post(f"/v1/domains/{name}/verify")).json()
    assert first["status"] == "pending"
    assert {x["status"] for x in first["records"]} == {"missing"}, first["records"]
    assert all(x["fix"] for x in first["records"])
    publish(net.sim, body["records"])
    second = (await net.api.post(f"/v1/domains/{name}/verify")).json()
    assert second["status"] == "verified", second["records"]
    assert {x["status"] for x in second["records"]} == {"ok"}, second["records"]
    return dict(second)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def test_records_verify_and_mail_is_signed(tmp_path: Path) -> None:
    require_mail_dkim()
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        seen = capture(net.sim)
        await net.send("ann@inbox.test", **{"from": "orders@shop.test"})
        await net.settle(1)
        assert b"DKIM-Signature" not in seen[0].content  # no verified domain yet
        await add_and_verify(net, "shop.test")
        await net.send(
            "bob@inbox.test",
            **{"from": "Shop <orders@mail.shop.test>", "subject": "Grüße", "html": "<p>hi</p>"},
        )
        await net.settle(2)
        signed = seen[1].content
        assert signed.startswith(b"DKIM-Signature:")
        assert b"d=shop.test" in signed.split(b"\r\n\r\n", 1)[0]
        result = await mail_dkim(signed, *_host_port(net.sim.dns_address))
        assert result.startswith("pass"), result
        tampered = signed.replace(b"Gr", b"gr", 1) if b"Subject: Gr" in signed else signed + b"x"
        assert not (await mail_dkim(tampered, *_host_port(net.sim.dns_address))).startswith("pass")


async def test_ed25519_key_and_rotation(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        body = await add_and_verify(net, "shop.test", algorithm="ed25519")
        (key,) = body["keys"]
        assert key["algorithm"] == "ed25519-sha256" and key["state"] == "active"
        rotated = (await net.api.post("/v1/domains/shop.test/rotate", json={})).json()
        states = {k["selector"]: k["state"] for k in rotated["keys"]}
        assert sorted(states.values()) == ["active", "pending"]
        publish(net.sim, [r for r in rotated["records"] if r["purpose"] == "dkim"])
        after = (await net.api.post("/v1/domains/shop.test/verify")).json()
        states = {k["selector"]: k["state"] for k in after["keys"]}
        assert sorted(states.values()) == ["active", "retired"]
        assert states[key["selector"]] == "retired"
        # Another tenant cannot see or change it.
        other = await net.node.store.create_tenant("other")
        from postline.tenants import generate_key, hash_key, key_prefix

        k2 = generate_key()
        await net.node.store.add_api_key(other.id, hash_key(k2), key_prefix(k2))
        assert net.node.api_address is not None
        h, p = net.node.api_address
        async with httpx.AsyncClient(
            base_url=f"http://{h}:{p}", headers={"Authorization": f"Bearer {k2}"}
        ) as api2:
            assert (await api2.get("/v1/domains/shop.test")).status_code == 404
            assert (await api2.delete("/v1/domains/shop.test")).status_code == 404
            assert (await api2.get("/v1/domains")).json() == {"data": []}


async def test_unverified_sender_domain_is_refused_when_required(tmp_path: Path) -> None:
    extra = NODE + "[domains]\nrequire_verified = true\n"
    async with internet(tmp_path, [domain("inbox.test")], node_extra=extra) as net:
        r = await net.api.post(
            "/v1/messages",
            json={"from": "a@shop.test", "to": ["x@inbox.test"], "subject": "s", "text": "t"},
        )
        assert r.status_code == 422
        problem = r.json()
        assert "shop.test" in problem["detail"] and "/v1/domains" in problem["fix"]
        await add_and_verify(net, "shop.test")
        sent = await net.send("x@inbox.test", **{"from": "a@shop.test"})
        assert sent["recipients"][0]["status"] == "queued"


async def test_marketing_mail_has_signed_one_click_unsubscribe(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        seen = capture(net.sim)
        await add_and_verify(net, "shop.test")
        sent = await net.send(
            ["ann@inbox.test", "bob@inbox.test"],
            **{"from": "news@shop.test", "stream": "marketing"},
        )
        await net.send("carl@inbox.test", **{"from": "news@shop.test"})
        await net.settle(3)
        by_rcpt = {s.rcpt_tos[0]: s for s in seen}
        assert all(len(s.rcpt_tos) == 1 for s in seen)
        msg = email.message_from_bytes(
            by_rcpt["ann@inbox.test"].content, policy=email.policy.default
        )
        lu = str(msg["List-Unsubscribe"])
        assert lu.startswith("<http") and "mailto:u-" in lu
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        dkim = str(msg["DKIM-Signature"]).lower().replace(" ", "")
        assert "list-unsubscribe" in dkim and "list-unsubscribe-post" in dkim
        other = email.message_from_bytes(by_rcpt["bob@inbox.test"].content)
        assert other["List-Unsubscribe"] != msg["List-Unsubscribe"]  # names its recipient
        transactional = email.message_from_bytes(by_rcpt["carl@inbox.test"].content)
        assert transactional["List-Unsubscribe"] is None
        # The link works without credentials.
        url = lu.split(">", 1)[0].lstrip("<")
        async with httpx.AsyncClient() as anonymous:
            r = await anonymous.post(url, data={"List-Unsubscribe": "One-Click"})
        assert r.status_code == 200, r.text
        again = await net.send("ann@inbox.test", **{"from": "news@shop.test"})
        assert again["recipients"][0]["status"] == "suppressed"
        events = await net.events(type="unsubscribed")
        assert [(e["message_id"], e["recipient"]) for e in events] == [
            (sent["id"], "ann@inbox.test")
        ]


async def test_two_tenants_can_both_verify_one_domain(tmp_path: Path) -> None:
    """Two tenants that send for one domain (two teams of one company) get two selectors,
    so both keys can be published and both tenants verify."""
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        other_key = await add_tenant(net.node, "globex")
        async with api_client(net.node, other_key) as other:
            first = await add_and_verify(net, "shop.test")
            r = await other.post("/v1/domains", json={"domain": "shop.test"})
            assert r.status_code == 201, r.text
            second = r.json()
            selectors = {k["selector"] for k in first["keys"]}
            assert {k["selector"] for k in second["keys"]}.isdisjoint(selectors)
            publish(net.sim, [x for x in second["records"] if x["purpose"] == "dkim"])
            checked = (await other.post("/v1/domains/shop.test/verify")).json()
            assert checked["status"] == "verified", checked["records"]
            still = (await net.api.post("/v1/domains/shop.test/verify")).json()
            assert still["status"] == "verified", still["records"]
