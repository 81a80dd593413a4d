"""The outbound SMTP client: one connection, pure protocol.

:meth:`SMTPClient.connect` opens a TCP connection, reads the banner, says EHLO
(HELO when EHLO is refused), upgrades with STARTTLS when offered and allowed, and
returns a client ready for :meth:`SMTPClient.send`, which runs one transaction and
returns a :class:`TransactionResult` with the reply to every command. The client
knows nothing of queues, stores or throttles: it reports replies, and the caller
decides what they mean.

Each phase has its own timeout (:class:`Timeouts`). Replies are labelled with the
command that drew them (``CONNECT`` for the banner, ``EHLO``, ``MAIL FROM``,
``RCPT TO``, ``DATA``, ``DATA END`` for the final dot...). Failures raise the
:class:`SMTPClientError` subclasses described in :mod:`postline.smtp.wire`, each
carrying a reply, real or synthetic.

A ``421`` reply to any command means the server is closing: the client stops, fills
the remaining replies of the transaction with that reply, returns the result and
becomes unusable.

The hot path is built for throughput: with PIPELINING, MAIL, every RCPT and DATA go
out in one write and the message in a second; replies are parsed from whole received
chunks, so a transaction costs two wake-ups when the server answers promptly.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import socket
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self, cast

from postline.model import Reply
from postline.smtp.wire import (
    ReplyParser,
    SMTPClientError,
    SMTPConnectError,
    SMTPConnectionLost,
    SMTPConnectTimeout,
    SMTPProtocolError,
    SMTPTimeout,
    dot_stuff,
    is_8bit,
    is_safe_address,
    mail_command,
    needs_smtputf8,
    parse_ehlo,
    rcpt_command,
)

__all__ = [
    "SMTPClient",
    "SMTPClientError",
    "SMTPConnectError",
    "SMTPConnectTimeout",
    "SMTPConnectionLost",
    "SMTPProtocolError",
    "SMTPTimeout",
    "TLSMode",
    "Timeouts",
    "TransactionResult",
    "delivery_tls_context",
]

_log = logging.getLogger(__name__)

TLSMode = Literal["opportunistic", "required", "disabled"]
"""``opportunistic``: STARTTLS when offered, plaintext otherwise, and plaintext again
when the TLS handshake fails; ``required``: no STARTTLS or a failed handshake is a
:class:`SMTPConnectError`; ``disabled``: never STARTTLS."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds to wait in each phase of a conversation (DESIGN §5 defaults).

    ``connect`` bounds the TCP connect, ``banner`` the greeting, ``starttls`` the
    STARTTLS reply and the handshake, ``data_dot`` the reply to the final dot (the
    upload of the message included), ``quit`` the polite goodbye; the others bound
    the reply to their command.
    """

    connect: float = 30.0
    banner: float = 60.0
    ehlo: float = 60.0
    starttls: float = 60.0
    mail_from: float = 60.0
    rcpt_to: float = 60.0
    data: float = 60.0
    data_dot: float = 120.0
    rset: float = 60.0
    quit: float = 5.0


@dataclass(frozen=True, slots=True)
class TransactionResult:
    """The replies of one transaction.

    ``rcpts`` is in the order of the recipients given to :meth:`SMTPClient.send`;
    when MAIL failed, each holds the MAIL reply. ``data`` is the reply that ended the
    transaction for the accepted recipients: the reply to DATA when it was refused,
    else the reply to the final dot. It is None when MAIL failed or no recipient
    was accepted.
    """

    mail: Reply
    rcpts: tuple[Reply, ...]
    data: Reply | None

    def __post_init__(self) -> None:
        if self.data is None and _ok(self.mail) and any(_ok(r) for r in self.rcpts):
            raise ValueError("a transaction with accepted recipients needs a data reply")

    def outcome(self, index: int) -> Reply:
        """The final reply for recipient ``index``.

        The MAIL reply when MAIL failed, the RCPT reply when the recipient was
        refused, else the DATA (or final dot) reply.
        """
        if not _ok(self.mail):
            return self.mail
        rcpt = self.rcpts[index]
        if not _ok(rcpt):
            return rcpt
        assert self.data is not None
        return self.data

    def outcomes(self) -> tuple[Reply, ...]:
        """:meth:`outcome` for every recipient, in order."""
        return tuple(self.outcome(i) for i in range(len(self.rcpts)))


def _ok(reply: Reply) -> bool:
    return 200 <= reply.code < 300


_DEFAULT_TIMEOUTS = Timeouts()


@functools.cache
def delivery_tls_context() -> ssl.SSLContext:
    """The TLS context for delivery to MX hosts: TLS 1.2 or newer, no certificate check.

    Opportunistic TLS between MTAs encrypts without authenticating (RFC 7435); a
    self-signed or mismatched certificate must not stop delivery. Shared and built
    once, so do not modify it.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


