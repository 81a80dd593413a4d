"""The aiosmtpd protocol as postline's servers use it (the submission and inbound front
doors, :mod:`postline.submission` and :mod:`postline.inbound`); protocol only.

* Every reply carries an RFC 3463 enhanced status code: aiosmtpd writes some of its
  own replies without one (``503 Error: need MAIL command``); :meth:`push` adds the
  standard code for the reply class, and ``ENHANCEDSTATUSCODES`` is advertised.
* Replies are written without waiting for the socket to drain unless the write buffer
  is full, plain ``<local@domain>`` addresses skip the general RFC 5322 parser, and DATA
  is read in large chunks instead of line by line: a relay answers thousands of
  commands a second.
* AUTH PLAIN and LOGIN call an *async* credential check (aiosmtpd's authenticator is
  synchronous), and are offered only after STARTTLS. Password guessing is slowed down:
  each failure is answered after a pause, a session ends after three failures, and a
  user name with too many recent failures from one address (or an address with many
  more, whatever the user) gets ``454 4.7.0`` with the time left (:class:`AuthFailures`).
* A client that opens with a TLS handshake (an implicit-TLS client on this plain-text
  port) gets one clean log line and a ``500`` reply, and is disconnected.
* Hostile and broken clients are bounded (:class:`ConnectionLimits`,
  :class:`SessionTimeouts`): a listener holds at most so many connections from one client
  address and in all (``421 4.7.0`` / ``421 4.3.2`` and closed at once), and a
  connection is closed with ``421 4.4.2`` when it waits too long for a command line (bytes
  trickled without a line end do not count), spends too long in commands in all (NOOPs
  forever), or takes too long over one message's DATA (a byte every few seconds).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import logging
import math
import re
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session, TLSSetupException, syntax

from postline.smtp.node_counts import WorkerCounts
from postline.smtp.replies import S451_LOCAL_ERROR, S501_SYNTAX

__all__ = [
    "AuthFailures",
    "AuthUnavailable",
    "ConnectionLimits",
    "CredentialCheck",
    "EhloExtensions",
    "PostlineSMTP",
    "SessionTimeouts",
    "listen",
    "with_enhanced",
]

log = logging.getLogger(__name__)

CredentialCheck = Callable[[str, str], Awaitable[Any | None]]
"""(user name, password) → the identity to keep in the session, or None; raises
:class:`AuthUnavailable` when the credentials cannot be checked now."""


class AuthUnavailable(Exception):
    """The credentials cannot be checked now (the store is down): ``454 4.7.0``."""


_SIMPLE_ADDRESS = re.compile(r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,255})>")
_UNSTUFF = re.compile(rb"(^|\r\n)\.")
_HAS_ENHANCED = re.compile(rb"^\d{3}[ -][245]\.\d{1,3}\.\d{1,3}(?:[ \r]|$)")
_CODE = re.compile(rb"^(\d{3})([ -])")
# Default enhanced codes by reply code (RFC 3463, RFC 5321 §4.2.3).
_DEFAULTS = {
    b"221": b"2.0.0",
    b"250": b"2.0.0",
    b"251": b"2.1.5",
    b"252": b"2.5.0",
    b"421": b"4.3.0",
    b"450": b"4.2.0",
    b"451": b"4.3.0",
    b"452": b"4.3.1",
    b"454": b"4.7.0",
    b"500": b"5.5.2",
    b"501": b"5.5.4",
    b"502": b"5.5.1",
    b"503": b"5.5.1",
    b"504": b"5.5.4",
    b"530": b"5.7.0",
    b"535": b"5.7.8",
    b"550": b"5.0.0",
    b"551": b"5.1.6",
    b"552": b"5.3.4",
    b"553": b"5.1.3",
    b"554": b"5.5.0",
    b"555": b"5.5.4",
}


@functools.lru_cache(maxsize=1024)
async def listen(
    factory: Callable[[], asyncio.BaseProtocol],
    *,
    host: str,
    port: int,
    sock: socket.socket | None = None,
) -> asyncio.Server:
    """Serve ``factory``'s sessions on ``sock`` (bound already: shared by the workers of
    a node) or on ``host:port``, in the running loop."""
    loop = asyncio.get_running_loop()
    if sock is not None:
        return await loop.create_server(factory, sock=sock)
    return await loop.create_server(factory, host=host, port=port, reuse_address=True)


def with_enhanced(reply: bytes) -> bytes:
    """Add the default enhanced status code to a reply line that lacks one."""
    if _HAS_ENHANCED.match(reply):
        return reply
    m = _CODE.match(reply)
    if m is None:
        return reply
    enhanced = _DEFAULTS.get(m.group(1))
    if enhanced is None:
        return reply
    rest = reply[4:]
    if rest.startswith(b"Error: "):
        rest = rest[7:]
    return m.group(1) + m.group(2) + enhanced + b" " + rest


class EhloExtensions:
    """Handler mix-in: remembers the client's EHLO name and adds the extensions postline's
    servers implement on top of aiosmtpd's (PIPELINING, ENHANCEDSTATUSCODES)."""

    async def handle_EHLO(
        self, server: Any, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", "250-ENHANCEDSTATUSCODES", responses[-1]]


class AuthFailures:
    """Recent AUTH failures, counted per (client address, user name) and per address.

    A user name from one address is locked out after ``per_user`` failures within
    ``window`` seconds: one client's wrong key does not lock out another user behind the
    same address (a NAT, a host running several applications). An address is locked out
    for every user after ``per_address`` failures, a much higher count, so that guessing
    across many user names is still cut off. A lockout lasts until enough failures are
    older than ``window``; :meth:`locked_for` says how long that is. One process counts
    alone (a node's workers and a fleet's nodes count apart). :meth:`clear` forgets
    failures at once, for an operator.
    """

    def __init__(
        self,
        per_user: int = 10,
        per_address: int = 100,
        window: float = 600.0,
        max_keys: int = 10000,
    ) -> None:
        self.per_user = per_user
        self.per_address = per_address
        self.window = window
        self.max_keys = max_keys
        self._by_user: dict[tuple[str, str], list[float]] = {}
        self._by_address: dict[str, list[float]] = {}

    def locked_for(self, address: str, user: str, now: float) -> tuple[float, bool]:
        """(seconds until AUTH is let through again, whether the whole address is locked
        out); ``(0.0, False)`` when it is let through now."""
        wait = _wait(self._by_address, address, self.per_address, self.window, now)
        if wait > 0:
            return wait, True
        return _wait(self._by_user, (address, user.lower()), self.per_user, self.window, now), False

    def add(self, address: str, user: str, now: float) -> None:
        """Count one failure of ``user`` from ``address``."""
        _append(self._by_user, (address, user.lower()), now, self.max_keys)
        _append(self._by_address, address, now, self.max_keys)

    def clear(self, address: str | None = None, user: str | None = None) -> int:
        """Forget failures at once: of one user from one address, of one user from any
        address, of every user from one address, or all (no argument). An address's own
        count loses the failures forgotten. Returns the (address, user) pairs forgotten."""
        name = user.lower() if user is not None else None
        if address is not None and name is None:
            self._by_address.pop(address, None)
        elif address is None and name is None:
            self._by_address.clear()
        keys = [
            k
            for k in self._by_user
            if (address is None or k[0] == address) and (name is None or k[1] == name)
        ]
        for key in keys:
            times = self._by_user.pop(key)
            left = self._by_address.get(key[0])
            if left is not None:
                for t in times:
                    with contextlib.suppress(ValueError):
                        left.remove(t)
                if not left:
                    del self._by_address[key[0]]
        return len(keys)


def _wait(seen: dict[Any, list[float]], key: Any, limit: int, window: float, now: float) -> float:
    """Seconds until ``key`` has fewer than ``limit`` failures in the window (0.0: now);
    failures older than the window are dropped."""
    times = seen.get(key)
    if not times:
        return 0.0
    recent = [t for t in times if now - t < window]
    if len(recent) < len(times):
        if recent:
            seen[key] = recent
        else:
            del seen[key]
    if len(recent) < limit:
        return 0.0
    return recent[len(recent) - limit] + window - now


def _append(seen: dict[Any, list[float]], key: Any, now: float, max_keys: int) -> None:
    if key not in seen and len(seen) >= max_keys:
        del seen[min(seen, key=lambda k: seen[k][-1])]  # the one idle the longest
    seen.setdefault(key, []).append(now)


def _log_refusal(limits: ConnectionLimits, address: str, reply: str, now: float) -> None:
    """One line per listener at most every minute, with the count so far (a flood of
    connections is not a flood of log lines)."""
    if limits.logged_at is not None and now - limits.logged_at < _REFUSALS_LOGGED_EVERY:
        return
    limits.logged_at = now
    log.warning(
        "refused a connection from %s (%s); %d refused so far on this listener",
        address,
        reply[10:],
        limits.refused,
        extra={"action": "smtp.connection_refused"},
    )


def _lockout_reply(seconds: float, whole_address: bool) -> str:
    minutes = math.ceil(seconds / 60)
    wait = f"{minutes} minute{'s' if minutes != 1 else ''}"
    who = "from your address" if whole_address else "for this user from your address"
    return f"454 4.7.0 Too many failed logins {who}; try again in {wait}"


TOO_MANY_FROM_ADDRESS = "421 4.7.0 Too many connections from your address"
TOO_MANY_CONNECTIONS = "421 4.3.2 Too many connections; try again later"


class ConnectionLimits:
    """The open connections of one listener, per client address and in all.

    :meth:`admit` counts a new connection, or says why it is refused: more than
    ``per_address`` from one address (not counted for addresses ``exempt`` says yes to,
    e.g. trusted networks), or more than ``total`` in all. :meth:`release` forgets it
    when it closes. With ``node`` (the workers of one node) the limits hold for the node:
    every worker's connections are counted (:mod:`postline.smtp.node_counts`); without it
    this process counts alone.
    """

    def __init__(
        self,
        per_address: int,
        total: int,
        exempt: Callable[[str], bool] | None = None,
        node: WorkerCounts | None = None,
    ) -> None:
        self.per_address = per_address
        self.total = total
        self._exempt = exempt
        self._node = node
        self._open: dict[str, int] = {}
        self._buckets: dict[str, int | None] = {}
        self._count = 0
        self.refused = 0
        """Connections refused so far."""
        self.logged_at: float | None = None
        """When a refusal was last logged (loop time)."""

    def admit(self, address: str) -> str | None:
        """Count a connection from ``address``: None when it may go on, else the reply
        that refuses it (then it is not counted)."""
        held = self._open.get(address, 0)
        node = self._node
        if node is None:
            if self._count >= self.total:
                self.refused += 1
                return TOO_MANY_CONNECTIONS
            if held >= self.per_address and not self._exempted(address):
                self.refused += 1
                return TOO_MANY_FROM_ADDRESS
        else:
            # The address's bucket in the node's table (None: exempt), kept for release.
            if held:
                bucket = self._buckets[address]
            else:
                bucket = None if self._exempted(address) else node.bucket(address)
            refused = node.admit(bucket, per_address=self.per_address, total=self.total)
            if refused is not None:
                self.refused += 1
                return TOO_MANY_CONNECTIONS if refused == "total" else TOO_MANY_FROM_ADDRESS
            self._buckets[address] = bucket
        self._open[address] = held + 1
        self._count += 1
        return None

    def _exempted(self, address: str) -> bool:
        return self._exempt is not None and self._exempt(address)

    def release(self, address: str) -> None:
        """A connection :meth:`admit` counted has closed."""
        held = self._open.get(address, 0)
        if held == 0:
            return
        self._count -= 1
        node = self._node
        bucket = self._buckets.get(address) if node is not None else None
        if held == 1:
            del self._open[address]
            self._buckets.pop(address, None)
        else:
            self._open[address] = held - 1
        if node is not None:
            node.release(bucket)

    def open(self, address: str | None = None) -> int:
        """Connections open from ``address``, or in all (at this process)."""
        return self._count if address is None else self._open.get(address, 0)


@dataclass(frozen=True, slots=True)
class SessionTimeouts:
    """How long a client may take, in seconds.

    ``idle``: from a command (or the greeting) to the next complete command line; bytes
    without a line end do not restart it. ``commands``: all the time of one connection
    outside DATA (a client that keeps a connection open with NOOPs). ``data``: from the
    ``354`` to the final dot of one message.
    """

    idle: float = 300.0
    commands: float = 1800.0
    data: float = 600.0


# Refusals are logged at most this often per listener, with their count.
_REFUSALS_LOGGED_EVERY = 60.0


AUTH_FAILURE_DELAY = 1.0
AUTH_FAILURES_PER_SESSION = 3


_WRITE_AT_ONCE = (b"220", b"221", b"421", b"502")
# A TLS record of type handshake (22), protocol major version 3: a ClientHello.
_TLS_HANDSHAKE = b"\x16\x03"
_TLS_ON_PLAIN = "500 5.5.2 TLS handshake on a plain-text port; connect in plain text, then STARTTLS"


class _Session(Session):
    """aiosmtpd's session without its ``login_data`` warning: aiosmtpd sets that
    deprecated attribute itself after every successful AUTH and logs "Session.login_data
    is deprecated" each time. postline never reads it (the identity is ``auth_data``)."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class PostlineSMTP(SMTP):
    """aiosmtpd's SMTP with enhanced codes everywhere, fast replies and async AUTH.

    ``auth_failures`` counts failed AUTH (no lockout without it); ``auth_exempt`` tells
    the client addresses it neither counts nor locks out (trusted networks).
    ``connection_limits`` (shared by every connection of a listener) refuses connections
    over its limits; ``timeouts`` bound how long a client may take (``timeout`` is
    ``timeouts.idle`` then).
    """

    def __init__(
        self,
        handler: Any,
        *,
        check_credentials: CredentialCheck | None = None,
        auth_failures: AuthFailures | None = None,
        auth_exempt: Callable[[str], bool] | None = None,
        connection_limits: ConnectionLimits | None = None,
        timeouts: SessionTimeouts | None = None,
        **kwargs: Any,
    ) -> None:
        self._limits = connection_limits
        self._timeouts = timeouts or SessionTimeouts(idle=float(kwargs.get("timeout", 300.0)))
        kwargs["timeout"] = self._timeouts.idle
        self._refusal: str | None = None
        self._counted: str | None = None  # the address counted in the limits
        self._in_data = False
        self._commands_since = 0.0  # when the current stretch of commands began
        self._commands_spent = 0.0  # seconds of commands before it
        self._check_credentials = check_credentials
        self._lockouts = auth_failures
        self._auth_exempt = auth_exempt
        self._in_hello = False
        self._auth_failures = 0
        self._replies: list[bytes] = []
        self._first_data = True
        super().__init__(handler, **kwargs)

    def _create_session(self) -> Session:
        return _Session(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None and self._counted is None:
            # A new connection (STARTTLS calls this again for the TLS transport).
            self._commands_since = self.loop.time()
            peer = transport.get_extra_info("peername")
            address = str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")
            if self._limits is not None:
                self._refusal = self._limits.admit(address)
                if self._refusal is None:
                    self._counted = address
                else:
                    _log_refusal(self._limits, address, self._refusal, self.loop.time())
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._counted is not None and self._limits is not None:
            self._limits.release(self._counted)
            self._counted = None
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if self._refusal is not None:
            # Over a connection limit: the refusal instead of the greeting, then close.
            transport: Any = self.transport
            if transport is not None and not transport.is_closing():
                transport.write(self._refusal.encode() + b"\r\n")
                transport.close()
            return
        await super()._handle_client()

    def _reset_timeout(self, duration: float | None = None) -> None:
        if duration is None and not self._in_data:
            # The idle timeout, cut short by what is left of the time for commands.
            left = self._timeouts.commands - self._commands_used()
            duration = max(0.001, min(self._timeouts.idle, left))
        super()._reset_timeout(duration)

    def _commands_used(self) -> float:
        return self._commands_spent + (self.loop.time() - self._commands_since)

    def _timeout_cb(self) -> None:
        transport: Any = self.transport
        if transport is None or transport.is_closing():
            return
        if self._in_data:
            seconds, what = self._timeouts.data, "data timeout"
            reply = f"421 4.4.2 Data timeout: the message took over {seconds:g} s"
        elif self._commands_used() >= self._timeouts.commands - 0.01:
            seconds, what = self._timeouts.commands, "command time limit"
            reply = f"421 4.4.2 Connection time limit: over {seconds:g} s of commands"
        else:
            seconds, what = self._timeouts.idle, "idle timeout"
            reply = f"421 4.4.2 Idle timeout: no command for {seconds:g} s"
        log.info(
            "client %s: %s (%g s); closing the connection",
            self._peer_host(),
            what,
            seconds,
            extra={"action": "smtp.timeout"},
        )
        self._write_replies()
        transport.write(reply.encode() + b"; closing connection\r\n")
        transport.close()

    async def handle_exception(self, error: Exception) -> str:
        """A TLS handshake that fails after STARTTLS (a client that sends plain text, gives
        up or leaves midway) is the client's doing: one line, no traceback, and aiosmtpd
        closes the connection. Anything else is a fault of ours: logged with its
        traceback, and the client gets a temporary failure without internal text."""
        if isinstance(error, TLSSetupException):
            cause = error.__cause__
            log.info(
                "client %s: TLS handshake failed (%s); closing the connection",
                self._peer_host(),
                f"{type(cause).__name__}: {cause}" if cause is not None else "no reason",
                extra={"action": "smtp.tls_failed"},
            )
            return S451_LOCAL_ERROR
        log.exception(
            "client %s: SMTP session error", self._peer_host(), extra={"action": "smtp.error"}
        )
        return S451_LOCAL_ERROR

    def _start_data(self) -> None:
        """The ``354`` went out: the data timeout runs until the final dot."""
        self._commands_spent += self.loop.time() - self._commands_since
        self._in_data = True
        self._reset_timeout(self._timeouts.data)

    def _end_data(self) -> None:
        self._in_data = False
        self._commands_since = self.loop.time()
        if self.transport is not None:  # not after the connection was lost
            self._reset_timeout()

    def data_received(self, data: bytes) -> None:
        if self._first_data:
            self._first_data = False
            if data.startswith(_TLS_HANDSHAKE) and self._tls_protocol is None:
                self._refuse_tls_handshake()
                return
        super().data_received(data)

    def _refuse_tls_handshake(self) -> None:
        """A client that starts TLS at once (an implicit-TLS client such as one set for
        port 465) sends binary where a command belongs: one clean log line and a reply
        it may show, rather than a line of binary and a wait for a line end."""
        log.info(
            "client %s sent a TLS handshake on a plain-text port; connect in plain text "
            "and use STARTTLS (there is no implicit-TLS port)",
            self._peer_host(),
            extra={"action": "smtp.tls_on_plain_port"},
        )
        transport: Any = self.transport
        if transport is not None and not transport.is_closing():
            self._replies.clear()
            transport.write(_TLS_ON_PLAIN.encode() + b"\r\n")
            transport.close()

    async def push(self, status: str | bytes) -> None:
        """Queue a reply; the replies to one pipelined group of commands leave in one
        write, once the commands in hand are handled (a write is a system call)."""
        transport = self._writer.transport
        if transport.is_closing():
            # Closed already (a limit was hit, the client left) while commands it had
            # pipelined are still being read: there is no one to answer.
            return
        if isinstance(status, str):
            try:
                response = status.encode("utf-8")
            except UnicodeEncodeError:
                # A reply that echoes a client's bytes that are not UTF-8 (aiosmtpd's
                # "502 Could not VRFY <arg>"): those bytes become "?".
                response = status.encode("utf-8", "replace")
        else:
            response = status
        if not self._in_hello:
            response = with_enhanced(response)
        replies = self._replies
        replies.append(response + b"\r\n")
        if response[:3] in _WRITE_AT_ONCE:
            # The connection changes after these (TLS starts, or it closes).
            self._write_replies()
        elif len(replies) == 1:
            self.loop.call_soon(self._write_replies)
        if not transport.is_closing() and transport.get_write_buffer_size() > 65536:
            self._write_replies()
            await self._writer.drain()

    def _write_replies(self) -> None:
        if not self._replies:
            return
        data = b"".join(self._replies)
        self._replies.clear()
        transport = self._writer.transport
        if not transport.is_closing():
            transport.write(data)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        m = _SIMPLE_ADDRESS.match(arg)
        if m is not None and ".." not in m.group(1):
            return m.group(1), arg[m.end() :]
        try:
            result: tuple[str | None, str | None] = super()._getaddr(arg)
        except Exception:
            # The standard library's address parser fails on some truncated input with
            # IndexError ("<", "<a@") rather than HeaderParseError: a syntax error too.
            return None, None
        return result

    async def smtp_DATA(self, arg: str) -> None:
        reader: Any = self._reader
        if not hasattr(reader, "_limit"):  # not CPython's StreamReader: the line reader
            self._start_data()
            try:
                await super().smtp_DATA(arg)
            finally:
                self._end_data()
            return
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self._start_data()
        try:
            data = await self._read_data(reader)
        finally:
            self._end_data()
        if data is None:
            await self.push("552 5.3.4 Message size exceeds fixed maximum message size")
            self._reset_transaction()
            return
        content = _UNSTUFF.sub(rb"\1", data) if b"\r\n." in data or data[:1] == b"." else data
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._reset_transaction()
        await self.push(status if isinstance(status, str) else "250 2.0.0 OK")

    def _reset_transaction(self) -> None:
        reset: Any = self._set_post_data_state
        reset()

    async def _read_data(self, reader: Any) -> bytes | None:
        """The message up to the lone dot, in chunks; None when it passes the size limit.

        ``readuntil(b".\r\n")`` stops at every line that ends with a dot; a chunk is the
        end only when, with the two bytes before it, it ends in CRLF "." CRLF (the CRLF
        that ended the DATA command counts, for an empty message). The reader's line limit
        is raised for the duration, so a whole message can come back from one call.
        """
        limit = self.data_size_limit or 0
        saved = reader._limit
        reader._limit = (limit or 2**31) + 1024
        parts: list[bytes] = []
        size = 0
        too_big = False
        tail = b"\r\n"
        try:
            while True:
                try:
                    chunk: bytes = await reader.readuntil(b".\r\n")
                except asyncio.LimitOverrunError as exc:
                    # Far past the limit without an end: drop what came, keep reading.
                    dropped: bytes = await reader.readexactly(exc.consumed)
                    too_big = True
                    parts.clear()
                    tail = (tail + dropped)[-2:]
                    continue
                end = (
                    (tail + chunk[:5]).endswith(b"\r\n.\r\n")
                    if len(chunk) < 5
                    else (chunk.endswith(b"\r\n.\r\n"))
                )
                tail = (tail + chunk)[-2:]
                if end:
                    chunk = chunk[:-3]
                size += len(chunk)
                if limit and size > limit:
                    too_big = True
                    parts.clear()
                elif not too_big:
                    parts.append(chunk)
                if end:
                    break
        finally:
            reader._limit = saved
        return None if too_big else b"".join(parts)

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        if not hostname:
            await self.push("501 5.5.4 Syntax: EHLO hostname")
            return
        self._in_hello = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_hello = False

    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        if not hostname:
            await self.push("501 5.5.4 Syntax: HELO hostname")
            return
        self._in_hello = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_hello = False

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None:
            # RFC 3207: no second TLS session inside the first.
            await self.push("503 5.5.1 TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    async def _verify(self, mechanism: str, login: bytes, password: bytes) -> AuthResult:
        if self._check_credentials is None:
            return AuthResult(success=False, handled=False)
        try:
            user = login.decode("utf-8")
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        peer = self._peer_host()
        lockouts = self._lockouts
        if lockouts is not None and self._auth_exempt is not None and self._auth_exempt(peer):
            lockouts = None
        if lockouts is not None:
            wait, whole_address = lockouts.locked_for(peer, user, time.monotonic())
            if wait > 0:
                await self.push(_lockout_reply(wait, whole_address))
                return AuthResult(success=False, handled=True)
        try:
            identity = await self._check_credentials(user, secret)
        except AuthUnavailable:
            # RFC 4954: a temporary failure, not a wrong password (nothing is counted).
            await self.push("454 4.7.0 Temporary authentication failure; try again later")
            return AuthResult(success=False, handled=True)
        if identity is None:
            if lockouts is not None:
                lockouts.add(peer, user, time.monotonic())
            self._auth_failures += 1
            await asyncio.sleep(AUTH_FAILURE_DELAY)
            if self._auth_failures >= AUTH_FAILURES_PER_SESSION:
                await self.push("421 4.7.0 Too many failed logins; closing the connection")
                if self.transport is not None:
                    self.transport.close()
                return AuthResult(success=False, handled=True)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, handled=False, auth_data=identity)

    def _peer_host(self) -> str:
        # aiosmtpd types it as str; it is the socket's peer name, a tuple for TCP.
        peer: Any = self.session.peer if self.session is not None else None
        if isinstance(peer, tuple) and peer:
            return str(peer[0])
        return str(peer or "")

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            blob = await self.challenge_auth("")
            if not isinstance(blob, bytes):
                return AuthResult(success=False)
        else:
            try:
                blob = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push(S501_SYNTAX + ": cannot decode base64")
                return AuthResult(success=False, handled=True)
        parts = blob.split(b"\x00")
        if len(parts) != 3:
            await self.push(S501_SYNTAX + ": expected authzid NUL authcid NUL password")
            return AuthResult(success=False, handled=True)
        if parts[0] and parts[0] != parts[1]:
            # Acting for another identity is not supported: say so rather than ignore it.
            await self.push("535 5.7.8 The authorization identity must be empty or the user")
            return AuthResult(success=False, handled=True)
        return await self._verify("PLAIN", parts[1], parts[2])

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        if len(args) == 1:
            login = await self.challenge_auth(self.AuthLoginUsernameChallenge)
            if not isinstance(login, bytes):
                return AuthResult(success=False)
        else:
            try:
                login = base64.b64decode(args[1].encode(), validate=True)
            except (binascii.Error, ValueError):
                await self.push(S501_SYNTAX + ": cannot decode base64")
                return AuthResult(success=False, handled=True)
        password = await self.challenge_auth(self.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False)
        return await self._verify("LOGIN", login, password)
