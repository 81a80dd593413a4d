"""Bounces, complaints and suppression end to end: the node sends over real SMTP to the
sim with signed VERP return paths, reports come back to its inbound server over real
SMTP, and the API shows the events and refuses to send to suppressed addresses."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from postline.bounce import analyze, verp
from postline.sim.profiles import Profile
from support import pgserver
from support.e2e import E2E, FAST_RETRY, domain, internet
from support.node import wait_for
from support.smtp import Seen, capture, smtp_send, submit

pg_server = pgserver.pg_server
pg_dsn = pgserver.pg_dsn

BOUNCE_DOMAIN = "bounce.postline.test"
NODE = FAST_RETRY + f'[bounce]\ndomain = "{BOUNCE_DOMAIN}"\nsecret = "e2e-verp-secret"\n'


async def deliver_one(net: E2E, to: str, seen: list[Seen]) -> tuple[str, Seen]:
    """Send one message through the API; wait until the sim accepted it."""
    body = await net.send(to)
    mid = body["id"]
    await net.settle(await _total(net))
    for item in seen:
        if to in item.rcpt_tos:
            return mid, item
    raise AssertionError(f"the sim never accepted mail for {to}")


async def _total(net: E2E) -> int:
    counts = await net.counts()
    return sum(counts.values())


async def report_in(
    net: E2E, mail_from: str, rcpt: str, body: bytes
) -> dict[str, tuple[int, bytes]]:
    """Send one report to the node's inbound server over SMTP; it must be accepted."""
    assert net.node.inbound_address is not None
    replies = await asyncio.to_thread(smtp_send, net.node.inbound_address, mail_from, [rcpt], body)
    assert replies[rcpt][0] == 250 and replies["DATA"][0] == 250, replies
    return replies


async def recipient(net: E2E, mid: str) -> dict[str, Any]:
    return dict((await net.message(mid))["recipients"][0])


def postfix_dsn(rcpt: str, original_headers: bytes, status: str, diagnostic: str) -> bytes:
    head = original_headers.split(b"\r\n\r\n", 1)[0].decode()
    return (
        "From: MAILER-DAEMON@mx1.inbox.test (Mail Delivery System)\r\n"
        f"To: someone@{BOUNCE_DOMAIN}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B1"\r\n'
        "\r\n"
        "--B1\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "I'm sorry to have to inform you that your message could not\r\n"
        "be delivered to one or more recipients.\r\n"
        "\r\n"
        "--B1\r\n"
        "Content-Type: message/delivery-status\r\n"
        "\r\n"
        "Reporting-MTA: dns; mx1.inbox.test\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {rcpt}\r\n"
        f"Original-Recipient: rfc822;{rcpt}\r\n"
        "Action: failed\r\n"
        f"Status: {status}\r\n"
        "Remote-MTA: dns; store.inbox.test\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        "\r\n"
        "--B1\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        f"{head}\r\n"
        "\r\n"
        "--B1--\r\n"
    ).encode()


def arf(rcpt: str, original_headers: bytes) -> bytes:
    head = original_headers.split(b"\r\n\r\n", 1)[0].decode()
    return (
        "From: feedback@fbl.inbox.test\r\n"
        f"To: fbl@{BOUNCE_DOMAIN}\r\n"
        "Subject: Complaint about message\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=feedback-report; boundary="F1"\r\n'
        "\r\n"
        "--F1\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "This is an email abuse report for an email message received.\r\n"
        "\r\n"
        "--F1\r\n"
        "Content-Type: message/feedback-report\r\n"
        "\r\n"
        "Feedback-Type: abuse\r\n"
        "User-Agent: InboxFBL/1.0\r\n"
        "Version: 1\r\n"
        f"Original-Rcpt-To: {rcpt}\r\n"
        "Reported-Domain: postline.test\r\n"
        "\r\n"
        "--F1\r\n"
        "Content-Type: text/rfc822-headers\r\n"
        "\r\n"
        f"{head}\r\n"
        "\r\n"
        "--F1--\r\n"
    ).encode()