_EHLO_NAME = re.compile(r"[A-Za-z0-9._:\[\]-]+")


class _TLSFailed(Exception):
    """The TLS handshake failed; the argument says how."""


class _Protocol(asyncio.Protocol):
    """Feeds received bytes to the reply parser and wakes the one waiting reader."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.parser = ReplyParser()
        self.parser.expect("CONNECT")
        self.replies: deque[Reply] = deque()
        self.error: SMTPProtocolError | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.lost_reason: str | None = None
        self.waiter: asyncio.Future[bool] | None = None
        self.closed_future: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.error is not None:
            return
        replies = self.replies
        before = len(replies)
        try:
            self.parser.feed(data, replies)
        except SMTPProtocolError as exc:
            self.error = exc
            self._wake()
            if self.transport is not None:
                self.transport.abort()
            return
        if len(replies) != before:
            self._wake()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if exc is not None:
            self.lost_reason = str(exc) or type(exc).__name__
        self._wake()
        if not self.closed_future.done():
            self.closed_future.set_result(None)

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


def _addr(info: object) -> tuple[str, int]:
    if isinstance(info, tuple) and len(info) >= 2:
        return str(info[0]), int(info[1])
    return "", 0


class SMTPClient:
    """One SMTP connection to one server; create it with :meth:`connect`.

    Not safe for concurrent use: run one :meth:`send` at a time. After any raised
    error, or a 421, :attr:`usable` is False and the connection is closed.
    """

    extensions: dict[str, str]
    """EHLO keywords (upper case) → parameters; empty after a HELO fallback."""
    tls_active: bool
    tls_version: str | None
    tls_error: str | None
    """Why an opportunistic STARTTLS failed, when the session fell back to plaintext."""
    banner: Reply
    peer_address: tuple[str, int]
    local_address: tuple[str, int]
    max_size: int | None
    """The server's SIZE limit in bytes; None when it advertised none (or 0)."""
    transactions: int
    """Transactions on this connection that reached the reply to the final dot."""

    def __init__(
        self,
        transport: asyncio.Transport,
        protocol: _Protocol,
        *,
        host: str,
        port: int,
        timeouts: Timeouts,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport = transport
        self._proto = protocol
        self._host = host
        self._port = port
        self._timeouts = timeouts
        self._broken = False
        self.extensions = {}
        self.tls_active = False
        self.tls_version = None
        self.tls_error = None
        self.banner = Reply(0)
        self.peer_address = _addr(transport.get_extra_info("peername"))
        self.local_address = _addr(transport.get_extra_info("sockname"))
        self.max_size = None
        self.transactions = 0

    # --- connecting -----------------------------------------------------------------

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ehlo_hostname: str,
        timeouts: Timeouts = _DEFAULT_TIMEOUTS,
        source_address: str | None = None,
        server_name: str | None = None,
        tls: TLSMode = "opportunistic",
        tls_context: ssl.SSLContext | None = None,
    ) -> SMTPClient:
        """Connect, read the banner, EHLO (or HELO), STARTTLS as ``tls`` says.

        ``source_address`` binds the local end (the egress IP); ``server_name`` is
        sent as SNI. Raises :class:`SMTPConnectError` (or a timeout or protocol
        error) when no session could be established.
        """
        if not _EHLO_NAME.fullmatch(ehlo_hostname):
            raise ValueError(f"invalid EHLO hostname: {ehlo_hostname!r}")
        ctx = tls_context or delivery_tls_context()
        if tls != "disabled" and ctx.check_hostname and not server_name:
            raise ValueError("a TLS context that checks host names needs server_name")
        try:
            return await cls._open(
                host, port, ehlo_hostname, timeouts, source_address, server_name, tls, ctx
            )
        except _TLSFailed as exc:
            if tls == "required":
                reply = Reply(
                    421, f"TLS handshake with {host} failed: {exc}", "4.7.5", "STARTTLS", True
                )
                raise SMTPConnectError(reply) from exc
            tls_error = str(exc)
        _log.debug(
            "STARTTLS with %s:%s failed (%s); retrying in plaintext",
            host,
            port,
            tls_error,
            extra={"action": "smtp_tls_fallback"},
        )
        client = await cls._open(
            host, port, ehlo_hostname, timeouts, source_address, server_name, "disabled", ctx
        )
        client.tls_error = tls_error
        return client

    @classmethod
    async def _open(
        cls,
        host: str,
        port: int,
        ehlo_hostname: str,
        timeouts: Timeouts,
        source_address: str | None,
        server_name: str | None,
        tls: TLSMode,
        ctx: ssl.SSLContext,
    ) -> SMTPClient:
        loop = asyncio.get_running_loop()
        local_addr = (source_address, 0) if source_address else None
        where = f"{host}:{port}"
        try:
            async with asyncio.timeout(timeouts.connect):
                transport, proto = await loop.create_connection(
                    lambda: _Protocol(loop), host, port, local_addr=local_addr
                )
        except TimeoutError as exc:
            text = f"timeout after {timeouts.connect:g}s connecting to {where}"
            raise SMTPConnectTimeout(Reply(421, text, "4.4.1", "CONNECT", True)) from exc
        except ConnectionRefusedError as exc:
            text = f"connection refused by {where}"
            raise SMTPConnectError(Reply(421, text, "4.4.1", "CONNECT", True)) from exc
        except OSError as exc:
            text = f"cannot connect to {where}: {exc.strerror or exc}"
            raise SMTPConnectError(Reply(421, text, "4.4.1", "CONNECT", True)) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        client = cls(transport, proto, host=host, port=port, timeouts=timeouts)
        try:
            await client._greet(ehlo_hostname, server_name, tls, ctx)
        except BaseException:
            client.abort()
            raise
        return client

    async def _greet(
        self, ehlo_hostname: str, server_name: str | None, tls: TLSMode, ctx: ssl.SSLContext
    ) -> None:
        t = self._timeouts
        self.banner = await self._read("CONNECT", t.banner)
        if self.banner.code != 220:
            await self.quit()
            raise SMTPConnectError(self.banner)
        await self._hello(ehlo_hostname)
        if tls == "disabled":
            return
        if "STARTTLS" not in self.extensions:
            if tls == "required":
                await self.quit()
                text = f"TLS is required, but was not offered by {self._host}"
                raise SMTPConnectError(Reply(421, text, "4.7.4", "STARTTLS", True))
            return
        self._write(b"STARTTLS\r\n", "STARTTLS")
        reply = await self._read("STARTTLS", t.starttls)
        if reply.code != 220:
            if tls == "required" or reply.code == 421:
                await self.quit()
                raise SMTPConnectError(reply)
            return  # opportunistic: carry on in plaintext (RFC 3207 section 4)
        if self._proto.replies or self._proto.parser.buffered:
            # Bytes after the 220 were sent before TLS: a reply injection attempt.
            text = "data after the reply to STARTTLS (response injection)"
            raise SMTPProtocolError(Reply(421, text, "4.5.0", "STARTTLS", True))
        try:
            tls_transport = await self._loop.start_tls(
                self._transport,
                self._proto,
                ctx,
                server_hostname=server_name,
                ssl_handshake_timeout=t.starttls,
            )
        except (OSError, ssl.SSLError) as exc:
            self._broken = True
            raise _TLSFailed(str(exc) or type(exc).__name__) from exc
        if tls_transport is None:
            self._broken = True
            raise _TLSFailed("the connection closed during the handshake")
        self._transport = tls_transport
        self._proto.transport = tls_transport
        ssl_object = tls_transport.get_extra_info("ssl_object")
        self.tls_active = True
        self.tls_version = ssl_object.version() if ssl_object is not None else None
        await self._hello(ehlo_hostname)

    async def _hello(self, ehlo_hostname: str) -> None:
        t = self._timeouts
        name = ehlo_hostname.encode("ascii")
        self._write(b"EHLO " + name + b"\r\n", "EHLO")
        reply = await self._read("EHLO", t.ehlo)
        if _ok(reply):
            self.extensions = parse_ehlo(reply)
        elif reply.permanent:
            self._write(b"HELO " + name + b"\r\n", "HELO")
            helo = await self._read("HELO", t.ehlo)
            if not _ok(helo):
                await self.quit()
                raise SMTPConnectError(helo)
            self.extensions = {}
        else:
            await self.quit()
            raise SMTPConnectError(reply)
        size = self.extensions.get("SIZE", "")
        self.max_size = int(size) if size.isdigit() and int(size) > 0 else None

    # --- state ----------------------------------------------------------------------

    def supports(self, ext: str) -> bool:
        """True when the server advertised the EHLO keyword ``ext`` (any case)."""
        return ext.upper() in self.extensions

    @property
    def usable(self) -> bool:
        """True while the connection can carry another transaction."""
        proto = self._proto
        return not (
            self._broken
            or proto.closed
            or proto.error is not None
            or proto.replies
            or self._transport.is_closing()
        )

    # --- sending --------------------------------------------------------------------

    async def send(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionResult:
        """Run one transaction and return its replies.

        ``data`` is the complete message in CRLF form, not dot-stuffed. Refusals
        that need no server (a non-ASCII address without SMTPUTF8, a message over
        the advertised SIZE, an address with control characters) come back as
        synthetic permanent replies without anything being sent. Raises
        :class:`SMTPClientError` when the conversation breaks; the connection is
        then closed.
        """
        n = len(recipients)
        if n == 0:
            raise ValueError("send() needs at least one recipient")
        self._check_ready("MAIL FROM")
        refused = self._refuse_locally(mail_from, recipients, data)
        if refused is not None:
            return refused
        ext = self.extensions
        params: list[str] = []
        if "SIZE" in ext:
            params.append(f"SIZE={len(data)}")
        if "8BITMIME" in ext and is_8bit(data):
            params.append("BODY=8BITMIME")
        if "SMTPUTF8" in ext and needs_smtputf8(mail_from, *recipients):
            params.append("SMTPUTF8")
        rcpts: list[Reply | None] = [None] * n
        to_send: list[int] = []
        for i, rcpt in enumerate(recipients):
            if is_safe_address(rcpt):
                to_send.append(i)
            else:
                text = "recipient address has control characters; not sent"
                rcpts[i] = Reply(553, text, "5.1.3", "RCPT TO", True)
        if not to_send:
            text = "no recipient address can be sent; transaction not started"
            mail = Reply(553, text, "5.1.3", "MAIL FROM", True)
            return TransactionResult(mail, _filled(rcpts, mail), None)
        try:
            if "PIPELINING" in ext:
                return await self._send_pipelined(
                    mail_from, params, recipients, to_send, rcpts, data
                )
            return await self._send_lockstep(mail_from, params, recipients, to_send, rcpts, data)
        except BaseException:
            self.abort()
            raise

    def _refuse_locally(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionResult | None:
        reply: Reply | None = None
        if not is_safe_address(mail_from):
            text = "sender address has control characters; not sent"
            reply = Reply(553, text, "5.1.7", "MAIL FROM", True)
        elif "SMTPUTF8" not in self.extensions and needs_smtputf8(mail_from, *recipients):
            text = f"{self._host} does not support SMTPUTF8, needed for a non-ASCII address"
            reply = Reply(553, text, "5.6.7", "MAIL FROM", True)
        elif self.max_size is not None and len(data) > self.max_size:
            text = (
                f"message size {len(data)} exceeds the limit of {self.max_size} "
                f"advertised by {self._host}"
            )
            reply = Reply(552, text, "5.3.4", "MAIL FROM", True)
        if reply is None:
            return None
        return TransactionResult(reply, (reply,) * len(recipients), None)

    async def _send_pipelined(
        self,
        mail_from: str,
        params: list[str],
        recipients: Sequence[str],
        to_send: list[int],
        rcpts: list[Reply | None],
        data: bytes,
    ) -> TransactionResult:
        t = self._timeouts
        parser = self._proto.parser
        chunks = [mail_command(mail_from, params)]
        parser.expect("MAIL FROM")
        for i in to_send:
            chunks.append(rcpt_command(recipients[i]))
            parser.expect("RCPT TO")
        chunks.append(b"DATA\r\n")
        parser.expect("DATA")
        self._transport.write(b"".join(chunks))

        mail = self._expect_class(await self._read("MAIL FROM", t.mail_from), 2, 4, 5)
        closing = mail if mail.code == 421 else None
        for i in to_send:
            if closing is None:
                reply = self._expect_class(await self._read("RCPT TO", t.rcpt_to), 2, 4, 5)
                if reply.code == 421:
                    closing = reply
                rcpts[i] = reply
            else:
                rcpts[i] = closing
        if not _ok(mail):
            for i in to_send:
                rcpts[i] = mail
        accepted = _ok(mail) and any(r is not None and _ok(r) for r in rcpts)
        if closing is not None:
            return self._closing(mail, rcpts, closing if accepted else None)
        reply = await self._read("DATA", t.data)
        return await self._after_data_command(mail, rcpts, accepted, reply, data)

    async def _send_lockstep(
        self,
        mail_from: str,
        params: list[str],
        recipients: Sequence[str],
        to_send: list[int],
        rcpts: list[Reply | None],
        data: bytes,
    ) -> TransactionResult:
        t = self._timeouts
        self._write(mail_command(mail_from, params), "MAIL FROM")
        mail = self._expect_class(await self._read("MAIL FROM", t.mail_from), 2, 4, 5)
        if not _ok(mail):
            result = TransactionResult(mail, _filled(rcpts, mail), None)
            if mail.code == 421:
                self.abort()
            else:
                await self._reset_quietly()
            return result
        accepted = False
        for i in to_send:
            self._write(rcpt_command(recipients[i]), "RCPT TO")
            reply = self._expect_class(await self._read("RCPT TO", t.rcpt_to), 2, 4, 5)
            rcpts[i] = reply
            if reply.code == 421:
                for j in to_send:
                    if rcpts[j] is None:
                        rcpts[j] = reply
                return self._closing(mail, rcpts, reply if accepted else None)
            accepted = accepted or _ok(reply)
        if not accepted:
            result = TransactionResult(mail, _filled(rcpts, mail), None)
            await self._reset_quietly()
            return result
        self._write(b"DATA\r\n", "DATA")
        reply = await self._read("DATA", t.data)
        return await self._after_data_command(mail, rcpts, accepted, reply, data)

    async def _after_data_command(
        self,
        mail: Reply,
        rcpts: list[Reply | None],
        accepted: bool,
        reply: Reply,
        data: bytes,
    ) -> TransactionResult:
        if reply.code != 354:
            if reply.code < 400:
                self._expect_class(reply, 4, 5)
            result = TransactionResult(mail, _filled(rcpts, mail), reply if accepted else None)
            if reply.code == 421:
                self.abort()
            else:
                await self._reset_quietly()
            return result
        if not accepted:
            # The server wants the message although nobody would get it; ending the
            # data would send an empty message, so drop the connection instead.
            self.abort()
            return TransactionResult(mail, _filled(rcpts, mail), None)
        self._write(dot_stuff(data), "DATA END")
        final = await self._read("DATA END", self._timeouts.data_dot, after_data_dot=True)
        final = self._expect_class(final, 2, 4, 5, after_data_dot=True)
        self.transactions += 1
        if final.code == 421:
            self.abort()
        return TransactionResult(mail, _filled(rcpts, mail), final)

    def _closing(
        self, mail: Reply, rcpts: list[Reply | None], data: Reply | None
    ) -> TransactionResult:
        self.abort()
        return TransactionResult(mail, _filled(rcpts, mail), data)

    def _expect_class(self, reply: Reply, *classes: int, after_data_dot: bool = False) -> Reply:
        if reply.code // 100 in classes:
            return reply
        text = f"unexpected reply {reply.code} to {reply.command}: {reply.text[:200]}"
        raise SMTPProtocolError(
            Reply(421, text, "4.5.0", reply.command, True), after_data_dot=after_data_dot
        )

    async def _reset_quietly(self) -> None:
        try:
            reply = await self.rset()
        except SMTPClientError:
            return
        if not _ok(reply):
            self.abort()

    async def rset(self) -> Reply:
        """Send RSET and return the reply; a refusal leaves the connection unusable."""
        self._check_ready("RSET")
        self._write(b"RSET\r\n", "RSET")
        try:
            reply = await self._read("RSET", self._timeouts.rset)
        except BaseException:
            self.abort()
            raise
        if not _ok(reply):
            self._broken = True
            if reply.code == 421:
                self.abort()
        return reply

    # --- closing --------------------------------------------------------------------

    async def quit(self) -> None:
        """Say QUIT, wait for the reply (quit timeout) and close. Never raises."""
        proto = self._proto
        try:
            if not (proto.closed or proto.error is not None or self._transport.is_closing()):
                self._broken = True
                proto.parser.expect("QUIT")
                self._transport.write(b"QUIT\r\n")
                await self._read("QUIT", self._timeouts.quit)
        except (SMTPClientError, OSError):
            pass
        except asyncio.CancelledError:
            self.abort()
            raise
        self._broken = True
        if not proto.closed:
            self._transport.close()
            try:
                async with asyncio.timeout(self._timeouts.quit):
                    await asyncio.shield(proto.closed_future)
            except TimeoutError:
                self._transport.abort()

    def abort(self) -> None:
        """Close the connection now, without QUIT."""
        self._broken = True
        if not self._proto.closed:
            self._transport.abort()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.quit()
        else:
            self.abort()

    # --- plumbing -------------------------------------------------------------------

    def _check_ready(self, command: str) -> None:
        proto = self._proto
        if proto.replies:
            # The server spoke unasked (typically a 421 before it hangs up).
            reply = proto.replies.popleft()
            self.abort()
            raise SMTPConnectionLost(reply, command=command)
        if self._broken or proto.closed or self._transport.is_closing():
            self.abort()
            text = f"connection to {self._host} is closed"
            raise SMTPConnectionLost(Reply(421, text, "4.4.2", command, True))

    def _write(self, data: bytes, command: str) -> None:
        self._proto.parser.expect(command)
        self._transport.write(data)

    async def _read(self, command: str, timeout: float, *, after_data_dot: bool = False) -> Reply:
        proto = self._proto
        if proto.replies:
            return proto.replies.popleft()
        if proto.error is None and not proto.closed:
            waiter: asyncio.Future[bool] = self._loop.create_future()
            proto.waiter = waiter
            handle = self._loop.call_later(timeout, _expire, waiter)
            try:
                woke = await waiter
            finally:
                handle.cancel()
                proto.waiter = None
            if proto.replies:
                return proto.replies.popleft()
            if not woke:
                self.abort()
                if command == "CONNECT":
                    text = f"timeout after {timeout:g}s waiting for the greeting"
                else:
                    text = f"timeout after {timeout:g}s waiting for reply to {command}"
                raise SMTPTimeout(
                    Reply(421, text, "4.4.2", command, True), after_data_dot=after_data_dot
                )
        self.abort()
        if proto.error is not None:
            err = proto.error
            raise SMTPProtocolError(
                err.reply, command=err.command or command, after_data_dot=after_data_dot
            ) from err
        reason = f": {proto.lost_reason}" if proto.lost_reason else ""
        text = f"connection closed by {self._host} while waiting for reply to {command}{reason}"
        raise SMTPConnectionLost(
            Reply(421, text, "4.4.2", command, True), after_data_dot=after_data_dot
        )


def _filled(rcpts: list[Reply | None], fill: Reply) -> tuple[Reply, ...]:
    return tuple(fill if r is None else r for r in rcpts)
