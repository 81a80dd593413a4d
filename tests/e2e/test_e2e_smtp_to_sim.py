"""SMTP submission to delivery: a message submitted over STARTTLS + AUTH PLAIN reaches the
receiver with its own Message-ID kept, a Received header on top and the MIME-Version it
lacked."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path

from support.e2e import domain, internet
from support.smtp import capture

ORIGINAL_ID = "<order-4711.shipped@shop.test>"
MESSAGE = (
    "From: Shop <orders@shop.test>\r\n"
    "To: ann@inbox.test, bob@inbox.test\r\n"
    "Subject: Your order shipped\r\n"
    f"Message-ID: {ORIGINAL_ID}\r\n"
    "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    "\r\n"
    "It is on its way.\r\n"
).encode()


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def test_submitted_message_is_delivered_unchanged_but_for_received(
    tmp_path: Path,
) -> None:
    async with internet(tmp_path, [domain("inbox.test")]) as net:
        seen = capture(net.sim)
        key = net.api.headers["Authorization"].removeprefix("Bearer ")
        assert net.node.submission_address is not None
        host, port = net.node.submission_address

        def submit() -> tuple[bool, tuple[int, bytes]]:
            with smtplib.SMTP(host, port, timeout=10) as s:
                s.ehlo("client.test")
                s.starttls(context=_tls())
                s.ehlo("client.test")
                s.login("acme", key)  # AUTH PLAIN with the tenant's API key
                s.mail("orders@shop.test")
                for rcpt in ("ann@inbox.test", "bob@inbox.test"):
                    code, _ = s.rcpt(rcpt)
                    assert code == 250
                return s.sock is not None and isinstance(s.sock, ssl.SSLSocket), s.data(MESSAGE)

        used_tls, (code, reply) = await asyncio.to_thread(submit)
        assert used_tls
        assert code == 250, reply
        node_id = reply.decode().rsplit(" ", 1)[-1]

        counts = await net.settle(2, timeout=10)
        assert counts == {"delivered": 2}
        msg = await net.message(node_id)
        assert msg["message_id"] == ORIGINAL_ID
        assert msg["source"] == "smtp"
        assert [r["status"] for r in msg["recipients"]] == ["delivered", "delivered"]

        report = net.sim.report()
        assert sorted(report.accepted_pairs()) == [
            (ORIGINAL_ID, "ann@inbox.test"),
            (ORIGINAL_ID, "bob@inbox.test"),
        ]
        assert report.duplicate_count == 0

        # Both recipients went in one transaction: one copy of the content.
        assert len(seen) == 1
        content = seen[0].content
        head, _, body = content.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0].startswith(b"Received: from client.test ([127.0.0.1]) by ")
        assert b"(postline) with ESMTPSA; " in lines[0]
        assert sum(1 for ln in lines if ln.lower().startswith(b"received:")) == 1
        assert [ln for ln in lines if ln.lower().startswith(b"message-id:")] == [
            b"Message-ID: " + ORIGINAL_ID.encode()
        ]
        assert b"Subject: Your order shipped" in lines
        assert b"Date: Fri, 27 Nov 2026 10:00:00 +0000" in lines
        assert b"MIME-Version: 1.0" in lines  # the client sent none
        assert body == b"It is on its way.\r\n"
