"""A tiny HTTP JSON API to watch and reset a running simulator (loopback only).

=========================== ==============================================================
request                     answer
=========================== ==============================================================
``GET /healthz``            ``{"ok": true, "running": true}``
``GET /report``             the :class:`~postline.sim.recorder.SimReport` as JSON;
                            ``?window=0.5`` sets the peak-rate window, ``?details=0``
                            leaves the per-record lists out
``POST /reset``             forgets the records; ``?state=1`` also forgets greylisting,
                            rate windows and drop memory. Answers ``{"ok": true}``
``GET /config``             ``{"dns", "smtp_port", "addresses", "domains", "hints"}``
=========================== ==============================================================

Each request gets one response and the connection is closed (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import parse_qs, urlsplit

from postline.sim.config import check_loopback
from postline.sim.runner import Simulator

__all__ = ["ControlServer"]

log = logging.getLogger(__name__)

_MAX_HEAD = 65536
_MAX_BODY = 1 << 20
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}


class ControlServer:
    """Serve the control API of ``sim`` on ``host:port`` (127.0.0.0/8 only; port 0: any)."""

    def __init__(self, sim: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = check_loopback(host, "control address")
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            status, body = await self._answer(reader)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, bytes]:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > _MAX_HEAD:
            return 400, _json({"error": "request head too large"})
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return 400, _json({"error": "bad request line"})
        method, target, _ = parts
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                try:
                    length = int(value.strip())
                except ValueError:
                    return 400, _json({"error": "bad Content-Length"})
        if length > _MAX_BODY:
            return 400, _json({"error": "body too large"})
        if length:
            await reader.readexactly(length)
        url = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        return self._route(method.upper(), url.path, query)

    def _route(self, method: str, path: str, query: dict[str, str]) -> tuple[int, bytes]:
        sim = self.sim
        if path == "/healthz":
            return 200, _json({"ok": True, "running": sim.running})
        if path == "/report":
            if method != "GET":
                return 405, _json({"error": "use GET"})
            try:
                window = float(query["window"]) if "window" in query else None
            except ValueError:
                return 400, _json({"error": "window must be a number of seconds"})
            if window is not None and window <= 0:
                return 400, _json({"error": "window must be positive"})
            details = query.get("details", "1") not in ("0", "false", "no")
            return 200, sim.report(window, details=details).to_json().encode()
        if path == "/reset":
            if method != "POST":
                return 405, _json({"error": "use POST"})
            sim.reset(state=query.get("state", "0") in ("1", "true", "yes"))
            return 200, _json({"ok": True})
        if path == "/config":
            return 200, _json(
                {
                    "dns": sim.dns_address if sim.running else None,
                    "smtp_port": sim.smtp_port,
                    "addresses": sim.addresses,
                    "domains": {d.name: d.kind for d in sim.domains},
                    "hints": sim.throttle_hints(),
                }
            )
        return 404, _json({"error": f"no route {path}"})


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()
