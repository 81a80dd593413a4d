"""What a submission client sends cannot add headers to the delivered message.

Covers: an EHLO name with a bare CR or non-ASCII bytes, copied into the Received
header; SMTP smuggling (``\\n.\\n``, ``\\r.\\r``, ``\\n.\\r\\n`` inside DATA end nothing, and
the delivery side dot-stuffs what they normalise to, so the receiver sees one message).
"""

from __future__ import annotations

import asyncio
import base64
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from postline.sim.runner import Simulator
from support.e2e import domain, internet

DataHook = Callable[[Any, Session, Envelope], Awaitable[str]]


def _capture(sim: Simulator) -> list[bytes]:
    seen: list[bytes] = []
    for host in sim.hosts.values():
        original: DataHook = host.handler.handle_DATA

        async def hook(
            server: Any, session: Session, envelope: Envelope, original: DataHook = original
        ) -> str:
            reply = await original(server, session, envelope)
            if reply.startswith("2"):
                seen.append(envelope.original_content or b"")
            return reply

        host.handler.handle_DATA = hook  # type: ignore[method-assign]
    return seen


def _submit(address: tuple[str, int], key: str, ehlo: bytes, data: bytes) -> list[bytes]:
    """A raw client (smtplib refuses CR in arguments); returns every reply line."""
    replies: list[bytes] = []
    raw = socket.create_connection(address, timeout=10)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    f = raw.makefile("rb")

    def reply() -> bytes:
        lines = []
        while True:
            line = f.readline()
            lines.append(line)
            if line[3:4] != b"-":
                replies.append(b"".join(lines))
                return replies[-1]

    try:
        reply()
        raw.sendall(b"EHLO client.test\r\n")
        reply()
        raw.sendall(b"STARTTLS\r\n")
        assert reply().startswith(b"220")
        sock = ctx.wrap_socket(raw)
        f = sock.makefile("rb")
        sock.sendall(b"EHLO " + ehlo + b"\r\n")
        reply()
        sock.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0acme\0" + key.encode()) + b"\r\n")
        assert reply().startswith(b"235")
        sock.sendall(b"MAIL FROM:<ann@shop.test>\r\n")
        reply()
        sock.sendall(b"RCPT TO:<bob@inbox.test>\r\n")
        reply()
        sock.sendall(b"DATA\r\n")
        assert reply().startswith(b"354")
        sock.sendall(data)
        reply()
        sock.sendall(b"QUIT\r\n")
        reply()
        sock.close()
    finally:
        raw.close()
    return replies


MESSAGE = b"From: ann@shop.test\r\nTo: bob@inbox.test\r\nSubject: hi\r\n\r\nhello\r\n.\r\n"


async def test_ehlo_name_cannot_add_a_header(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")]) as net:
        seen = _capture(net.sim)
        key = net.api.headers["Authorization"].removeprefix("Bearer ")
        assert net.node.submission_address is not None
        address = net.node.submission_address
        ehlo = b"client.test\rX-Injected: yes"
        replies = await asyncio.to_thread(_submit, address, key, ehlo, MESSAGE)
        if not replies[-2].startswith(b"250"):
            return  # refusing the EHLO name or the message is a fine answer
        await net.settle(1, timeout=10)
        assert len(seen) == 1
        head = seen[0].split(b"\r\n\r\n", 1)[0]
        assert b"\r\nX-Injected:" not in head, head[:300]


async def test_8bit_ehlo_name_does_not_refuse_the_message(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")]) as net:
        key = net.api.headers["Authorization"].removeprefix("Bearer ")
        assert net.node.submission_address is not None
        address = net.node.submission_address
        replies = await asyncio.to_thread(_submit, address, key, b"caf\xe9.test", MESSAGE)
        assert replies[-2].startswith(b"250"), replies[-2]


SMUGGLE = (
    b"From: ann@shop.test\r\nTo: bob@inbox.test\r\nSubject: hi\r\n\r\nhello"
    b"%s"
    b"MAIL FROM:<evil@shop.test>\r\nRCPT TO:<victim@inbox.test>\r\nDATA\r\n"
    b"From: evil@shop.test\r\n\r\nsmuggled\r\n.\r\n"
)


async def test_bare_lf_end_of_data_variants_are_not_smuggled(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("inbox.test")]) as net:
        seen = _capture(net.sim)
        key = net.api.headers["Authorization"].removeprefix("Bearer ")
        assert net.node.submission_address is not None
        address = net.node.submission_address
        for sep in (b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n"):
            await asyncio.to_thread(_submit, address, key, b"client.test", SMUGGLE % sep)
        counts = await net.settle(4, timeout=10)
        assert counts == {"delivered": 4}
        recipients = {r.recipient for r in net.sim.report().records}
        assert recipients == {"bob@inbox.test"}
        assert len(seen) == 4
        # The would-be second transaction travelled as body text of the first.
        assert all(b"\r\nMAIL FROM:<evil@shop.test>\r\n" in content for content in seen)
