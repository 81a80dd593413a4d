"""Turning accepted input into the RFC 5322 bytes that are stored and sent.

A fast, small renderer for the JSON API (the stdlib ``email`` package costs over a
millisecond per message, which would cap ingestion at a few hundred messages a second),
and the fix-ups applied to raw and SMTP-submitted messages (line endings, Message-ID,
Date, Bcc removal). Every header value is checked for CR, LF and NUL before it gets here;
:func:`header_line` checks again, so no caller can inject a header.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.header import Header
from email.utils import format_datetime, formataddr
from functools import lru_cache

from postline.model.ids import random_bytes

__all__ = [
    "HeaderInjection",
    "RenderedMessage",
    "fix_raw",
    "format_address",
    "header_line",
    "render_message",
]

_UNSAFE = re.compile(r"[\r\n\x00]")
_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")
_HEADER_NAME = re.compile(rb"^([!-9;-~]+):", re.MULTILINE)
_MAX_LINE = 998
_LONG_LINE = re.compile(rb"[^\n]{%d}" % (_MAX_LINE - 1))
"""A line longer than a 7bit part may carry once CRLF is added (998 octets with it)."""


class HeaderInjection(ValueError):
    """A header value contained CR, LF or NUL."""


class RenderedMessage:
    __slots__ = ("body", "eight_bit", "message_id", "smtputf8")

    def __init__(self, body: bytes, message_id: str, *, eight_bit: bool, smtputf8: bool) -> None:
        self.body = body
        self.message_id = message_id
        self.eight_bit = eight_bit
        self.smtputf8 = smtputf8


@lru_cache(maxsize=1)
def _rfc5322_date(ts: float) -> str:
    """``Fri, 27 Nov 2026 10:00:00 +0000``: UTC with a numeric zone (not ``-0000``, which
    says the zone is unknown, nor the obsolete ``GMT``). The last one is kept: the
    messages of a batch share one time."""
    return format_datetime(datetime.fromtimestamp(ts, UTC))


def _ascii(value: str) -> bool:
    return value.isascii()


def _fold(name: str, value: str) -> str:
    """Fold an ASCII header at spaces so lines stay near 78 characters."""
    line = f"{name}: {value}"
    if len(line) <= 78:
        return line
    out: list[str] = []
    current = f"{name}:"
    blank = True  # the line holds nothing but white space after the name so far
    for word in value.split(" "):
        if not blank and len(current) + 1 + len(word) > 78:
            out.append(current)
            current = " " + word
            blank = not word.strip()
        else:
            current = f"{current} {word}"
            if blank:
                blank = not word.strip()
    out.append(current)
    return "\r\n".join(out)


def header_line(name: str, value: str, *, utf8: bool = False) -> str:
    """One header field, folded, with non-ASCII text RFC 2047-encoded (or raw when ``utf8``)."""
    if _UNSAFE.search(name) or _UNSAFE.search(value):
        raise HeaderInjection(f"header {name!r} contains a line break or NUL")
    if _ascii(value) or utf8:
        folded = _fold(name, value)
        if all(len(line) <= _MAX_LINE for line in folded.split("\r\n")):
            return folded
        # A word too long for any line (RFC 5322 §2.1.1): encoded words can be split.
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}"


def format_address(address: str, name: str | None = None) -> tuple[str, bool]:
    """``Name <addr>`` for a header; returns (text, needs SMTPUTF8)."""
    if _UNSAFE.search(address) or (name and _UNSAFE.search(name)):
        raise HeaderInjection("an address or display name contains a line break or NUL")
    if not name and address.isascii():
        return address, False  # what formataddr gives for a bare ASCII address
    return _named_address(address, name)


@lru_cache(maxsize=4096)
def _named_address(address: str, name: str | None) -> tuple[str, bool]:
    """:func:`format_address` after its checks (senders repeat: kept)."""
    if not address.isascii():
        # An internationalised address can only travel raw, in an SMTPUTF8 message.
        if name:
            quoted = name.replace("\\", "\\\\").replace('"', '\\"')
            return f'"{quoted}" <{address}>', True
        return address, True
    return formataddr((name or "", address), charset="utf-8"), False


def _text_part(text: str, subtype: str) -> tuple[list[str], bytes, bool]:
    """Headers and body of a text part: 7bit when it can be, quoted-printable otherwise."""
    raw = text.replace("\r\n", "\n").replace("\r", "\n")
    if raw and not raw.endswith("\n"):
        raw += "\n"
    data = raw.encode("utf-8")
    if data.isascii() and _LONG_LINE.search(data) is None:
        headers = [
            f"Content-Type: text/{subtype}; charset=us-ascii",
            "Content-Transfer-Encoding: 7bit",
        ]
        return headers, data.replace(b"\n", b"\r\n"), False
    encoded = binascii.b2a_qp(data, quotetabs=False, istext=True, header=False)
    encoded = _LINE_ENDINGS.sub(b"\r\n", encoded)
    headers = [
        f"Content-Type: text/{subtype}; charset=utf-8",
        "Content-Transfer-Encoding: quoted-printable",
    ]
    return headers, encoded, False


def _boundary() -> str:
    return "=_pl_" + random_bytes(12).hex()


def render_message(
    *,
    message_id: str,
    date: float,
    from_: tuple[str, str | None],
    to: Sequence[tuple[str, str | None]],
    cc: Sequence[tuple[str, str | None]] = (),
    reply_to: Sequence[tuple[str, str | None]] = (),
    subject: str = "",
    text: str | None = None,
    html: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    postline_id: str = "",
) -> RenderedMessage:
    """Build a complete message (CRLF line endings) from API fields."""
    smtputf8 = False
    lines: list[str] = []
    for name, items in (("From", (from_,)), ("To", to), ("Cc", cc), ("Reply-To", reply_to)):
        if not items:
            continue
        shown: list[str] = []
        for addr, display in items:
            formatted, utf8 = format_address(addr, display)
            smtputf8 = smtputf8 or utf8
            shown.append(formatted)
        value = ", ".join(shown)
        if _UNSAFE.search(value):
            raise HeaderInjection(f"{name} contains a line break")
        lines.append(_fold(name, value))
    if subject:
        lines.append(header_line("Subject", subject, utf8=smtputf8))
    lines.append(f"Date: {_rfc5322_date(date)}")
    lines.append(f"Message-ID: {message_id}")
    lines.append("MIME-Version: 1.0")
    if postline_id:
        lines.append(f"X-Postline-ID: {postline_id}")
    for name, value in headers:
        lines.append(header_line(name, value, utf8=smtputf8))

    parts: list[tuple[list[str], bytes, bool]] = []
    if text is not None:
        parts.append(_text_part(text, "plain"))
    if html is not None:
        parts.append(_text_part(html, "html"))
    if not parts:
        parts.append(_text_part("", "plain"))

    head = "\r\n".join(lines).encode("utf-8")
    if len(parts) == 1:
        part_headers, body, eight = parts[0]
        out = head + b"\r\n" + "\r\n".join(part_headers).encode() + b"\r\n\r\n" + body
    else:
        boundary = _boundary()
        chunks = [
            head,
            b"\r\n",
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode(),
        ]
        eight = False
        for part_headers, body, part_eight in parts:
            eight = eight or part_eight
            chunks.append(f"--{boundary}\r\n".encode())
            chunks.append("\r\n".join(part_headers).encode() + b"\r\n\r\n")
            chunks.append(body)
            if not body.endswith(b"\r\n"):
                chunks.append(b"\r\n")
        chunks.append(f"--{boundary}--\r\n".encode())
        out = b"".join(chunks)
    return RenderedMessage(out, message_id, eight_bit=eight or smtputf8, smtputf8=smtputf8)


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[: end + 2], data[end + 4 :]


def _header_value(head: bytes, name: bytes) -> bytes | None:
    m = re.search(rb"(?im)^" + re.escape(name) + rb":[ \t]*(.*(?:\r\n[ \t].*)*)", head)
    return m.group(1).strip() if m else None


def fix_raw(
    data: bytes,
    *,
    message_id: str,
    date: float,
    postline_id: str = "",
    strip_bcc: bool = True,
    prepend: Sequence[str] = (),
) -> tuple[bytes, str]:
    """Normalise a raw message for sending; returns (bytes, Message-ID header value).

    Line endings become CRLF; a missing Date or Message-ID is added, and a missing
    MIME-Version (``1.0``: a message without one is read as MIME anyway, RFC 2045 §4)
    unless the message is DKIM-signed already, where a new header could break the
    signature; Bcc is removed; ``prepend`` header lines (e.g. Received) and the
    X-Postline-ID go on top.
    Raises ``ValueError`` when the data has no header section.
    """
    data = _LINE_ENDINGS.sub(b"\r\n", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    head, body = _split_head(data)
    if not _HEADER_NAME.match(head):
        raise ValueError("the message does not start with a header section ('Name: value' lines)")
    if strip_bcc and re.search(rb"(?im)^bcc:", head):
        head = re.sub(rb"(?im)^bcc:.*\r\n(?:[ \t].*\r\n)*", b"", head)
    extra: list[bytes] = [line.encode("utf-8") + b"\r\n" for line in prepend]
    if postline_id:
        head = re.sub(rb"(?im)^x-postline-id:.*\r\n(?:[ \t].*\r\n)*", b"", head)
        extra.append(f"X-Postline-ID: {postline_id}\r\n".encode())
    existing = _header_value(head, b"message-id")
    if existing:
        mid = existing.decode("utf-8", "replace")
    else:
        mid = message_id
        head += f"Message-ID: {message_id}\r\n".encode()
    if _header_value(head, b"date") is None:
        head += f"Date: {_rfc5322_date(date)}\r\n".encode()
    if (
        _header_value(head, b"mime-version") is None
        and _header_value(head, b"dkim-signature") is None
    ):
        head += b"MIME-Version: 1.0\r\n"
    return b"".join(extra) + head + b"\r\n" + body, mid
