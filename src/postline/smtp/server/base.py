"""The aiosmtpd protocol as postline's servers use it.

* Every reply carries an RFC 3463 enhanced status code: aiosmtpd writes some of its
  own replies without one (``503 Error: need MAIL command``); :meth:`push` adds the
  standard code for the reply class, and ``ENHANCEDSTATUSCODES`` is advertised.
* Replies are written without waiting for the socket to drain unless the write buffer
  is full: a relay answers thousands of commands a second.
* AUTH PLAIN and LOGIN call an *async* credential check (aiosmtpd's authenticator is
  synchronous), and are offered only after STARTTLS.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult

from postline.smtp.replies import S501_SYNTAX

__all__ = ["CredentialCheck", "PostlineSMTP", "with_enhanced"]

CredentialCheck = Callable[[str, str], Awaitable[Any | None]]
"""(user name, password) → the identity to keep in the session, or None."""

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


class PostlineSMTP(SMTP):
    """aiosmtpd's SMTP with enhanced codes everywhere, fast replies and async AUTH."""

    def __init__(
        self, handler: Any, *, check_credentials: CredentialCheck | None = None, **kwargs: Any
    ) -> None:
        self._check_credentials = check_credentials
        self._in_hello = False
        super().__init__(handler, **kwargs)

    async def push(self, status: str | bytes) -> None:
        response = status.encode("utf-8") if isinstance(status, str) else status
        if not self._in_hello:
            response = with_enhanced(response)
        transport = self._writer.transport
        transport.write(response + b"\r\n")
        if transport.get_write_buffer_size() > 65536:
            await self._writer.drain()

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_hello = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_hello = False

    async def smtp_HELO(self, hostname: str) -> None:
        self._in_hello = True
        try:
            await super().smtp_HELO(hostname)
        finally:
            self._in_hello = False

    async def _verify(self, mechanism: str, login: bytes, password: bytes) -> AuthResult:
        if self._check_credentials is None:
            return AuthResult(success=False, handled=False)
        try:
            user = login.decode("utf-8")
            secret = password.decode("utf-8")
        except UnicodeDecodeError:
            return AuthResult(success=False, handled=False)
        identity = await self._check_credentials(user, secret)
        if identity is None:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, handled=False, auth_data=identity)

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
