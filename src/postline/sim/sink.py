"""A fast recording SMTP sink: accepts every transaction and counts what it received.

For tests and benchmarks that need many thousands of messages per second on loopback and
one answer at the end: which (Message-ID, recipient) pairs arrived, and how many of them
arrived more than once. It speaks just enough ESMTP for a client (EHLO with PIPELINING,
MAIL, RCPT, DATA, RSET, NOOP, QUIT), has no TLS, no limits and no policies — the
provider-like behaviour lives in :mod:`postline.sim.mx`.

Run it in a process of its own to keep its CPU apart from the node's::

    python -m postline.sim.sink --port 2626 --control 2627

``GET /stats`` on the control port answers ``{"transactions", "recipients", "unique",
"duplicates", "first_at", "last_at"}``; ``GET /pairs`` the duplicated pairs (at most
1,000); ``POST /seen`` with a JSON array of [Message-ID, recipient] pairs answers
``{"seen": n}``, how many of them arrived; ``POST /reset`` forgets everything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import time
from collections import Counter
from typing import Any, cast

__all__ = ["Sink", "SinkStats"]

_MESSAGE_ID = re.compile(rb"(?im)^message-id:[ \t]*(<[^>\r\n]*>)")
_HEADER_LIMIT = 65536  # the Message-ID is looked for in the first bytes of a message
_EHLO = b"250-sink.postline.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 OK\r\n"


class SinkStats:
    """What a :class:`Sink` received."""

    def __init__(self) -> None:
        self.transactions = 0
        self.pairs: Counter[tuple[str, str]] = Counter()
        self.first_at: float | None = None
        self.last_at: float | None = None

    def accept(self, message_id: str, recipients: list[str]) -> None:
        now = time.time()
        if self.first_at is None:
            self.first_at = now
        self.last_at = now
        self.transactions += 1
        for r in recipients:
            self.pairs[(message_id, r.lower())] += 1

    @property
    def recipients(self) -> int:
        return sum(self.pairs.values())

    @property
    def duplicates(self) -> int:
        """Deliveries beyond the first of each (Message-ID, recipient) pair."""
        return sum(n - 1 for n in self.pairs.values() if n > 1)

    def summary(self) -> dict[str, Any]:
        return {
            "transactions": self.transactions,
            "recipients": self.recipients,
            "unique": len(self.pairs),
            "duplicates": self.duplicates,
            "first_at": self.first_at,
            "last_at": self.last_at,
        }


class _Session(asyncio.Protocol):
    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.in_data = False
        self.rcpts: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(b"220 sink.postline.test ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        out: list[bytes] = []
        while True:
            if self.in_data:
                end = self.buffer.find(b"\r\n.\r\n")
                if end < 0:
                    break
                message = bytes(self.buffer[: end + 2])
                del self.buffer[: end + 5]
                self.in_data = False
                found = _MESSAGE_ID.search(message[:_HEADER_LIMIT])
                mid = found.group(1).decode("ascii", "replace") if found else ""
                self.sink.stats.accept(mid, self.rcpts)
                self.rcpts = []
                out.append(b"250 2.0.0 queued\r\n")
                continue
            nl = self.buffer.find(b"\r\n")
            if nl < 0:
                break
            line = bytes(self.buffer[:nl])
            del self.buffer[: nl + 2]
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                out.append(_EHLO)
            elif verb == b"MAIL":
                self.rcpts = []
                out.append(b"250 2.1.0 OK\r\n")
            elif verb == b"RCPT":
                addr = line[8:].strip().decode("utf-8", "replace")
                self.rcpts.append(addr.split(">")[0].lstrip("<"))
                out.append(b"250 2.1.5 OK\r\n")
            elif verb == b"DATA":
                self.in_data = True
                out.append(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                out.append(b"221 2.0.0 bye\r\n")
                self._flush(out)
                if self.transport is not None:
                    self.transport.close()
                return
            else:  # RSET, NOOP and anything else
                self.rcpts = [] if verb == b"RSET" else self.rcpts
                out.append(b"250 2.0.0 OK\r\n")
        self._flush(out)

    def _flush(self, out: list[bytes]) -> None:
        if out and self.transport is not None:
            delay = self.sink.delay
            if delay and any(o.startswith(b"250 2.0.0 queued") for o in out):
                loop = asyncio.get_running_loop()
                loop.call_later(delay, self.transport.write, b"".join(out))
            else:
                self.transport.write(b"".join(out))


class Sink:
    """The SMTP server; ``delay`` seconds before each reply to the end of DATA."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.stats = SinkStats()
        self._server: asyncio.Server | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Session(self), host, port, backlog=1024)
        addr = self._server.sockets[0].getsockname()
        return str(addr[0]), int(addr[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None


async def _control(sink: Sink, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await reader.readline()
        length = 0
        while line := (await reader.readline()).strip():
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        method, path, *_ = [*request.decode("ascii", "replace").split(), "", ""]
        if method == "POST" and path == "/reset":
            sink.stats = SinkStats()
            body: Any = {"reset": True}
        elif method == "POST" and path == "/seen":
            wanted = json.loads(await reader.readexactly(length)) if length else []
            pairs = sink.stats.pairs
            body = {"seen": sum(1 for m, r in wanted if (m, r.lower()) in pairs)}
        elif path == "/pairs":
            dups = [[m, r, n] for (m, r), n in sink.stats.pairs.items() if n > 1]
            body = dups[:1000]
        else:
            body = sink.stats.summary()
        data = json.dumps(body).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(data)}\r\nconnection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
    finally:
        writer.close()


async def _main(args: argparse.Namespace) -> None:
    sink = Sink(delay=args.delay)
    host, port = await sink.start(args.host, args.port)
    control = await asyncio.start_server(lambda r, w: _control(sink, r, w), args.host, args.control)
    cport = control.sockets[0].getsockname()[1]
    print(json.dumps({"smtp": f"{host}:{port}", "control": f"{args.host}:{cport}"}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    control.close()
    await sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control", type=int, default=0)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(_main(args))
    except ImportError:
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()
