"""A message over the SIZE limit gets its 552, not a silent hang.

The chunked DATA reader must still find the end of data after it dropped an oversize
part, or the client waits for a reply that never comes and retries forever.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postline.runtime import Node
from support.node import add_tenant, running_node

LIMIT = 20_000


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(
        tmp_path, "[delivery]\nenabled = false\n", submission_extra=f"max_message_size = {LIMIT}"
    ) as n:
        yield n


def _send_oversize(node: Node, key: str, body: bytes) -> bytes:
    assert node.submission_address is not None
    host, port = node.submission_address
    s = smtplib.SMTP(host, port, timeout=10)
    try:
        s.starttls(context=_tls())
        s.ehlo("client.test")
        s.login("acme", key)
        assert s.docmd("MAIL FROM:<ann@acme.test>")[0] == 250
        assert s.docmd("RCPT TO:<bob@example.test>")[0] == 250
        assert s.docmd("DATA")[0] == 354
        assert s.sock is not None
        # The whole message in one write, as any client streaming a file does.
        s.sock.sendall(b"Subject: big\r\n\r\n" + body + b"\r\n.\r\n")
        s.sock.settimeout(4)
        try:
            return s.sock.recv(1000)
        except TimeoutError:
            return b"<no reply within 4 s>"
    finally:
        s.close()  # no QUIT: the server may still be reading DATA


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"x" * (LIMIT + 5000), id="one-long-line"),
        pytest.param(b"\r\n".join([b"QUJD" * 19] * 400), id="base64-like-lines"),
    ],
)
async def test_oversize_message_gets_552(node: Node, body: bytes) -> None:
    key = await add_tenant(node)
    reply = await asyncio.to_thread(_send_oversize, node, key, body)
    assert reply.startswith(b"552 5.3.4"), reply