def vacation(to: str) -> bytes:
    return (
        "From: Ann <ok-ann@inbox.test>\r\n"
        f"To: {to}\r\n"
        "Subject: Out of Office: back on Monday\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "X-Autoreply: yes\r\n"
        "\r\n"
        "I am away until Monday with limited access to mail.\r\n"
    ).encode()


async def suppressions(net: E2E, address: str) -> dict[str, Any]:
    tenant = await net.node.store.get_tenant(name="acme")
    assert tenant is not None
    found = await net.node.store.suppressed(tenant.id, [address], now=time.time())
    return {k: v.reason for k, v in found.items()}


async def test_sync_bounce_is_classified_suppressed_and_the_next_send_refused(
    tmp_path: Path,
) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        seen = capture(net.sim)
        first = await net.send("unknown-7@inbox.test")
        await net.settle(1)
        r = await recipient(net, first["id"])
        assert r["status"] == "bounced"
        bounced = await net.events(type="bounced")
        assert len(bounced) == 1
        data = bounced[0]["data"]
        assert data["category"] == "invalid_recipient" and data["hard"] is True
        assert data["async"] is False and data["status"] == "5.1.1"
        assert await suppressions(net, "unknown-7@inbox.test") == {
            "unknown-7@inbox.test": "hard_bounce"
        }

        again = await net.send(["Unknown-7@inbox.test", "ok-1@inbox.test"])
        statuses = {x["address"]: x for x in again["recipients"]}
        assert statuses["Unknown-7@inbox.test"]["status"] == "suppressed"
        assert statuses["Unknown-7@inbox.test"]["reason"] == "hard_bounce"
        assert statuses["ok-1@inbox.test"]["status"] == "queued"
        await net.settle(3)
        view = await net.message(again["id"])
        assert [x["status"] for x in view["recipients"]] == ["suppressed", "delivered"]
        assert len(await net.events(type="suppressed")) == 1
        # The sim saw the suppressed address once (the first bounce), never again.
        assert not any("Unknown-7@inbox.test" in s.rcpt_tos for s in seen)
        # Each recipient got its own signed return path naming its row.
        (ok,) = [s for s in seen if "ok-1@inbox.test" in s.rcpt_tos]
        assert verp.decode(ok.mail_from, b"e2e-verp-secret") == (again["id"], 1)
        assert ok.mail_from.endswith("@" + BOUNCE_DOMAIN)


async def test_async_dsn_marks_the_right_recipient_bounced_and_suppresses(
    tmp_path: Path,
) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        seen = capture(net.sim)
        keep, _ = await deliver_one(net, "ok-keep@inbox.test", seen)
        mid, item = await deliver_one(net, "ok-gone@inbox.test", seen)
        assert (await recipient(net, mid))["status"] == "delivered"
        dsn = postfix_dsn(
            "ok-gone@inbox.test", item.content, "5.1.1", "550 5.1.1 <ok-gone@inbox.test>: gone"
        )
        await report_in(net, "", item.mail_from, dsn)

        async def bounced() -> bool:
            return (await recipient(net, mid))["status"] == "bounced"

        await wait_for(bounced, timeout=15)
        (event,) = await net.events(type="bounced")
        assert event["message_id"] == mid and event["recipient"] == "ok-gone@inbox.test"
        d = event["data"]
        assert d["async"] is True and d["category"] == "invalid_recipient" and d["hard"] is True
        assert d["status"] == "5.1.1" and d["remote_mta"] == "store.inbox.test"
        assert "gone" in d["diagnostic"]
        assert await suppressions(net, "ok-gone@inbox.test") == {
            "ok-gone@inbox.test": "hard_bounce"
        }
        # The other message is untouched.
        assert (await recipient(net, keep))["status"] == "delivered"


