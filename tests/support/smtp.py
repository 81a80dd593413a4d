"""SMTP helpers for end-to-end tests: what the sim's hosts accepted (with the envelope),
one transaction to a node's inbound server, and an authenticated submission."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from postline.runtime import Node
from postline.sim.runner import Simulator

__all__ = ["Seen", "capture", "smtp_send", "submit"]

DataHook = Callable[[Any, Session, Envelope], Awaitable[str]]


@dataclass
class Seen:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


def capture(sim: Simulator) -> list[Seen]:
    """Every transaction the sim's hosts accept after DATA, with its envelope (installed
    before any connection: a connection binds the hooks when it starts)."""
    seen: list[Seen] = []
    for host in sim.hosts.values():
        original: DataHook = host.handler.handle_DATA

        async def handle_data(
            server: Any, session: Session, envelope: Envelope, original: DataHook = original
        ) -> str:
            item = Seen(
                str(envelope.mail_from or ""),
                list(envelope.rcpt_tos),
                envelope.original_content or b"",
            )
            reply = await original(server, session, envelope)
            if reply.startswith("2"):
                seen.append(item)
            return reply

        host.handler.handle_DATA = handle_data  # type: ignore[method-assign]
    return seen


def smtp_send(
    address: tuple[str, int],
    mail_from: str,
    rcpts: list[str],
    data: bytes,
    *,
    ehlo: str = "reporter.test",
) -> dict[str, tuple[int, bytes]]:
    """One transaction; the reply to each RCPT (and "DATA" when it got that far)."""
    out: dict[str, tuple[int, bytes]] = {}
    with smtplib.SMTP(address[0], address[1], timeout=10) as s:
        s.ehlo(ehlo)
        s.mail(mail_from)
        for r in rcpts:
            out[r] = s.rcpt(r)
        if any(code == 250 for code, _ in out.values()):
            out["DATA"] = s.data(data)
        else:
            s.rset()
    return out


async def submit(
    node: Node, key: str, mail_from: str, rcpts: list[str], message: bytes, user: str = "acme"
) -> None:
    """Submit over the node's SMTP submission port: STARTTLS, AUTH with the API key."""
    assert node.submission_address is not None
    host, port = node.submission_address
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def run() -> None:
        with smtplib.SMTP(host, port, timeout=10) as s:
            s.ehlo("client.test")
            s.starttls(context=ctx)
            s.ehlo("client.test")
            s.login(user, key)
            s.sendmail(mail_from, rcpts, message)

    await asyncio.to_thread(run)
