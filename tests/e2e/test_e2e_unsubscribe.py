"""List-Unsubscribe end to end: the node sends over real SMTP to the sim, the recipient
unsubscribes with a one-click POST over real HTTP (no API key) or with mail to the
mailto address over real SMTP to the inbound server, and the API shows the
``unsubscribed`` event and refuses to send to the address again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from postline.feedback import unsubscribe
from postline.runtime import Node
from support.e2e import E2E, FAST_RETRY, domain, internet
from support.node import add_tenant, api_client, wait_for
from support.smtp import smtp_send

BOUNCE_DOMAIN = "bounce.postline.test"
SECRET = b"e2e-unsubscribe-secret"
NODE = (
    FAST_RETRY
    + f'[bounce]\ndomain = "{BOUNCE_DOMAIN}"\nsecret = "{SECRET.decode()}"\n'
    + 'previous_secrets = ["e2e-old-secret"]\n'
)
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def unsubscribe_mail(sender: str, to: str) -> bytes:
    """What a mail program sends for the mailto form of List-Unsubscribe."""
    return (
        f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: unsubscribe\r\n"
        "Message-ID: <u1@inbox.test>\r\n\r\nThis message was sent to unsubscribe.\r\n"
    ).encode()


async def delivered(net: E2E, to: str) -> str:
    """Send one message through the API and wait until the sim accepted it."""
    body = await net.send(to, stream="marketing")
    mid = str(body["id"])

    async def done() -> bool:
        view = await net.message(mid)
        return bool(view["recipients"][0]["status"] == "delivered")

    await wait_for(done, timeout=30)
    return mid


async def suppression(node: Node, address: str) -> tuple[str, str] | None:
    tenant = await node.store.get_tenant(name="acme")
    assert tenant is not None
    found = (await node.store.suppressed(tenant.id, [address], now=time.time())).get(address)
    return (found.reason, found.source) if found else None


async def test_one_click_post_over_http_unsubscribes_the_recipient(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        mid = await delivered(net, "ok-ann@inbox.test")
        token = unsubscribe.encode(mid, 0, SECRET)
        ((_, value), post) = unsubscribe.headers(
            mid, 0, secrets=[SECRET], public_url=net.node.public_url, bounce_domain=BOUNCE_DOMAIN
        )
        assert post == ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
        link = value.split(",")[0].strip("<> ")
        assert link == f"{net.node.public_url}/u/{token}"

        async with httpx.AsyncClient(timeout=10) as anonymous:
            # Link scanners follow GETs: nothing changes.
            page = await anonymous.get(link)
            assert page.status_code == 200 and "<form" in page.text
            assert await net.events(type="unsubscribed") == []
            assert await suppression(net.node, "ok-ann@inbox.test") is None

            forged = token[:-1] + ("0" if token[-1] != "0" else "1")
            bad = await anonymous.post(link.replace(token, forged), data=ONE_CLICK)
            assert bad.status_code == 404
            assert bad.headers["content-type"] == "application/problem+json"

            # As RFC 8058 receivers send it: form-encoded, no cookies, no Authorization.
            r = await anonymous.post(link, data=ONE_CLICK)
            assert r.status_code == 200 and r.json() == {"status": "unsubscribed"}
            assert "authorization" not in r.request.headers
            again = await anonymous.post(link, data=ONE_CLICK)
            assert again.status_code == 200

        (event,) = await net.events(type="unsubscribed")
        assert event["message_id"] == mid and event["recipient"] == "ok-ann@inbox.test"
        assert event["data"]["source"] == "one-click"
        assert await suppression(net.node, "ok-ann@inbox.test") == ("unsubscribe", "one-click")
        # Delivered stays delivered; the next message is not sent.
        assert (await net.message(mid))["recipients"][0]["status"] == "delivered"
        next_one = await net.send("ok-ann@inbox.test")
        assert next_one["recipients"][0]["status"] == "suppressed"
        assert next_one["recipients"][0]["reason"] == "unsubscribe"

        # Another tenant sees none of it and may still mail the address.
        other_key = await add_tenant(net.node, "bravo")
        async with api_client(net.node, other_key) as other:
            r = await other.get("/v1/events", params={"type": "unsubscribed"})
            assert r.status_code == 200 and r.json()["events"] == []
            r = await other.post(
                "/v1/messages",
                json={
                    "from": "b@postline.test",
                    "to": ["ok-ann@inbox.test"],
                    "subject": "s",
                    "text": "t",
                },
            )
            assert r.json()["recipients"][0]["status"] == "queued"


async def test_mailto_unsubscribe_over_smtp_works_like_the_post(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        mid = await delivered(net, "ok-bob@inbox.test")
        assert net.node.inbound_address is not None
        (header,) = unsubscribe.headers(
            mid, 0, secrets=[SECRET], public_url="", bounce_domain=BOUNCE_DOMAIN
        )
        mailto = header[1].strip("<>")
        address = mailto.removeprefix("mailto:").partition("?")[0]
        assert address.startswith("u-") and address.endswith("@" + BOUNCE_DOMAIN)

        # A forged token and a VERP-shaped one are refused at RCPT, like forged VERP.
        local = address.partition("@")[0]
        forged = local[:-1] + ("0" if local[-1] != "0" else "1") + "@" + BOUNCE_DOMAIN
        as_verp = "b-" + local.removeprefix("u-") + "@" + BOUNCE_DOMAIN
        replies = await asyncio.to_thread(
            smtp_send,
            net.node.inbound_address,
            "ok-bob@inbox.test",
            [forged, as_verp],
            unsubscribe_mail("ok-bob@inbox.test", forged),
        )
        assert replies[forged][0] == 550 and b"5.1.1" in replies[forged][1]
        assert replies[as_verp][0] == 550
        assert "DATA" not in replies

        # Receivers lower- or upper-case local parts; the token survives.
        replies = await asyncio.to_thread(
            smtp_send,
            net.node.inbound_address,
            "ok-bob@inbox.test",
            [address.upper()],
            unsubscribe_mail("ok-bob@inbox.test", address),
        )
        assert replies[address.upper()][0] == 250 and replies["DATA"][0] == 250

        async def unsubscribed() -> list[dict[str, Any]]:
            return await net.events(type="unsubscribed")

        (event,) = await wait_for(unsubscribed, timeout=15)
        assert event["message_id"] == mid and event["recipient"] == "ok-bob@inbox.test"
        assert event["data"]["source"] == "mailto" and event["data"]["inbound_id"]
        assert await suppression(net.node, "ok-bob@inbox.test") == ("unsubscribe", "mailto")
        again = await net.send("ok-bob@inbox.test")
        assert again["recipients"][0]["status"] == "suppressed"

        # The same mail twice records nothing new; the one-click link is then a no-op too.
        replies = await asyncio.to_thread(
            smtp_send,
            net.node.inbound_address,
            "ok-bob@inbox.test",
            [address],
            unsubscribe_mail("ok-bob@inbox.test", address),
        )
        assert replies["DATA"][0] == 250
        feedback = net.node.feedback
        assert feedback is not None
        await wait_for(lambda: feedback.processed >= 2, timeout=15)
        link = f"{net.node.public_url}/u/{unsubscribe.encode(mid, 0, SECRET)}"
        async with httpx.AsyncClient(timeout=10) as anonymous:
            assert (await anonymous.post(link, data=ONE_CLICK)).status_code == 200
        assert len(await net.events(type="unsubscribed")) == 1


async def test_links_signed_with_a_previous_secret_still_work(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        mid = await delivered(net, "ok-cid@inbox.test")
        link = f"{net.node.public_url}/u/{unsubscribe.encode(mid, 0, b'e2e-old-secret')}"
        async with httpx.AsyncClient(timeout=10) as anonymous:
            r = await anonymous.post(link, content=b"")
            assert r.status_code == 200
        assert await suppression(net.node, "ok-cid@inbox.test") == ("unsubscribe", "one-click")
