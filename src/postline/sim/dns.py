"""An authoritative DNS server for the simulator, the demo and the tests.

:class:`DNSServer` answers every name from one mutable :class:`Zone` over UDP and TCP on
the same port, so a postline node (or ``dig``) can be pointed at it and never leave
loopback. Messages are parsed and built with dnspython.

Answers follow what a real authoritative server does:

- names are compared case-insensitively, without the trailing dot, IDNA-encoded
  (``bücher.example`` and ``xn--bcher-kva.example`` are the same name);
- a name exists when it owns a record or when a deeper name does (an "empty non-terminal",
  RFC 8020): with only ``mx1.example.test`` in the zone, ``example.test`` is NODATA, not
  NXDOMAIN;
- an unknown name gets NXDOMAIN, a known name without the asked type gets NOERROR with an
  empty answer (NODATA); both carry an SOA in the authority section whose MINIMUM is the
  negative TTL (RFC 2308); every answer has the AA flag;
- a CNAME is followed inside the zone (at most 8 links), the chain is put in the answer;
- UDP answers larger than 512 bytes (or the EDNS payload the client announced) are
  truncated with the TC bit, and the client gets the whole answer over TCP;
- names in ``Zone.servfail`` are answered with SERVFAIL, names in ``Zone.blackhole`` are
  never answered (the client times out), names in ``Zone.delay`` are answered late.

The zone may be changed while the server runs; the next query sees the change.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import NamedTuple, TypeVar, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rrset

__all__ = ["DNSServer", "QueryRecord", "Zone"]

log = logging.getLogger(__name__)

_V = TypeVar("_V")

_IN = dns.rdataclass.IN
_UDP_DEFAULT_SIZE = 512  # RFC 1035 §4.2.1, without EDNS
_MAX_CNAME_CHAIN = 8
_MAX_TXT_STRING = 255  # bytes in one character-string (RFC 1035 §3.3)
_QUERY_LOG_SIZE = 10_000


@dataclass
class Zone:
    """Records served; mutable at run time (tests add records while the server runs).

    Keys are domain names in any case, with or without the trailing dot, in Unicode or in
    their IDNA (``xn--``) form. ``mx`` maps a domain to ``(preference, host)`` pairs;
    ``[(0, ".")]`` is a null MX (RFC 7505). A ``txt`` value longer than 255 bytes is sent
    as several character-strings of one record, as DNS requires. ``ttl`` is the TTL of
    every record; ``negative_ttl`` (default: ``ttl``) is the SOA MINIMUM sent with
    NXDOMAIN and NODATA answers. ``delay`` holds names answered only after that many
    seconds (a slow DNS server).
    """

    mx: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    txt: dict[str, list[str]] = field(default_factory=dict)
    cname: dict[str, str] = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    blackhole: set[str] = field(default_factory=set)
    delay: dict[str, float] = field(default_factory=dict)
    ttl: int = 300
    negative_ttl: int | None = None


class QueryRecord(NamedTuple):
    """One query the server received: name (normalised), type (``"MX"``) and transport."""

    name: str
    rdtype: str
    transport: str  # "udp" or "tcp"


@functools.lru_cache(maxsize=8192)
def _norm(name: str) -> str:
    """The comparison form of a name: IDNA-encoded, lower case, no trailing dot."""
    text = name.strip()
    if text in ("", "."):
        return ""
    try:
        return dns.name.from_text(text).to_text(omit_final_dot=True).lower()
    except (dns.exception.DNSException, UnicodeError, ValueError):
        return text.rstrip(".").lower()


def _find(mapping: Mapping[str, _V], name: str) -> _V | None:
    """The value stored under ``name`` (compared in normalised form), or None."""
    value = mapping.get(name)
    if value is not None:
        return value
    for key, value in list(mapping.items()):
        if _norm(key) == name:
            return value
    return None


def _contains(names: Iterable[str], name: str) -> bool:
    return any(_norm(key) == name for key in list(names))


def _absolute(name: str) -> dns.name.Name:
    return dns.name.from_text(name) if name else dns.name.root


def _apex(name: str) -> str:
    """The name the simulated zone's SOA sits at: the top-level label of ``name``."""
    return name.rsplit(".", 1)[-1]


