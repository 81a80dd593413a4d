"""Tolerant reading of report messages: decoded headers, part texts, the returned message.

Bounces are written by every kind of software, often badly: unknown charsets, missing
boundaries, base64 where nobody expects it. Nothing here raises on bad input; the worst
case is an empty string.
"""

from __future__ import annotations

import base64
import binascii
import html
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, message_from_string
from email.errors import MessageError
from email.header import decode_header
from email.message import Message
from email.policy import compat32

__all__ = [
    "ADDRESS",
    "Leaf",
    "OriginalHeaders",
    "clean_address",
    "decode_bytes",
    "header",
    "header_addresses",
    "html_to_text",
    "leaves",
    "original_from_headers_text",
    "original_from_message",
    "parse",
    "part_text",
    "report_part_text",
]

# An e-mail address inside free text: a dot-atom-ish local part and a dotted domain (or
# an address literal). Deliberately lenient; callers filter.
ADDRESS = re.compile(
    r"(?<![\w.!#$%&'*+/=?^`{|}~@-])"
    r"((?:\"[^\"\r\n@]{1,64}\"|[A-Za-z0-9!#$%&'*+/=?^_`{|}~-](?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{0,126}"
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-])?)"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
    r"[A-Za-z0-9])?)+|\[[0-9.:A-Fa-f]+\]))"
)
_ROUTE_PREFIX = re.compile(r"^(?:smtp|rfc822|mailto|sip|x400|ex)[:=]", re.IGNORECASE)


def clean_address(address: str) -> str | None:
    """An address found in text, tidied (domain lower-cased, ``SMTP=`` / source-route
    prefixes removed), or None when it cannot be a real mailbox (``a..b@c``)."""
    address = address.strip().strip("<>").rstrip(".,;:")
    if ":" in address and address.startswith("@"):
        address = address.rsplit(":", 1)[1]  # source route @a,@b:user@host
    local, _, domain = address.rpartition("@")
    local = _ROUTE_PREFIX.sub("", local)
    if not local or not domain or ("." not in domain.strip("[]") and not domain.startswith("[")):
        return None
    if not local.startswith('"') and (
        ".." in local or local.startswith(".") or local.endswith(".")
    ):
        return None
    return f"{local}@{domain.lower().rstrip('.')}"


_RETURNED_TYPES = {"message/rfc822", "message/global", "message/partial"}
_HEADERS_TYPES = {"text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header"}


