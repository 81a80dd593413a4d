"""A client of SpamAssassin's ``spamd`` (the SPAMC protocol over TCP).

:meth:`SpamdClient.report` sends ``REPORT SPAMC/1.5`` with the message and reads back
the verdict line (``Spam: True ; 7.2 / 5.0``) and the report, whose rule table
(``pts rule name description``) gives each rule that hit with its score and
description. When a site's report template has no such table, the rule names come
from a second request, ``SYMBOLS``, without scores.

Every request is one TCP connection, bounded by ``timeout`` from connect to the last
byte. A spamd that cannot be reached, times out or answers with a protocol error
raises :class:`SpamdError`; the caller decides what that means (the pre-flight check
reports it as a warning).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Final

from postline.config import parse_listen

__all__ = ["MAX_SCAN_SIZE", "SpamRule", "SpamVerdict", "SpamdClient", "SpamdError", "parse_report"]

#: Messages larger than this are not scanned; spamc skips them too (its ``-s``
#: default), as SpamAssassin rules are written for ordinary mail sizes.
MAX_SCAN_SIZE: Final = 500 * 1024

_STATUS: Final = re.compile(rb"^SPAMD/(\d+\.\d+)\s+(\d+)\s*(.*)$")
_SPAM: Final = re.compile(
    r"^\s*(True|False|Yes|No)\s*;\s*(-?\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)\s*$",
    re.IGNORECASE,
)
_RULE: Final = re.compile(r"^ {0,3}(-?\d+(?:\.\d+)?)\s+([A-Za-z0-9_]+)(?:\s+(.*?))?\s*$")
_TABLE_RULE: Final = re.compile(r"^-{3,}\s+-{3,}\s+-{3,}\s*$")
_MAX_REPLY: Final = 1024 * 1024


class SpamdError(Exception):
    """spamd could not be asked: unreachable, too slow, or a protocol error."""


@dataclass(frozen=True, slots=True)
class SpamRule:
    """One SpamAssassin rule that hit: its name, points and description."""

    name: str
    score: float | None
    description: str


@dataclass(frozen=True, slots=True)
class SpamVerdict:
    """spamd's answer: the score, the threshold it calls spam at, and the rules."""

    score: float
    threshold: float
    spam: bool
    rules: tuple[SpamRule, ...]


@dataclass(frozen=True, slots=True)
class _Reply:
    headers: dict[str, str]
    body: bytes


class SpamdClient:
    """Asks one spamd at ``host``:``port``; ``timeout`` bounds each request."""

    def __init__(self, host: str, port: int, *, timeout: float = 10.0) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout

    @classmethod
    def parse(cls, address: str, *, timeout: float = 10.0) -> SpamdClient:
        """A client of ``"host:port"`` (``[v6]:port`` for IPv6); ValueError when malformed."""
        host, port = parse_listen(address)
        if port == 0:
            raise ValueError(f"{address!r} has port 0; give spamd's port, e.g. 783")
        return cls(host, port, timeout=timeout)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def ping(self) -> bool:
        """Whether spamd answers ``PING`` with ``PONG``."""
        try:
            reply = await self._request(b"PING", None)
        except SpamdError:
            return False
        return reply.headers.get("_message", "").upper() == "PONG"

    async def report(self, message: bytes) -> SpamVerdict:
        """Score ``message``: the verdict, threshold and the rules that hit."""
        reply = await self._request(b"REPORT", message)
        score, threshold, spam = _verdict(reply.headers)
        rules = parse_report(reply.body.decode("utf-8", "replace"))
        if not rules:
            symbols = await self._request(b"SYMBOLS", message)
            names = symbols.body.decode("ascii", "replace").strip()
            rules = tuple(SpamRule(n.strip(), None, "") for n in names.split(",") if n.strip())
        return SpamVerdict(score, threshold, spam, rules)

    async def _request(self, command: bytes, message: bytes | None) -> _Reply:
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(command, message)
        except TimeoutError:
            raise SpamdError(
                f"spamd at {self.address} did not answer within {self.timeout:g}s"
            ) from None
        except OSError as exc:
            raise SpamdError(
                f"cannot reach spamd at {self.address}: {exc.strerror or exc}"
            ) from None

    async def _exchange(self, command: bytes, message: bytes | None) -> _Reply:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            request = command + b" SPAMC/1.5\r\n"
            if message is not None:
                request += b"Content-length: %d\r\n" % len(message)
            request += b"\r\n"
            writer.write(request + (message or b""))
            await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
            data = await reader.read(_MAX_REPLY + 1)
            while data and len(data) <= _MAX_REPLY:
                more = await reader.read(_MAX_REPLY + 1 - len(data))
                if not more:
                    break
                data += more
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass
        if len(data) > _MAX_REPLY:
            raise SpamdError(f"spamd at {self.address} sent more than {_MAX_REPLY} bytes")
        return _parse_reply(data, self.address)


def _parse_reply(data: bytes, address: str) -> _Reply:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = data.partition(b"\n\n")
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    status = _STATUS.match(lines[0].strip()) if lines and lines[0] else None
    if status is None:
        shown = lines[0][:80].decode("ascii", "replace") if lines and lines[0] else "nothing"
        raise SpamdError(f"spamd at {address} answered {shown!r}, not a SPAMD/1.x status line")
    code, text = int(status.group(2)), status.group(3).decode("ascii", "replace").strip()
    if code != 0:
        raise SpamdError(f"spamd at {address} answered error {code} {text}".rstrip())
    headers = {"_message": text}
    for line in lines[1:]:
        name, colon, value = line.decode("utf-8", "replace").partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None and length.isdigit() and int(length) < len(body):
        body = body[: int(length)]
    return _Reply(headers, body)


def _verdict(headers: dict[str, str]) -> tuple[float, float, bool]:
    value = headers.get("spam")
    found = _SPAM.match(value) if value is not None else None
    if found is None:
        raise SpamdError(f"spamd's answer has no usable 'Spam:' header ({value!r})")
    spam = found.group(1).lower() in ("true", "yes")
    return float(found.group(2)), float(found.group(3)), spam


def parse_report(text: str) -> tuple[SpamRule, ...]:
    """The rules of a SpamAssassin report's table, in order.

    The table follows a ``---- ------ ----`` line; each row is ``points NAME
    description``, and a row's description may go on in indented lines (e.g. the
    ``[URIs: ...]`` of URI rules). The table ends at an empty line.
    """
    rules: list[list[str]] = []
    in_table = False
    for line in text.splitlines():
        if not in_table:
            in_table = bool(_TABLE_RULE.match(line))
            continue
        if not line.strip():
            if rules:
                break
            continue
        row = _RULE.match(line)
        if row is not None:
            rules.append([row.group(1), row.group(2), row.group(3) or ""])
        elif rules:
            rules[-1][2] = f"{rules[-1][2]} {line.strip()}".strip()
    return tuple(SpamRule(name, float(score), desc) for score, name, desc in rules)