def _rdata(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    return dns.rdata.from_text(_IN, rdtype, text)


def _txt_strings(value: str) -> list[bytes]:
    data = value.encode()
    if not data:
        return [b""]
    return [data[i : i + _MAX_TXT_STRING] for i in range(0, len(data), _MAX_TXT_STRING)]


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Not every loop's datagram transport subclasses DatagramTransport; cast, don't check.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        reply, delay = self._server._process(data, "udp")
        if reply is None or self._transport is None:
            return
        if delay > 0:
            self._server._later(delay, self._send, reply, addr)
        else:
            self._transport.sendto(reply, addr)

    def _send(self, reply: bytes, addr: tuple[str | int, ...]) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if not self.closed.done():
            self.closed.set_result(None)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc, extra={"action": "sim.dns.udp_error"})


class DNSServer:
    """Serve ``zone`` authoritatively on ``host``, UDP and TCP on the same port.

    ``port=0`` picks a free port usable for both. ``queries`` counts the queries answered
    (blackholed ones are not answered); ``query_log`` keeps the last 10,000 queries
    received, answered or not. Usable as ``async with DNSServer(zone) as server:``.
    """

    def __init__(self, zone: Zone, host: str = "127.0.0.1", port: int = 0) -> None:
        self.zone = zone
        self.host = host
        self.port = port
        self.queries = 0
        self.query_log: deque[QueryRecord] = deque(maxlen=_QUERY_LOG_SIZE)
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_protocol: _UDPProtocol | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._pending: set[asyncio.TimerHandle] = set()

    @property
    def address(self) -> str:
        """``host:port`` (``[host]:port`` for IPv6), the form postline's resolver takes."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def count(
        self, name: str | None = None, rdtype: str | None = None, transport: str | None = None
    ) -> int:
        """How many logged queries match the given name, type and transport."""
        want = _norm(name) if name is not None else None
        return sum(
            1
            for q in self.query_log
            if (want is None or q.name == want)
            and (rdtype is None or q.rdtype == rdtype.upper())
            and (transport is None or q.transport == transport)
        )

    async def start(self) -> None:
        """Bind UDP and TCP; with port 0, retry until one port is free for both."""
        if self._udp is not None:
            raise RuntimeError("DNS server already started")
        loop = asyncio.get_running_loop()
        tries = 50 if self.port == 0 else 1
        for attempt in range(tries):
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: _UDPProtocol(self), local_addr=(self.host, self.port)
            )
            port = int(transport.get_extra_info("sockname")[1])
            try:
                server = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError:
                transport.close()
                if attempt == tries - 1:
                    raise
                continue
            self._udp, self._udp_protocol, self._tcp = transport, protocol, server
            self.port = port
            break
        log.debug(
            "dns server listening on %s",
            self.address,
            extra={"action": "sim.dns.start", "address": self.address},
        )

    async def stop(self) -> None:
        """Close both sockets and every open TCP connection."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._udp_protocol is not None:
            await self._udp_protocol.closed  # the socket is released: the port is free again
            self._udp_protocol = None
        if self._tcp is not None:
            self._tcp.close()
            # Closing a connection's transport ends its handler at the next read; the
            # handler tasks belong to asyncio's stream machinery and are not cancelled.
            tasks = list(self._connections)
            for writer in self._connections.values():
                writer.close()
            if tasks:
                await asyncio.wait(tasks, timeout=5.0)
            await self._tcp.wait_closed()
            self._tcp = None

    async def __aenter__(self) -> DNSServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                try:
                    size = int.from_bytes(await reader.readexactly(2), "big")
                    data = await reader.readexactly(size)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                reply, delay = self._process(data, "tcp")
                if reply is None:
                    continue
                if delay > 0:
                    await asyncio.sleep(delay)
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def respond(self, data: bytes, transport: str = "udp") -> bytes | None:
        """The wire answer to one wire query, as the sockets send it; None: no answer.

        ``transport="udp"`` applies the UDP size limit (TC bit); ``Zone.delay`` is not
        applied here, only by the sockets.
        """
        return self._process(data, transport)[0]

    def _later(self, delay: float, callback: Callable[..., None], *args: object) -> None:
        """Run ``callback(*args)`` after ``delay`` seconds unless the server stops first."""

        def fire() -> None:
            self._pending.discard(handle)
            callback(*args)

        handle = asyncio.get_running_loop().call_later(delay, fire)
        self._pending.add(handle)

    def _process(self, data: bytes, transport: str) -> tuple[bytes | None, float]:
        """Wire query in → (wire answer or None for no answer, seconds to wait first)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return None, 0.0  # not a DNS message worth answering
        delay = 0.0
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        else:
            question = query.question[0]
            name = _norm(question.name.to_text())
            rdtype = dns.rdatatype.RdataType.make(question.rdtype)
            self.query_log.append(QueryRecord(name, dns.rdatatype.to_text(rdtype), transport))
            if _contains(self.zone.blackhole, name):
                return None, 0.0
            delay = float(_find(self.zone.delay, name) or 0.0)
            try:
                self._answer(response, name, rdtype)
            except Exception:
                # The per-query boundary: a bad record in the zone must not stop the server.
                log.exception("cannot answer %s", name, extra={"action": "sim.dns.error"})
                response = dns.message.make_response(query)
                response.flags |= dns.flags.AA
                response.set_rcode(dns.rcode.SERVFAIL)
        self.queries += 1
        if transport == "udp":
            size = query.payload if query.edns >= 0 else _UDP_DEFAULT_SIZE
            return response.to_wire(max_size=size, prefer_truncation=True), delay
        return response.to_wire(prefer_truncation=True), delay

    def _answer(self, response: dns.message.Message, name: str, rdtype: int) -> None:
        zone = self.zone
        if _contains(zone.servfail, name):
            response.set_rcode(dns.rcode.SERVFAIL)
            return
        current = name
        for _ in range(_MAX_CNAME_CHAIN):
            target = None if rdtype == dns.rdatatype.CNAME else _find(zone.cname, current)
            if target is None:
                break
            link = _rdata(dns.rdatatype.CNAME, _absolute(_norm(target)).to_text())
            response.answer.append(self._rrset(current, [link]))
            current = _norm(target)
        else:
            response.set_rcode(dns.rcode.SERVFAIL)  # CNAME loop
            return
        rdatas = self._records(current, rdtype)
        if rdatas:
            by_type: dict[int, list[dns.rdata.Rdata]] = {}
            for rdata in rdatas:
                by_type.setdefault(rdata.rdtype, []).append(rdata)
            response.answer.extend(self._rrset(current, group) for group in by_type.values())
            return
        if not self._exists(current):
            response.set_rcode(dns.rcode.NXDOMAIN)
        response.authority.append(self._soa(current))

    def _records(self, name: str, rdtype: int) -> list[dns.rdata.Rdata]:
        zone = self.zone
        out: list[dns.rdata.Rdata] = []
        any_type = rdtype == dns.rdatatype.ANY
        if rdtype == dns.rdatatype.MX or any_type:
            for preference, host in _find(zone.mx, name) or []:
                exchange = _absolute(_norm(host)).to_text()
                out.append(_rdata(dns.rdatatype.MX, f"{int(preference)} {exchange}"))
        if rdtype == dns.rdatatype.A or any_type:
            for address in _find(zone.a, name) or []:
                out.append(_rdata(dns.rdatatype.A, address))
        if rdtype == dns.rdatatype.AAAA or any_type:
            for address in _find(zone.aaaa, name) or []:
                out.append(_rdata(dns.rdatatype.AAAA, address))
        if rdtype == dns.rdatatype.TXT or any_type:
            for value in _find(zone.txt, name) or []:
                out.append(dns.rdtypes.ANY.TXT.TXT(_IN, dns.rdatatype.TXT, _txt_strings(value)))
        if rdtype == dns.rdatatype.CNAME or any_type:
            target = _find(zone.cname, name)
            if target is not None:
                out.append(_rdata(dns.rdatatype.CNAME, _absolute(_norm(target)).to_text()))
        if (rdtype == dns.rdatatype.SOA or any_type) and name == _apex(name):
            out.extend(self._soa(name))
        return out

    def _exists(self, name: str) -> bool:
        zone = self.zone
        suffix = "." + name
        for mapping in (zone.mx, zone.a, zone.aaaa, zone.txt, zone.cname):
            for key in list(mapping):
                key = _norm(key)
                if key == name or key.endswith(suffix):
                    return True
        return False

    def _soa(self, name: str) -> dns.rrset.RRset:
        zone = self.zone
        apex = _apex(name)
        origin = _absolute(apex)
        negative = zone.ttl if zone.negative_ttl is None else zone.negative_ttl
        # serial, refresh, retry, expire, then MINIMUM: the negative-caching TTL
        mname = dns.name.from_text("ns", origin).to_text()
        rname = dns.name.from_text("hostmaster", origin).to_text()
        rdata = _rdata(dns.rdatatype.SOA, f"{mname} {rname} 1 3600 600 86400 {int(negative)}")
        return dns.rrset.from_rdata_list(origin, zone.ttl, [rdata])

    def _rrset(self, name: str, rdatas: list[dns.rdata.Rdata]) -> dns.rrset.RRset:
        return dns.rrset.from_rdata_list(_absolute(name), self.zone.ttl, rdatas)