def parse(raw: bytes) -> Message:
    """Parse raw bytes leniently (the compat32 policy never raises on bad headers)."""
    return message_from_bytes(raw, policy=compat32)


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode ``data`` with ``charset``, guessing sensibly when it is missing or wrong."""
    candidates = []
    if charset:
        cs = charset.strip().strip('"').lower()
        candidates.append({"ks_c_5601-1987": "cp949", "x-sjis": "shift_jis"}.get(cs, cs))
    if b"\x1b$B" in data or b"\x1b$@" in data:
        candidates.append("iso-2022-jp")
    candidates += ["utf-8", "cp1252"]
    for cs in candidates:
        try:
            return data.decode(cs)
        except (LookupError, ValueError):
            continue
    return data.decode("latin-1")


def header(msg: Message, name: str) -> str:
    """One header, RFC 2047-decoded and unfolded; ``""`` when absent."""
    value = msg.get(name)
    if value is None:
        return ""
    return _decode_header_value(str(value))


def _decode_header_value(value: str) -> str:
    try:
        parts = decode_header(value)
    except (ValueError, LookupError, binascii.Error, MessageError):
        return " ".join(value.split())
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, bytes):
            out.append(decode_bytes(chunk, charset))
        else:
            out.append(chunk)
    return " ".join("".join(out).split())


def header_addresses(value: str) -> list[str]:
    """The addresses in a header value, in order."""
    out = []
    for m in ADDRESS.finditer(value):
        addr = clean_address(m.group(1))
        if addr is not None:
            out.append(addr)
    return out


def payload(part: Message) -> list[Message] | str:
    """``part.get_payload()``, but never raising: a damaged charset parameter (a NUL, an
    unknown codec) makes the stdlib fail while decoding a body it keeps as bytes."""
    try:
        value = part.get_payload()
    except (ValueError, LookupError, TypeError, AssertionError):
        try:
            raw = part.get_payload(decode=True)
        except (ValueError, LookupError, TypeError, AssertionError):
            return ""
        return raw.decode("latin-1") if isinstance(raw, bytes) else ""
    if isinstance(value, list):
        return [m for m in value if isinstance(m, Message)]
    return value if isinstance(value, str) else ""


def part_text(part: Message) -> str:
    """The decoded text of a non-multipart part (HTML turned into plain text)."""
    try:
        data = part.get_payload(decode=True)
    except (ValueError, LookupError, TypeError, AssertionError):
        data = None
    if isinstance(data, bytes):
        text = decode_bytes(data, part.get_content_charset())
    else:
        raw = payload(part)
        text = raw if isinstance(raw, str) else ""
    if part.get_content_type() == "text/html":
        text = html_to_text(text)
    return text.replace("\r\n", "\n").replace("\r", "\n")


_TAGS_DROPPED = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_BREAKS = re.compile(r"<\s*(?:br|/p|p|/div|div|/tr|tr|/li|li|/h\d|hr|/table)\b[^>]*>", re.I)
_TAG = re.compile(r"<[^>]*>")


def html_to_text(text: str) -> str:
    """A rough plain-text rendering of HTML, keeping line breaks at block ends."""
    text = _TAGS_DROPPED.sub(" ", text)
    text = _BREAKS.sub("\n", text)
    text = _TAG.sub(" ", text)
    return html.unescape(text)


@dataclass(frozen=True, slots=True)
class Leaf:
    """One non-container part, with whether it lies inside a returned message."""

    part: Message
    content_type: str
    returned: bool


def leaves(msg: Message, *, returned: bool = False) -> Iterator[Leaf]:
    """Every leaf part in document order; ``message/delivery-status`` and
    ``message/feedback-report`` count as leaves."""
    ctype = msg.get_content_type()
    body = payload(msg)
    if ctype in (
        "message/delivery-status",
        "message/feedback-report",
        "message/global-delivery-status",
    ):
        yield Leaf(msg, ctype, returned)
        return
    if ctype.startswith("multipart/") and isinstance(body, str):
        repaired = _repair_multipart(ctype, body)
        if repaired is not None:
            msg, body = repaired, payload(repaired)
        else:
            # No boundary to split on: its text is still the body of the report.
            yield Leaf(msg, "text/plain", returned)
            return
    if isinstance(body, list):
        inner = returned or ctype in _RETURNED_TYPES
        if ctype in _RETURNED_TYPES:
            yield Leaf(msg, ctype, returned)
        for sub in body:
            if isinstance(sub, Message):
                yield from leaves(sub, returned=inner)
        return
    yield Leaf(msg, ctype, returned)


_BROKEN_BOUNDARY = re.compile(r'\A\s*boundary\s*=\s*"?([^"\s;]+)"?[^\n]*\n', re.IGNORECASE)


def _repair_multipart(ctype: str, text: str) -> Message | None:
    """A multipart part whose ``boundary`` parameter sat on an unindented line of its own
    (a broken header fold, so the parser took it for the body): parse it again with the
    parameter where it belongs."""
    m = _BROKEN_BOUNDARY.match(text)
    if m is None:
        return None
    rest = text[m.end() :]
    head = f'Content-Type: {ctype}; boundary="{m.group(1)}"\n\n'
    fixed = message_from_string(head + rest.lstrip("\n"), policy=compat32)
    return fixed if isinstance(payload(fixed), list) else None


def _unescape(value: str) -> str:
    """A header value parsed from bytes: 8-bit octets (UTF-8 in a
    message/global-delivery-status, RFC 6533) arrive as surrogate escapes."""
    if value.isascii():
        return value
    return decode_bytes(value.encode("utf-8", "surrogateescape"), None)


def report_part_text(part: Message) -> str:
    """The text of a ``message/delivery-status`` (or feedback-report) part.

    The lenient parser splits such a part into header blocks; they are joined back, and
    a part some software encoded in base64 or quoted-printable is decoded.
    """
    body = payload(part)
    if isinstance(body, list):
        blocks = []
        for sub in body:
            lines = [f"{k}: {_unescape(v)}" for k, v in sub.raw_items()]
            try:
                data = sub.get_payload(decode=True)
            except (ValueError, LookupError, TypeError, AssertionError):
                data = None
            inner = decode_bytes(data, None) if isinstance(data, bytes) else ""
            if inner.strip():
                lines.append(inner)
            blocks.append("\n".join(lines))
        text = "\n\n".join(blocks)
    else:
        text = body
    cte = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if cte == "base64":
        try:
            raw = base64.b64decode("".join(text.split()), validate=False)
        except (binascii.Error, ValueError):
            raw = b""
        text = decode_bytes(raw, part.get_content_charset())
    elif cte == "quoted-printable":
        text = decode_bytes(quopri.decodestring(text.encode("latin-1", "replace")), None)
    elif "\x1b$" in text:
        # Fields written in ISO-2022-JP (Japanese Domino): 7-bit escape sequences.
        text = decode_bytes(text.encode("utf-8", "surrogateescape"), part.get_content_charset())
    return text.replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True, slots=True)
class OriginalHeaders:
    """What a bounce or report says about the message it is about."""

    message_id: str | None = None
    postline_id: str | None = None
    to: tuple[str, ...] = ()
    sender: tuple[str, ...] = field(default=())
    subject: str = ""
    complained: tuple[str, ...] = ()  # X-HmXmrOriginalRecipient (Microsoft JMRP)


_MSGID = re.compile(r"<[^<>\s]+>")


def _first_msgid(value: str) -> str | None:
    m = _MSGID.search(value)
    if m:
        return m.group(0)
    value = value.strip()
    return f"<{value}>" if value and "@" in value and " " not in value else None


def original_from_message(msg: Message) -> OriginalHeaders:
    """The identifiers and addresses in the headers of a returned message."""
    mid = _first_msgid(header(msg, "Message-ID"))
    pid = header(msg, "X-Postline-ID").strip() or None
    to: list[str] = []
    for name in ("To", "Cc"):
        to += header_addresses(header(msg, name))
    sender: list[str] = []
    for name in ("From", "Sender", "Return-Path", "Reply-To"):
        sender += header_addresses(header(msg, name))
    complained = header_addresses(header(msg, "X-HmXmrOriginalRecipient"))
    return OriginalHeaders(
        mid, pid, tuple(to), tuple(sender), header(msg, "Subject"), tuple(complained)
    )


def original_from_headers_text(text: str) -> OriginalHeaders:
    """Like :func:`original_from_message` for a block of header lines given as text."""
    return original_from_message(message_from_string(text.lstrip("\n"), policy=compat32))
