"""A small HTTP/1.1 client for webhook deliveries.

Written here rather than taken from an HTTP library because a delivery needs things
those make awkward together: the connection goes to an address checked beforehand (see
:mod:`postline.webhooks.urls`) while TLS and ``Host`` use the URL's name; redirects are
never followed; at most ``max_body`` bytes of a response are read; one keep-alive
connection per endpoint, because an endpoint has one batch in flight at a time.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass

from postline.webhooks.urls import Target

__all__ = ["HttpClient", "HttpError", "Response"]


class HttpError(Exception):
    """No usable response: refused, reset, timed out, TLS failure, malformed reply."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    latency_ms: float


@dataclass(slots=True)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    key: tuple[str, int, bool, str]


class HttpClient:
    def __init__(self, *, timeout: float, user_agent: str, max_body: int = 65536) -> None:
        self.timeout = timeout
        self.user_agent = user_agent
        self.max_body = max_body
        self._conns: dict[str, _Conn] = {}
        self._tls = ssl.create_default_context()

    async def post(
        self,
        slot: str,
        target: Target,
        address: str,
        body: bytes,
        headers: Mapping[str, str],
    ) -> Response:
        """POST ``body`` to ``target`` at ``address``, on ``slot``'s kept-alive connection
        when it is still open; :class:`HttpError` when no response came."""
        request = self._request(target, body, headers)
        key = (address, target.port, target.tls, target.host)
        start = time.perf_counter()
        conn = self._conns.get(slot)
        if conn is not None and (conn.key != key or conn.writer.is_closing()):
            self.close(slot)
            conn = None
        try:
            async with asyncio.timeout(self.timeout):
                if conn is not None:
                    try:
                        return await self._exchange(slot, conn, request, start)
                    except (_Stale, ConnectionError):
                        # The receiver closed the idle connection: one more try on a new one.
                        self.close(slot)
                conn = await self._open(key)
                self._conns[slot] = conn
                return await self._exchange(slot, conn, request, start)
        except TimeoutError:
            self.close(slot)
            raise HttpError(f"no response within {self.timeout:g} s") from None
        except _Stale as exc:
            self.close(slot)
            raise HttpError(str(exc) or "the connection closed before a response") from None
        except (OSError, ssl.SSLError, ValueError, asyncio.IncompleteReadError) as exc:
            self.close(slot)
            raise HttpError(_describe(exc)) from None

    def close(self, slot: str) -> None:
        conn = self._conns.pop(slot, None)
        if conn is not None:
            conn.writer.close()

    def close_all(self) -> None:
        for slot in list(self._conns):
            self.close(slot)

    def _request(self, target: Target, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [
            f"POST {target.path} HTTP/1.1",
            f"Host: {target.host_header}",
            f"User-Agent: {self.user_agent}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
        for name, value in headers.items():
            if any(c in value or c in name for c in "\r\n"):
                raise ValueError(f"header {name!r} contains a line break")
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def _open(self, key: tuple[str, int, bool, str]) -> _Conn:
        address, port, tls, host = key
        reader, writer = await asyncio.open_connection(
            address,
            port,
            ssl=self._tls if tls else None,
            server_hostname=host if tls else None,
            limit=self.max_body + 65536,
        )
        return _Conn(reader, writer, key)

    async def _exchange(self, slot: str, conn: _Conn, request: bytes, start: float) -> Response:
        conn.writer.write(request)
        await conn.writer.drain()
        status_line = await conn.reader.readline()
        if not status_line:
            raise _Stale("the connection closed before a response")
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise ValueError(f"not an HTTP response: {status_line[:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        keep = parts[0] == "HTTP/1.1"
        while True:
            line = await conn.reader.readline()
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ValueError("the response headers were cut short")
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length" and value.isdigit():
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
            elif name == "connection":
                keep = value.lower() != "close" and (keep or value.lower() == "keep-alive")
        body, complete = await self._body(conn.reader, length, chunked)
        if not (keep and complete):
            self.close(slot)
        latency = (time.perf_counter() - start) * 1000
        return Response(status, body, latency)

    async def _body(
        self, reader: asyncio.StreamReader, length: int | None, chunked: bool
    ) -> tuple[bytes, bool]:
        """At most ``max_body`` bytes of the body, and whether the connection is left at
        the end of the response (reusable)."""
        cap = self.max_body
        if chunked:
            out = bytearray()
            while True:
                size_line = await reader.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out), True
                if len(out) + size > cap:
                    out += await _up_to(reader, cap - len(out))
                    return bytes(out), False
                out += await reader.readexactly(size)
                await reader.readline()
        if length is not None:
            if length > cap:
                return await _up_to(reader, cap), False
            return await reader.readexactly(length), True
        # No length: the body runs to the end of the connection.
        return await _up_to(reader, cap), False


async def _up_to(reader: asyncio.StreamReader, n: int) -> bytes:
    """Up to ``n`` bytes: fewer only when the connection ends first."""
    out = bytearray()
    while len(out) < n:
        chunk = await reader.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


class _Stale(Exception):
    """A kept-alive connection the receiver had already closed."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the response was cut short"
    return str(exc) or type(exc).__name__
