"""Fixtures for the simulator tests: a simulator factory and a minimal SMTP client.

The client speaks raw SMTP over asyncio streams so the tests see every reply line as
the simulator wrote it (multi-line replies, the command that drew them, the connection
closing after a 421).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from postline.sim import DomainSpec, SimConfig, Simulator


@dataclass(frozen=True)
class Reply:
    code: int
    lines: list[str]

    @property
    def text(self) -> str:
        """All lines without their ``NNN-`` / ``NNN `` prefixes, joined by spaces; the
        enhanced code repeated on continuation lines is dropped."""
        code = self.enhanced
        rest = [ln[4:].removeprefix(code).strip() if code else ln[4:] for ln in self.lines[1:]]
        return " ".join([self.lines[0][4:], *rest])

    @property
    def enhanced(self) -> str:
        first = self.lines[0][4:].split(" ", 1)[0]
        return first if first[:1] in "245" and first.count(".") == 2 else ""


class Closed(ConnectionError):
    """The server closed the connection before a complete reply."""


class RawSMTP:
    """A tiny SMTP client for tests: one command, one reply."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.banner: Reply | None = None

    @classmethod
    async def open(
        cls, host: str, port: int, *, source: str | None = None, timeout: float = 5.0
    ) -> RawSMTP:
        local = (source, 0) if source else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=local), timeout
        )
        client = cls(reader, writer)
        client.banner = await client.reply(timeout)
        return client

    async def reply(self, timeout: float = 5.0) -> Reply:
        lines: list[str] = []
        while True:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
            if not raw:
                raise Closed(lines)
            line = raw.decode().rstrip("\r\n")
            lines.append(line)
            if line[3:4] != "-":
                return Reply(int(line[:3]), lines)

    async def cmd(self, line: str, timeout: float = 5.0) -> Reply:
        self.writer.write(line.encode() + b"\r\n")
        await self.writer.drain()
        return await self.reply(timeout)

    async def ehlo(self, name: str = "client.sender.test") -> Reply:
        return await self.cmd(f"EHLO {name}")

    async def data(self, body: bytes, timeout: float = 5.0) -> Reply:
        """Send DATA, then the message (dot-stuffed) and the final dot."""
        reply = await self.cmd("DATA", timeout)
        if reply.code != 354:
            return reply
        lines = body.replace(b"\r\n", b"\n").split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        payload = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
        self.writer.write(payload + b".\r\n")
        await self.writer.drain()
        return await self.reply(timeout)

    async def send(
        self, mail_from: str, rcpts: list[str], body: bytes, timeout: float = 5.0
    ) -> dict[str, Any]:
        """One transaction in lock step; returns the replies by command."""
        out: dict[str, Any] = {"mail": await self.cmd(f"MAIL FROM:<{mail_from}>", timeout)}
        if out["mail"].code != 250:
            return out
        out["rcpt"] = [await self.cmd(f"RCPT TO:<{r}>", timeout) for r in rcpts]
        if not any(r.code == 250 for r in out["rcpt"]):
            await self.cmd("RSET", timeout)
            return out
        out["data"] = await self.data(body, timeout)
        return out

    async def closed(self, timeout: float = 2.0) -> bool:
        """True when the server has closed the connection (EOF within ``timeout``)."""
        try:
            data = await asyncio.wait_for(self.reader.read(1), timeout)
        except (TimeoutError, ConnectionError):
            return False
        return data == b""

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.write(b"QUIT\r\n")
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def message(message_id: str, subject: str = "hello", extra: str = "") -> bytes:
    return (
        f"From: sender@sender.test\r\nTo: someone@example.test\r\nSubject: {subject}\r\n"
        f"Message-ID: {message_id}\r\n{extra}\r\nHello.\r\n.leading dot\r\n"
    ).encode()


StartSim = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def start_sim() -> AsyncIterator[StartSim]:
    """``await start_sim(domain, ..., **config)`` starts a simulator stopped at teardown."""
    sims: list[Simulator] = []

    async def start(*domains: DomainSpec, **config: Any) -> Simulator:
        sim = Simulator(SimConfig(domains=domains, **config))
        await sim.start()
        sims.append(sim)
        return sim

    yield start
    for sim in sims:
        await sim.stop()


Connect = Callable[..., Awaitable[RawSMTP]]


@pytest.fixture
async def smtp() -> AsyncIterator[Connect]:
    """``await smtp(sim, "mx.host.test", source=None)``: a RawSMTP to that simulated host
    (banner read), closed at teardown."""
    clients: list[RawSMTP] = []

    async def connect(sim: Simulator, host: str, **kw: Any) -> RawSMTP:
        client = await RawSMTP.open(sim.addresses[host], sim.smtp_port, **kw)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        await client.close()


@pytest.fixture
def msg() -> Callable[..., bytes]:
    return message