async def test_report_to_the_from_address_maps_by_header_and_arf_complains(
    tmp_path: Path,
) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        seen = capture(net.sim)
        mid, item = await deliver_one(net, "ok-reporter@inbox.test", seen)
        report = arf("ok-reporter@inbox.test", item.content)
        await report_in(net, "feedback@fbl.inbox.test", f"fbl@{BOUNCE_DOMAIN}", report)

        async def complained() -> list[dict[str, Any]]:
            return await net.events(type="complained")

        (event,) = await wait_for(complained, timeout=15)
        assert event["message_id"] == mid and event["recipient"] == "ok-reporter@inbox.test"
        assert event["data"]["feedback_type"] == "abuse"
        assert event["data"]["user_agent"] == "InboxFBL/1.0"
        assert await suppressions(net, "ok-reporter@inbox.test") == {
            "ok-reporter@inbox.test": "complaint"
        }
        # A complaint is not a bounce: the recipient stays delivered.
        assert (await recipient(net, mid))["status"] == "delivered"
        again = await net.send("ok-reporter@inbox.test")
        assert again["recipients"][0]["status"] == "suppressed"


async def test_auto_reply_is_recorded_but_not_a_bounce(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        seen = capture(net.sim)
        mid, item = await deliver_one(net, "ok-ann@inbox.test", seen)
        await report_in(net, "", item.mail_from, vacation(item.mail_from))

        async def auto() -> list[dict[str, Any]]:
            return await net.events(type="auto_reply")

        (event,) = await wait_for(auto, timeout=15)
        assert event["message_id"] == mid and event["recipient"] == "ok-ann@inbox.test"
        assert (await recipient(net, mid))["status"] == "delivered"
        assert await net.events(type="bounced") == []
        assert await suppressions(net, "ok-ann@inbox.test") == {}


async def test_inbound_server_refuses_relay_forgeries_and_unknown_local_parts(
    tmp_path: Path,
) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        seen = capture(net.sim)
        _, item = await deliver_one(net, "ok-x@inbox.test", seen)
        good = item.mail_from
        local, _, dom = good.partition("@")
        flipped = local[:-1] + ("0" if local[-1] != "0" else "1")
        other_key = verp.return_path(
            verp.decode(good, b"e2e-verp-secret")[0],  # type: ignore[index]
            0,
            b"somebody-else",
            BOUNCE_DOMAIN,
        )
        assert net.node.inbound_address is not None
        rcpts = [
            "victim@elsewhere.test",  # relay
            f"{flipped}@{dom}",  # mangled MAC
            other_key,  # signed with another key
            f"b-123@{dom}",  # not a token
            f"alice@{dom}",  # unknown local part
            f"postmaster@{dom}",  # must be accepted
        ]
        replies = await asyncio.to_thread(
            smtp_send,
            net.node.inbound_address,
            "x@reporter.test",
            rcpts,
            b"Subject: x\r\n\r\nx\r\n",
        )
        assert replies["victim@elsewhere.test"][0] == 550
        assert b"5.7.1" in replies["victim@elsewhere.test"][1]
        for r in rcpts[1:5]:
            assert replies[r][0] == 550 and b"5.1.1" in replies[r][1], (r, replies[r])
        assert replies[f"postmaster@{dom}"][0] == 250


async def test_dsn_goes_back_to_the_smtp_sender_and_parses(tmp_path: Path) -> None:
    async with internet(
        tmp_path, [domain("inbox.test"), domain("shop.test")], node_extra=NODE
    ) as net:
        seen = capture(net.sim)
        key = net.api.headers["Authorization"].removeprefix("Bearer ")
        message = (
            b"From: Shop <orders@shop.test>\r\nTo: unknown-9@inbox.test\r\n"
            b"Subject: Your order\r\nMessage-ID: <order-1@shop.test>\r\n\r\nHi\r\n"
        )
        await submit(net.node, key, "orders@shop.test", ["unknown-9@inbox.test"], message)

        def dsn() -> Seen | None:
            return next((s for s in seen if "orders@shop.test" in s.rcpt_tos), None)

        notice: Seen = await wait_for(dsn, timeout=20)
        assert notice.mail_from in ("", "<>")  # a DSN has the null return path
        report = analyze(notice.content)
        assert report.kind == "dsn"
        (result,) = report.results
        assert result.recipient == "unknown-9@inbox.test"
        assert result.failed and result.hard and result.category.value == "invalid_recipient"
        assert b"<order-1@shop.test>" in notice.content
        await net.settle(2)
        # API mail gets events, not DSNs; and a DSN is never answered with another one.
        await net.send("unknown-10@inbox.test")
        await net.settle(3)
        await asyncio.sleep(1.0)
        assert [s for s in seen if s.mail_from in ("", "<>")] == [notice]


async def test_sim_feedback_in_every_format_lands_on_the_right_recipients(
    tmp_path: Path,
) -> None:
    await feedback_round_trip(tmp_path, None)


async def test_sim_feedback_on_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    await feedback_round_trip(tmp_path, pg_dsn)


async def feedback_round_trip(tmp_path: Path, store: str | None) -> None:

    profile = Profile(
        name="feedback",
        late_bounce_rate=0.3,
        complaint_rate=0.2,
        auto_reply_rate=0.2,
        feedback_delay=0.2,
    )
    async with internet(
        tmp_path, [domain("inbox.test", profile)], node_extra=NODE, store=store
    ) as net:
        assert net.node.inbound_address is not None
        host, port = net.node.inbound_address
        net.sim.set_feedback_to(f"{host}:{port}")
        net.sim.set_fbl_address(f"fbl@{BOUNCE_DOMAIN}")
        n = 120
        await net.send_many([f"user{i}@inbox.test" for i in range(n)])
        await net.settle(n)
        assert await net.sim.settle_feedback(30)
        records = net.sim.recorder.feedback_records()
        assert all(r.state == "sent" for r in records), [r.reply for r in records]
        kinds = {
            k: {r.recipient for r in records if r.kind == k} for k in ("dsn", "arf", "autoreply")
        }
        assert all(kinds.values()), kinds  # every kind was exercised
        formats = {(r.kind, r.format) for r in records}
        assert len(formats) >= 8, formats

        async def applied() -> bool:
            assert net.node.feedback is not None
            return net.node.feedback.processed >= len(records)

        await wait_for(applied, timeout=30)
        bounced = {e["recipient"]: e for e in await net.events(type="bounced")}
        complained = {e["recipient"] for e in await net.events(type="complained")}
        auto = {e["recipient"] for e in await net.events(type="auto_reply")}
        assert set(bounced) == kinds["dsn"]
        assert complained == kinds["arf"]
        assert auto == kinds["autoreply"]
        for r in records:
            if r.kind == "dsn":
                e = bounced[r.recipient]
                assert e["data"]["async"] is True
                assert e["data"]["status"] == r.status, (r.format, e["data"])
                assert e["data"]["hard"] is r.status.startswith("5.1."), (r.format, e["data"])
        counts = await net.counts()
        assert counts["bounced"] == len(kinds["dsn"])
        assert counts["delivered"] == n - len(kinds["dsn"])
        tenant = await net.node.store.get_tenant(name="acme")
        assert tenant is not None
        listed = await net.node.store.suppressed(
            tenant.id, [f"user{i}@inbox.test" for i in range(n)], now=time.time()
        )
        hard = {r.recipient for r in records if r.kind == "dsn" and r.status.startswith("5.1.")}
        assert {a for a, s in listed.items() if s.reason == "hard_bounce"} == hard
        assert {a for a, s in listed.items() if s.reason == "complaint"} == kinds["arf"]


async def test_no_dsn_for_a_tenant_that_opted_out(tmp_path: Path) -> None:
    node = NODE + 'notify_senders_except = ["acme"]\n'
    async with internet(
        tmp_path, [domain("inbox.test"), domain("shop.test")], node_extra=node
    ) as net:
        seen = capture(net.sim)
        key = net.api.headers["Authorization"].removeprefix("Bearer ")
        message = b"From: orders@shop.test\r\nTo: unknown-3@inbox.test\r\nSubject: x\r\n\r\nHi\r\n"
        await submit(net.node, key, "orders@shop.test", ["unknown-3@inbox.test"], message)
        await net.settle(1)
        assert (await net.counts()).get("bounced") == 1
        await asyncio.sleep(2.0)
        await net.settle(1)
        assert (await net.counts()) == {"bounced": 1}  # no DSN was queued
        assert [s for s in seen if s.mail_from in ("", "<>")] == []


async def _processed(net: E2E, count: int) -> None:
    feedback = net.node.feedback
    assert feedback is not None
    await wait_for(lambda: feedback.processed >= count, timeout=15)


async def test_reports_without_a_token_cannot_speak_for_a_co_recipient(tmp_path: Path) -> None:
    """Every recipient of a message sees its ids and the other addresses in To, so a
    report that carries no signed token is only believed about a one-recipient message."""
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        seen = capture(net.sim)
        body = await net.send(["ok-mallory@inbox.test", "ok-victim@inbox.test"])
        mid = body["id"]
        await net.settle(await _total(net))
        item = next(i for i in seen if "ok-mallory@inbox.test" in i.rcpt_tos)
        # Mallory forges a complaint and a bounce about Victim to the fixed addresses.
        for mail_from, rcpt, report in (
            ("x@evil.test", f"fbl@{BOUNCE_DOMAIN}", arf("ok-victim@inbox.test", item.content)),
            (
                "",
                f"postmaster@{BOUNCE_DOMAIN}",
                postfix_dsn("ok-victim@inbox.test", item.content, "5.1.1", "550 5.1.1 gone"),
            ),
        ):
            await report_in(net, mail_from, rcpt, report)
        await _processed(net, 2)
        assert await net.events(type="complained") == []
        assert await net.events(type="bounced") == []
        assert await suppressions(net, "ok-victim@inbox.test") == {}
        statuses = {r["address"]: r["status"] for r in (await net.message(mid))["recipients"]}
        assert statuses == {
            "ok-mallory@inbox.test": "delivered",
            "ok-victim@inbox.test": "delivered",
        }


async def test_a_feedback_loop_report_maps_by_the_returned_return_path_and_counts_once(
    tmp_path: Path,
) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        seen = capture(net.sim)
        body = await net.send(["ok-one@inbox.test", "ok-two@inbox.test"])
        mid = body["id"]
        await net.settle(await _total(net))
        item = next(i for i in seen if "ok-two@inbox.test" in i.rcpt_tos)
        # The receiving MTA adds Return-Path (our signed VERP address for this recipient);
        # feedback loops return those headers to one fixed address, naming nobody.
        returned = f"Return-Path: <{item.mail_from}>\r\n".encode() + item.content
        report = arf("redacted@inbox.test", returned).replace(
            b"Original-Rcpt-To: redacted@inbox.test\r\n", b""
        )
        for _ in range(2):  # the provider sends it twice
            await report_in(net, "feedback@fbl.inbox.test", f"fbl@{BOUNCE_DOMAIN}", report)
        await _processed(net, 2)
        (event,) = await net.events(type="complained")
        assert event["message_id"] == mid and event["recipient"] == "ok-two@inbox.test"
        assert await suppressions(net, "ok-two@inbox.test") == {"ok-two@inbox.test": "complaint"}
        assert await suppressions(net, "ok-one@inbox.test") == {}


async def test_a_redacted_complaint_about_a_one_recipient_message_still_counts(
    tmp_path: Path,
) -> None:
    async with internet(tmp_path, [domain("inbox.test")], node_extra=NODE) as net:
        seen = capture(net.sim)
        mid, item = await deliver_one(net, "ok-private@inbox.test", seen)
        report = arf("redacted@inbox.test", item.content)  # the loop hides the address
        await report_in(net, "feedback@fbl.inbox.test", f"fbl@{BOUNCE_DOMAIN}", report)
        await _processed(net, 1)
        (event,) = await net.events(type="complained")
        assert event["message_id"] == mid and event["recipient"] == "ok-private@inbox.test"
