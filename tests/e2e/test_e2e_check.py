"""POST /v1/messages/check over real HTTP against a node whose DNS is the sim's: an
unregistered sender gets DKIM errors and fixes, the same message is signed once the
domain is verified, marketing mail reports its one-click unsubscribe, broken messages
report their errors, invalid input is the same 422 problem as POST /v1/messages, and
nothing is ever queued."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from e2e.test_e2e_domains import NODE, add_and_verify
from support.e2e import E2E, domain, internet

PUBLIC = 'public_url = "https://mail.postline.test"'
MESSAGE = {
    "from": "Shop <orders@shop.test>",
    "to": ["ann@inbox.test"],
    "subject": "Your order has shipped",
    "text": "It shipped.",
    "html": "<p>It shipped.</p>",
}
BROKEN = (
    b"From: Shop <orders@shop.test>\r\n"
    b"From: Other <other@shop.test>\r\n"
    b"To: ann@inbox.test\r\n"
    b"Subject: broken\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: multipart/mixed\r\n"
    b"\r\n" + b"x" * 1200 + b"\r\n"
)


async def check(net: E2E, **fields: Any) -> dict[str, Any]:
    r = await net.api.post("/v1/messages/check", json={**MESSAGE, **fields})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["errors"] == sum(f["status"] == "error" for f in body["findings"])
    assert body["ok"] == (body["errors"] == 0)
    assert all(f["fix"] for f in body["findings"] if f["status"] == "error"), body["findings"]
    return body


def finding(body: dict[str, Any], name: str) -> dict[str, Any]:
    found = [f for f in body["findings"] if f["check"] == name]
    assert found, f"no {name} finding in {body['findings']}"
    return found[0]


def problems(body: dict[str, Any]) -> dict[str, str]:
    return {f["check"]: f["status"] for f in body["findings"] if f["status"] != "ok"}


async def nothing_queued(net: E2E) -> None:
    assert await net.counts() == {} or not any((await net.counts()).values())
    assert await net.events() == []


async def test_check_before_and_after_the_domain_is_verified(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE, api_extra=PUBLIC) as net:
        before = await net.counts()
        body = await check(net)
        assert body["ok"] is False
        assert body["from_domain"] == "shop.test" and body["stream"] == "transactional"
        dkim = finding(body, "dkim")
        assert dkim["status"] == "error"
        assert "not a sender domain of this account" in dkim["message"]
        assert "POST /v1/domains" in dkim["fix"] and "shop.test" in dkim["fix"]
        assert finding(body, "dmarc_alignment")["status"] in ("warning", "error")
        dmarc = finding(body, "dmarc")
        assert dmarc["status"] == "warning" and "_dmarc.shop.test" in dmarc["fix"]
        spf = finding(body, "spf")
        assert spf["status"] == "error" and "v=spf1" in spf["fix"]
        # The message itself is fine: the API built it.
        for name in ("from", "date", "message_id", "mime", "line_length", "duplicate_headers"):
            assert finding(body, name)["status"] == "ok", finding(body, name)
        assert finding(body, "text_alternative")["status"] == "ok"
        assert finding(body, "suppressions")["status"] == "ok"
        assert body["spam"] is None  # no [check] spamd

        await add_and_verify(net, "shop.test")
        # The SPF of the return-path domain is the operator's: publish it too.
        net.sim.zone.txt["bounce.postline.test"] = ["v=spf1 a:node.postline.test ~all"]
        body = await check(net)
        assert problems(body) == {}, body["findings"]
        dkim = finding(body, "dkim")
        assert dkim["status"] == "ok" and "d=shop.test" in dkim["message"]
        assert "s=" in dkim["message"]
        assert finding(body, "dmarc_alignment")["status"] == "ok"
        assert finding(body, "return_path")["status"] == "ok"
        assert "bounce.postline.test" in finding(body, "return_path")["message"]

        # A subdomain of the verified domain is signed by it; DMARC is the parent's.
        body = await check(net, **{"from": "news@mail.shop.test"})
        assert "d=shop.test" in finding(body, "dkim")["message"]
        assert finding(body, "dkim")["status"] == "ok"
        assert "(of shop.test)" in finding(body, "dmarc")["message"]

        # Marketing: one-click unsubscribe is added at send time; p=none is a warning.
        body = await check(net, stream="marketing")
        unsubscribe = finding(body, "unsubscribe")
        assert unsubscribe["status"] == "ok"
        assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in unsubscribe["message"]
        assert "https://mail.postline.test/u/" in unsubscribe["message"]
        assert "covered by the DKIM signature" in unsubscribe["message"]
        assert finding(body, "dmarc")["status"] == "warning"
        assert body["ok"] is True
        # A bulk-looking stream that gets no List-Unsubscribe.
        body = await check(net, stream="newsletter")
        unsubscribe = finding(body, "unsubscribe")
        assert unsubscribe["status"] == "warning"
        assert "list_unsubscribe_streams" in unsubscribe["message"]
        assert "newsletter" in unsubscribe["fix"]

        # The key record disappears: signed, but receivers would fail it.
        dkim_names = [n for n in net.sim.zone.txt if "._domainkey." in n]
        for name in dkim_names:
            del net.sim.zone.txt[name]
        body = await check(net)
        dkim = finding(body, "dkim")
        assert dkim["status"] == "error" and "missing" in dkim["message"]
        assert "._domainkey.shop.test" in dkim["fix"]

        assert await net.counts() == before
        assert await net.events() == []


async def test_broken_and_invalid_messages(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        raw = base64.b64encode(BROKEN).decode()
        r = await net.api.post("/v1/messages/check", json={"raw": raw, "to": ["ann@inbox.test"]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ok"] is False
        errors = {f["check"] for f in body["findings"] if f["status"] == "error"}
        assert {"duplicate_headers", "line_length", "mime"} <= errors, body["findings"]
        duplicate = next(
            f
            for f in body["findings"]
            if f["check"] == "duplicate_headers" and f["status"] == "error"
        )
        assert duplicate["message"].startswith("From appears 2 times")
        mime = next(f for f in body["findings"] if f["check"] == "mime" and f["status"] == "error")
        assert "boundary" in mime["message"]
        assert "1200 octets" in finding(body, "line_length")["message"]
        # postline adds Message-ID and Date to raw messages, so those are fine.
        assert finding(body, "message_id")["status"] == "ok"
        assert finding(body, "date")["status"] == "ok"

        # Input POST /v1/messages refuses is the same 422 problem here.
        for bad in (
            {"from": "not an address", "to": ["ann@inbox.test"], "text": "x"},
            {"from": "a@shop.test", "to": [], "text": "x"},
            {"raw": "%%%", "to": ["ann@inbox.test"]},
            {"raw": base64.b64encode(b"no header section").decode(), "to": ["ann@inbox.test"]},
        ):
            checked = await net.api.post("/v1/messages/check", json=bad)
            sent = await net.api.post("/v1/messages", json=bad)
            assert checked.status_code == sent.status_code == 422, (checked.text, sent.text)
            assert checked.headers["content-type"] == "application/problem+json"
            one, two = checked.json(), sent.json()
            assert one.pop("instance") == "/v1/messages/check"
            two.pop("instance")
            assert one == two
        # Not JSON at all, and no key.
        r = await net.api.post(
            "/v1/messages/check", content=b"{", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        assert (
            await net.api.post("/v1/messages/check", json=MESSAGE, headers={"Authorization": ""})
        ).status_code == 401
        # GET and DELETE of /v1/messages/{id} still own that path shape.
        assert (await net.api.get("/v1/messages/check")).status_code == 404

        await nothing_queued(net)


async def test_unverified_domain_is_a_finding_when_verification_is_required(
    tmp_path: Path,
) -> None:
    extra = NODE + "[domains]\nrequire_verified = true\n"
    async with internet(tmp_path, [domain("inbox.test")], node_extra=extra) as net:
        # A suppressed recipient and the node's refusal are findings, not errors of the call.
        r = await net.api.post(
            "/v1/suppressions", json={"suppressions": [{"address": "ann@inbox.test"}]}
        )
        assert r.status_code == 200, r.text
        body = await check(net, to=["ann@inbox.test", "bob@inbox.test"])
        sender = finding(body, "sender_domain")
        assert sender["status"] == "error" and "refuses mail from shop.test" in sender["message"]
        suppressed = finding(body, "suppressions")
        assert (
            suppressed["status"] == "warning" and "ann@inbox.test (manual)" in suppressed["message"]
        )
        assert (await net.api.post("/v1/messages", json=MESSAGE)).status_code == 422
        await add_and_verify(net, "shop.test")
        body = await check(net)
        assert finding(body, "sender_domain")["status"] == "ok"
        await nothing_queued(net)
