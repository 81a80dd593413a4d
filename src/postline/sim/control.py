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
``GET /feedback``           the late bounces, complaints and auto-replies planned so far:
                            ``{"target", "fbl_address", "settled", "totals", "by_kind",
                            "by_format", "items"}``; ``?wait=5`` first waits up to 5 s
                            (at most 60) for pending items, ``?details=0`` leaves
                            ``items`` out
``POST /feedback/target``   ``?to=HOST:PORT`` (loopback) and/or ``?fbl=ADDRESS`` change
                            where feedback goes from now on (``none`` unsets); answers
                            ``{"ok": true, "target", "fbl_address"}``
=========================== ==============================================================

``/feedback``'s ``totals`` counts ``planned``, ``pending``, ``sent`` and ``failed`` items;
``by_kind`` (``dsn``, ``arf``, ``autoreply``) and ``by_format`` (``"dsn/postfix"``...)
count the same per kind and format. Each item of ``items`` is a
:class:`~postline.sim.recorder.FeedbackRecord`: ``id``, ``time``, ``kind``, ``format``,
``recipient``, ``domain``, ``host``, ``mail_from``, ``message_id``, ``postline_id``,
``reason``, ``status``, ``feedback_from``, ``feedback_to``, ``state``, ``target``,
``attempts``, ``reply``, ``sent_at``.

Each request gets one response and the connection is closed (``Connection: close``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import asdict
from typing import Any
from urllib.parse import parse_qs, urlsplit

from postline.errors import ConfigError
from postline.sim.config import check_loopback
from postline.sim.runner import Simulator

__all__ = ["ControlServer"]

log = logging.getLogger(__name__)

_MAX_HEAD = 65536
_MAX_BODY = 1 << 20
_MAX_WAIT = 60.0
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
        if url.path == "/feedback" and "wait" in query and method.upper() == "GET":
            try:
                wait = float(query["wait"])
            except ValueError:
                return 400, _json({"error": "wait must be a number of seconds"})
            if not 0 <= wait <= _MAX_WAIT:
                return 400, _json({"error": f"wait must be 0..{_MAX_WAIT:g} seconds"})
            await self.sim.settle_feedback(wait)
        return self._route(method.upper(), url.path, query)

    def _feedback(self, query: dict[str, str]) -> dict[str, Any]:
        sim = self.sim
        recorder = sim.recorder
        details = query.get("details", "1") not in ("0", "false", "no")
        summary = recorder.feedback_summary()
        return {
            "target": sim.feedback.target_text,
            "fbl_address": sim.feedback.fbl_address,
            "settled": sim.feedback.pending == 0,
            **summary,
            **({"items": [asdict(r) for r in recorder.feedback_records()]} if details else {}),
        }

    def _feedback_target(self, query: dict[str, str]) -> tuple[int, bytes]:
        sim = self.sim
        if "to" not in query and "fbl" not in query:
            return 400, _json({"error": "give to=HOST:PORT and/or fbl=ADDRESS"})
        try:
            if "to" in query:
                to = query["to"]
                sim.set_feedback_to(None if to.lower() == "none" else to)
            if "fbl" in query:
                fbl = query["fbl"]
                sim.set_fbl_address(None if fbl.lower() == "none" else fbl)
        except ConfigError as exc:
            return 400, _json({"error": str(exc)})
        return 200, _json(
            {
                "ok": True,
                "target": sim.feedback.target_text,
                "fbl_address": sim.feedback.fbl_address,
            }
        )

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
        if path == "/feedback":
            if method != "GET":
                return 405, _json({"error": "use GET"})
            return 200, _json(self._feedback(query))
        if path == "/feedback/target":
            if method != "POST":
                return 405, _json({"error": "use POST"})
            return self._feedback_target(query)
        return 404, _json({"error": f"no route {path}"})


def _json(data: Any) -> bytes:
    return json.dumps(data).encode()
