"""The aiosmtpd protocol as postline's servers use it.

* Every reply carries an RFC 3463 enhanced status code: aiosmtpd writes some of its
  own replies without one (``503 Error: need MAIL command``); :meth:`push` adds the
  standard code for the reply class, and ``ENHANCEDSTATUSCODES`` is advertised.
* Replies are written without waiting for the socket to drain unless the write buffer
  is full, plain ``<local@domain>`` addresses skip the general RFC 5322 parser, and DATA
  is read in large chunks instead of line by line: a relay answers thousands of
  commands a second.
* AUTH PLAIN and LOGIN call an *async* credential check (aiosmtpd's authenticator is
  synchronous), and are offered only after STARTTLS. Password guessing is slowed down:
  each failure is answered after a pause, a session ends after three failures, and an
  address with too many recent failures gets ``454 4.7.0`` for a while
  (:class:`AuthFailures`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session, syntax

from postline.smtp.replies import S501_SYNTAX

__all__ = ["CredentialCheck", "EhloExtensions", "PostlineSMTP", "with_enhanced"]

CredentialCheck = Callable[[str, str], Awaitable[Any | None]]
"""(user name, password) → the identity to keep in the session, or None."""

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
    """Recent AUTH failures per client address (one process; a fleet's nodes count apart)."""

    def __init__(self, limit: int = 10, window: float = 600.0, max_peers: int = 10000) -> None:
        self.limit = limit
        self.window = window
        self.max_peers = max_peers
        self._seen: dict[str, list[float]] = {}

    def _recent(self, peer: str, now: float) -> list[float]:
        times = [t for t in self._seen.get(peer, ()) if now - t < self.window]
        if times:
            self._seen[peer] = times
        else:
            self._seen.pop(peer, None)
        return times

    def blocked(self, peer: str, now: float) -> bool:
        return len(self._recent(peer, now)) >= self.limit

    def add(self, peer: str, now: float) -> None:
        if len(self._seen) >= self.max_peers and peer not in self._seen:
            oldest = min(self._seen, key=lambda p: self._seen[p][-1])
            del self._seen[oldest]
        self._seen.setdefault(peer, []).append(now)


AUTH_FAILURES = AuthFailures()
AUTH_FAILURE_DELAY = 1.0
AUTH_FAILURES_PER_SESSION = 3


_WRITE_AT_ONCE = (b"220", b"221", b"421")


class PostlineSMTP(SMTP):
    """aiosmtpd's SMTP with enhanced codes everywhere, fast replies and async AUTH."""

    def __init__(
        self, handler: Any, *, check_credentials: CredentialCheck | None = None, **kwargs: Any
    ) -> None:
        self._check_credentials = check_credentials
        self._in_hello = False
        self._auth_failures = 0
        self._replies: list[bytes] = []
        super().__init__(handler, **kwargs)

    async def push(self, status: str | bytes) -> None:
        """Queue a reply; the replies to one pipelined group of commands leave in one
        write, once the commands in hand are handled (a write is a system call)."""
        response = status.encode("utf-8") if isinstance(status, str) else status
        if not self._in_hello:
            response = with_enhanced(response)
        replies = self._replies
        replies.append(response + b"\r\n")
        if response[:3] in _WRITE_AT_ONCE:
            # The connection changes after these (TLS starts, or it closes).
            self._write_replies()
        elif len(replies) == 1:
            self.loop.call_soon(self._write_replies)
        transport = self._writer.transport
        if transport.get_write_buffer_size() > 65536:
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
        result: tuple[str | None, str | None] = super()._getaddr(arg)
        return result

    async def smtp_DATA(self, arg: str) -> None:
        reader: Any = self._reader
        if not hasattr(reader, "_limit"):  # not CPython's StreamReader: the line reader
            await super().smtp_DATA(arg)
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
        data = await self._read_data(reader)
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
        if AUTH_FAILURES.blocked(peer, time.monotonic()):
            await self.push("454 4.7.0 Too many failed logins from your address; try later")
            return AuthResult(success=False, handled=True)
        identity = await self._check_credentials(user, secret)
        if identity is None:
            AUTH_FAILURES.add(peer, time.monotonic())
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
