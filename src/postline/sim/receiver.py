"""A webhook receiver for tests, the demo and benchmarks (loopback only).

It answers POSTs over HTTP/1.1 keep-alive and records each one (headers, body, arrival
time). What it answers is scripted: ``script(n)`` for the n-th request (0-based) returns
the status to send and how long to wait first, so a test can fail the first tries, time
out once, or answer 410 Gone. With ``secret`` it checks the Standard Webhooks signature
itself and counts events per type (the demo's summary).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Received", "WebhookReceiver"]

Script = Callable[[int], tuple[int, float]]


@dataclass(frozen=True, slots=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    status: int
    """What the receiver answered (0: it never answered, the client gave up first)."""

    def events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = json.loads(self.body)
        return out


@dataclass
class WebhookReceiver:
    script: Script = lambda n: (200, 0.0)
    secret: str | None = None
    host: str = "127.0.0.1"
    received: list[Received] = field(default_factory=list)
    by_type: Counter[str] = field(default_factory=Counter)
    """Distinct events received (signature checked) per type."""
    duplicates: int = 0
    """Events received again (a retry after a lost answer, a replay)."""
    bad_signatures: int = 0
    connections: int = 0
    _server: asyncio.Server | None = None
    _count: int = 0
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _seen: set[str] = field(default_factory=set)

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, port)
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/hooks"

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def accepted(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.status < 300]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                headers: dict[str, str] = {}
                while True:
                    h = await reader.readline()
                    if h in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                n = self._count
                self._count += 1
                status, delay = self.script(n)
                # Recorded in arrival order; the status once answered (0 until then).
                self.received.append(Received(headers, body, time.time(), 0))
                if delay:
                    await asyncio.sleep(delay)
                if writer.is_closing() or reader.at_eof():
                    return  # the client gave up (closed its side) before the answer
                self.received[n] = Received(headers, body, self.received[n].at, status)
                if 200 <= status < 300 and self.secret is not None:
                    self._count_events(headers, body)
                reply = b'{"ok":true}' if status < 300 else b'{"error":"scripted"}'
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(reply)}\r\n\r\n".encode()
                    + reply
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            return
        finally:
            self._writers.discard(writer)
            writer.close()

    def _count_events(self, headers: dict[str, str], body: bytes) -> None:
        assert self.secret is not None
        key = base64.b64decode(self.secret.removeprefix("whsec_"))
        signed = f"{headers.get('webhook-id')}.{headers.get('webhook-timestamp')}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        given = [s.partition(",")[2] for s in headers.get("webhook-signature", "").split()]
        if not any(hmac.compare_digest(expected, g) for g in given):
            self.bad_signatures += 1
            return
        for event in json.loads(body):
            if event["id"] in self._seen:
                self.duplicates += 1
                continue
            self._seen.add(event["id"])
            self.by_type[event["type"]] += 1
