"""Delivery status notifications (RFC 3464) for the senders of SMTP-submitted mail.

When a recipient of a message that came in over SMTP submission fails permanently or
expires, postline owes the envelope sender a bounce. This module writes it:

* :func:`should_notify` — whether a DSN may be sent at all: never to the null sender or
  a mailer daemon, never about a DSN or another automatic message (no bounce loops),
  and only for mail whose source is ``"smtp"`` (not for mail submitted over the API);
* :func:`build_dsn` — the complete notification as bytes: a ``multipart/report``
  (RFC 6522) whose parts are a human explanation (``text/plain``), the machine-readable
  ``message/delivery-status`` (RFC 3464, with the RFC 6533 ``utf-8`` address type for
  internationalised addresses) and the original header block (``text/rfc822-headers``).

The message has CRLF line endings, no line longer than 998 octets and a 7-bit body.
Its headers are ASCII, with one exception: a sender whose local part is not ASCII can
only be written as UTF-8 (RFC 6532), and such a DSN can only travel over SMTPUTF8
anyway. Control characters in the inputs (CR, LF, NUL, C1 controls, Unicode line
separators) never reach the output as such: they become spaces in text and addresses,
make a host name invalid (an error for ``reporting_mta``, a left-out ``Remote-MTA``),
and are escaped in the returned headers, so no input can start a header line, a field
of the delivery report or a MIME boundary of its own.

The caller sends the result with the null reverse path (``MAIL FROM:<>``) to the
original envelope sender, and marks the queued DSN with source ``"dsn"`` so that
:func:`should_notify` never answers a bounce with another one.
"""

from __future__ import annotations

import ipaddress
import math
import re
import secrets
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import Header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime

from postline.model.ids import new_id

__all__ = ["DsnRecipient", "build_dsn", "should_notify"]


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    """One recipient to report on.

    ``address`` is the final recipient (may be internationalised); ``action`` is
    ``"failed"`` or ``"delayed"``; ``status`` the enhanced status code (``5.1.1``,
    ``5.4.7`` for an expired message); ``diagnostic`` the remote server's reply when
    there was one; ``remote_mta`` the host that gave it; ``last_attempt`` a unix time.
    """

    address: str
    action: str
    status: str
    diagnostic: str = ""
    remote_mta: str | None = None
    last_attempt: float | None = None


# C0 controls (CR, LF, NUL, TAB ...), DEL, C1 controls (NEL ...) and the Unicode line and
# paragraph separators: everything some reader might treat as a line break.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_SMTP_REPLY = re.compile(r"^[245]\d\d(?:[ -]|$)")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010ffff]"
_LOCAL = re.compile(rf'^(?:{_ATEXT}+(?:\.{_ATEXT}+)*|"(?:[^"\\]|\\.)*")$')
_DAEMON = re.compile(r"^(?:mailer[-_.]?daemon|mail[-_.]?daemon|postmaster)$", re.IGNORECASE)
_UNSAFE_7BIT = re.compile(rb"[^\t\x20-\x7e]")

_MAX_LINE = 998  # octets before CRLF (RFC 5322 §2.1.1)
_MAX_WORD = 900  # longest unbroken run in a folded field: room left for the field name
_MAX_ADDRESS = 512  # characters of a sender address; SMTP allows 256 octets
_MAX_DIAGNOSTIC = 2000  # characters of a diagnostic kept (the rest is cut, marked "...")
_WIDTH = 76  # preferred width of text and folded fields

_SUBJECT_FAILED = "Undelivered Mail Returned to Sender"
_SUBJECT_DELAYED = "Delayed Mail (still being retried)"


# --- input cleaning ----------------------------------------------------------------------


def _clean_text(value: str) -> str:
    """Free text on one line: controls become spaces, runs of white space one space."""
    return " ".join(_CONTROLS.sub(" ", value).split())


def _hostname(value: str) -> str | None:
    """A DNS host name in A-label form, lower-cased, without the trailing dot; None when
    ``value`` is not one (IP addresses, empty labels, spaces, controls...)."""
    host = value.strip().rstrip(".").lower()
    if not host or _CONTROLS.search(host) or any(c.isspace() for c in host):
        return None
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None  # a dotted-quad, not a name
    return host


def _remote_host(value: str | None) -> str | None:
    """The name of the remote MTA as a ``dns`` MTA name: a host name or an address
    literal ``[192.0.2.1]``; None when ``value`` is neither."""
    if not value:
        return None
    text = _clean_text(value)
    host = _hostname(text)
    if host is not None:
        return host
    literal = text.strip("[]")
    if literal.lower().startswith("ipv6:"):
        literal = literal[5:]
    try:
        return f"[{ipaddress.ip_address(literal)}]"
    except ValueError:
        return None


def _domain(value: str) -> str | None:
    """The domain of a mailbox: a host name (A-label form) or an address literal."""
    if value.startswith("[") and value.endswith("]"):
        literal = value[1:-1]
        if literal.lower().startswith("ipv6:"):
            literal = literal[5:]
        try:
            ipaddress.ip_address(literal)
        except ValueError:
            return None
        return value
    return _hostname(value)


def _mailbox(value: str) -> tuple[str, str] | None:
    """(local part, domain) of an envelope address such as ``<ann@example.com>``; None
    for the null sender and anything that is not one mailbox. The domain comes back in
    A-label form; the local part as given (RFC 6531 allows UTF-8 in it)."""
    text = _CONTROLS.sub(" ", value).strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    if not text or len(text) > _MAX_ADDRESS or "<" in text or ">" in text:
        return None
    local, at, domain_part = text.rpartition("@")
    if not at or not local or not _LOCAL.match(local):
        return None
    domain = _domain(domain_part)
    if domain is None:
        return None
    return local, domain


def _sender_address(value: str) -> str:
    local, domain = _mailbox(value) or ("", "")
    if not local:
        raise ValueError(f"not a mailbox to send a notification to: {value!r}")
    return f"{local}@{domain}"


def _recipient_address(value: str) -> str:
    address = _clean_text(value)
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1].strip()
    if not address:
        raise ValueError(f"recipient without an address: {value!r}")
    return address


def _status(value: str) -> str:
    m = _STATUS.match(value.strip())
    if m is None or int(m.group(2)) > 999 or int(m.group(3)) > 999:
        raise ValueError(f"not an enhanced status code: {value!r}")
    return f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}"


def _action(value: str) -> str:
    action = value.strip().lower()
    if action not in ("failed", "delayed"):
        raise ValueError(f"a DSN reports a failed or delayed recipient, not {value!r}")
    return action


def _date(timestamp: float) -> str:
    """An RFC 5322 date-time in UTC (``Mon, 02 Mar 2026 10:00:05 +0000``)."""
    if not math.isfinite(timestamp):
        raise ValueError(f"not a time: {timestamp!r}")
    try:
        moment = datetime.fromtimestamp(timestamp, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"not a time: {timestamp!r}") from exc
    return format_datetime(moment)


# --- encodings -----------------------------------------------------------------------------


def _utf8_xtext(address: str) -> str:
    """RFC 6533 utf-8-addr-xtext: printable ASCII but ``\\``, ``+`` and ``=`` as is,
    every other character as ``\\x{HEX}``, so the address survives a 7-bit part."""
    out = []
    for ch in address:
        if "!" <= ch <= "~" and ch not in "\\+=":
            out.append(ch)
        else:
            out.append(f"\\x{{{ord(ch):X}}}")
    return "".join(out)


def _ascii_text(text: str) -> str:
    """Text for a delivery-status field, which is US-ASCII (RFC 3464 §2.1.2): each
    non-ASCII character (an SMTPUTF8 reply) is written ``\\x{HEX}`` as in RFC 6533."""
    return "".join(ch if ch.isascii() else f"\\x{{{ord(ch):X}}}" for ch in text)


def _typed_address(address: str) -> str:
    """A ``Final-Recipient`` value: ``rfc822; addr`` for an ASCII address, else
    ``utf-8; xtext`` (RFC 6533 §3, the 7-bit form a ``message/delivery-status`` needs)."""
    if address.isascii():
        return f"rfc822; {address}"
    return f"utf-8; {_utf8_xtext(address)}"


def _text_header(text: str) -> str:
    """A header value that holds text: as is when ASCII, else RFC 2047 encoded words."""
    if text.isascii():
        return text
    return Header(text, "utf-8", maxlinelen=_WIDTH).encode(linesep="\r\n")


def _field(name: str, value: str) -> str:
    """``Name: value`` folded at spaces to lines of about ``_WIDTH`` characters.

    Folding only ever adds CRLF before existing white space, so an unfolding reader sees
    the value unchanged; a single run longer than ``_MAX_WORD`` characters is cut into
    pieces so that no line passes the 998-octet limit.
    """
    words: list[str] = []
    for word in value.split(" "):
        while len(word) > _MAX_WORD:
            words.append(word[:_MAX_WORD])
            word = word[_MAX_WORD:]
        if word:
            words.append(word)
    lines: list[str] = []
    current = f"{name}:"
    has_word = False
    for word in words:
        if has_word and len(current) + 1 + len(word) > _WIDTH:
            lines.append(current)
            current = f" {word}"
        else:
            current = f"{current} {word}"
        has_word = True
    lines.append(current)
    return "\r\n".join(lines)


def _quoted_printable(data: bytes) -> bytes:
    """RFC 2045 quoted-printable of LF-separated lines, with CRLF line breaks.

    Every byte outside printable ASCII is escaped — 8-bit bytes, NUL, a bare CR — and so
    are ``=`` and white space at the end of a line; lines are at most 76 characters.
    """
    out: list[bytes] = []
    for line in data.split(b"\n"):
        pieces: list[bytes] = []
        last = len(line) - 1
        for i, byte in enumerate(line):
            if (0x21 <= byte <= 0x7E and byte != 0x3D) or (byte in (0x09, 0x20) and i < last):
                pieces.append(bytes((byte,)))
            else:
                pieces.append(b"=%02X" % byte)
        current = b""
        for piece in pieces:
            if len(current) + len(piece) > _WIDTH - 1:
                out.append(current + b"=")  # soft line break
                current = b""
            current += piece
        out.append(current)
    return b"\r\n".join(out)


def _text_body(text: str) -> tuple[list[str], bytes]:
    """(Content-Type and -Transfer-Encoding lines, body) for a text/plain part."""
    data = text.encode("utf-8")
    lines = data.split(b"\n")
    if not any(_UNSAFE_7BIT.search(ln) or len(ln) > _MAX_LINE for ln in lines):
        return ["Content-Type: text/plain; charset=us-ascii"], b"\r\n".join(lines)
    return (
        ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: quoted-printable"],
        _quoted_printable(data),
    )


def _headers_part(original: bytes) -> tuple[list[str], bytes]:
    """(part headers, body) of the ``text/rfc822-headers`` part.

    The header block is cut at its first empty line and normalised to CRLF. When it is
    plain 7-bit text with lines of legal length it goes as is. Otherwise — 8-bit bytes
    (RFC 6532 UTF-8 headers, or raw legacy charsets), controls, overlong lines — the
    part is quoted-printable: text/rfc822-headers is a ``text`` type, so unlike
    ``message/*`` it may carry a transfer encoding (RFC 6522 §4 allows quoted-printable
    for broken headers), and quoted-printable keeps every original octet, including a
    bare CR or NUL, exactly while the DSN stays 7-bit and the ASCII headers readable.
    The charset says how to read the 8-bit octets: ``utf-8`` when they are valid UTF-8,
    otherwise ``unknown-8bit`` (RFC 1428), which claims nothing.
    """
    data = original.replace(b"\r\n", b"\n").lstrip(b"\n")
    end = data.find(b"\n\n")
    if end >= 0:
        data = data[:end]
    data = data.rstrip(b"\n")
    lines = data.split(b"\n") if data else []
    if not any(_UNSAFE_7BIT.search(ln) or len(ln) > _MAX_LINE for ln in lines):
        return ["Content-Type: text/rfc822-headers"], b"".join(ln + b"\r\n" for ln in lines)
    if data.isascii():
        charset = "us-ascii"
    else:
        try:
            data.decode("utf-8")
            charset = "utf-8"
        except UnicodeDecodeError:
            charset = "unknown-8bit"
    return (
        [
            f"Content-Type: text/rfc822-headers; charset={charset}",
            "Content-Transfer-Encoding: quoted-printable",
        ],
        _quoted_printable(data + b"\n"),
    )


# --- the notification ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    """One recipient, cleaned and checked."""

    address: str
    action: str
    status: str
    diagnostic: str
    remote: str | None
    last_attempt: float | None


def _entry(r: DsnRecipient) -> _Entry:
    diagnostic = _clean_text(r.diagnostic)
    if len(diagnostic) > _MAX_DIAGNOSTIC:
        diagnostic = diagnostic[:_MAX_DIAGNOSTIC] + "..."
    if r.last_attempt is not None:
        _date(r.last_attempt)  # refuse a bad time early
    return _Entry(
        address=_recipient_address(r.address),
        action=_action(r.action),
        status=_status(r.status),
        diagnostic=diagnostic,
        remote=_remote_host(r.remote_mta),
        last_attempt=r.last_attempt,
    )


def _expired(entry: _Entry) -> bool:
    return entry.action == "failed" and entry.status.endswith(".4.7")


def _duration(seconds: float) -> str:
    hours = max(0, round(seconds / 3600))
    if hours >= 48:
        days = round(hours / 24)
        return f"{days} days"
    return "1 hour" if hours == 1 else f"{hours} hours"


def _wrap(text: str, first: str = "", rest: str = "") -> list[str]:
    """``text`` wrapped to ``_WIDTH``, its first line indented by ``first``, the others
    by ``rest``."""
    return textwrap.wrap(
        text,
        width=_WIDTH,
        initial_indent=first,
        subsequent_indent=rest,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _explanation(
    mta: str, entries: Sequence[_Entry], arrival: float, now: float, all_delayed: bool
) -> str:
    """The human-readable part: what happened to each recipient, with the remote reply.
    Each recipient's paragraph starts with its address at the margin and continues
    indented; the introduction names no recipient, so a reader can tell whose lines
    are whose."""
    lines = [f"This is the mail system at host {mta}.", ""]
    if all_delayed:
        intro = (
            "Your message has not been delivered yet to the recipients listed below. "
            "The mail system is still trying and will send another notice if it gives "
            "up. You do not need to send the message again."
        )
    else:
        intro = (
            "Your message could not be delivered to one or more of its recipients. "
            "The reasons are given below, and the headers of your message are attached."
        )
    lines += [*_wrap(intro), ""]
    for e in entries:
        if _expired(e):
            state = (
                f"delivery failed (status {e.status}): the message stayed in the queue "
                f"for {_duration(now - arrival)} without being delivered, so the mail "
                f"system gave up."
            )
        elif e.action == "failed":
            state = f"delivery failed (status {e.status})."
        else:
            state = f"delivery delayed (status {e.status}); the mail system is still trying."
        lines += _wrap(f"<{e.address}>: {state}", "", "    ")
        detail = []
        if e.last_attempt is not None:
            detail.append(f"Last attempt: {_date(e.last_attempt)}.")
        if e.diagnostic:
            server = f"The server {e.remote}" if e.remote else "The remote server"
            detail.append(f"{server} replied: {e.diagnostic}")
        elif e.remote:
            detail.append(f"Remote server: {e.remote}.")
        for d in detail:
            lines += _wrap(d, "    ", "    ")
        lines.append("")
    return "\n".join(lines)


def _delivery_status(
    mta: str, envelope_id: str | None, arrival: float, entries: Sequence[_Entry]
) -> bytes:
    per_message = []
    if envelope_id:
        # Postline's ids are printable ASCII and go as is; anything else is hex-escaped
        # the way RFC 3461 xtext writes an ENVID, so the field stays one ASCII word.
        envid = "".join(
            ch if "!" <= ch <= "~" else "".join(f"+{b:02X}" for b in ch.encode("utf-8"))
            for ch in envelope_id
        )
        per_message.append(_field("Original-Envelope-Id", envid))
    per_message.append(f"Reporting-MTA: dns; {mta}")
    per_message.append(f"Arrival-Date: {_date(arrival)}")
    blocks = ["\r\n".join(per_message)]
    for e in entries:
        typed = _typed_address(e.address)
        if len(typed) + len("Final-Recipient: ") > _MAX_LINE:
            raise ValueError(f"recipient address too long for a DSN: {e.address!r}")
        fields = [f"Final-Recipient: {typed}", f"Action: {e.action}", f"Status: {e.status}"]
        if e.remote:
            fields.append(f"Remote-MTA: dns; {e.remote}")
        if e.diagnostic:
            # "smtp" is for SMTP replies (RFC 3464 §2.3.6); other text is postline's own.
            kind = "smtp" if _SMTP_REPLY.match(e.diagnostic) else "x-postline"
            fields.append(_field("Diagnostic-Code", f"{kind}; {_ascii_text(e.diagnostic)}"))
        if e.last_attempt is not None:
            fields.append(f"Last-Attempt-Date: {_date(e.last_attempt)}")
        blocks.append("\r\n".join(fields))
    return ("\r\n\r\n".join(blocks) + "\r\n").encode("ascii")


def _boundary(bodies: Sequence[bytes]) -> str:
    while True:
        boundary = f"=_dsn_{secrets.token_hex(16)}"
        marker = boundary.encode("ascii")
        if not any(marker in body for body in bodies):
            return boundary


def build_dsn(
    *,
    reporting_mta: str,
    original_mail_from: str,
    original_headers: bytes,
    recipients: Sequence[DsnRecipient],
    arrival: float,
    now: float,
    envelope_id: str | None = None,
) -> bytes:
    """The delivery status notification for ``recipients`` of one message, as bytes.

    ``reporting_mta`` is this host's name, ``original_mail_from`` the envelope sender of
    the original message (the DSN's recipient), ``original_headers`` its header block,
    ``arrival`` when it was accepted, ``now`` the time of the notice and
    ``envelope_id`` postline's id for it (``Original-Envelope-Id``).

    The subject says "Undelivered" when any recipient failed and "Delayed" when all
    are delayed. Raises ValueError for an empty ``recipients``, a ``reporting_mta`` that
    is not a host name, a sender that is not a mailbox (the null sender included), a
    recipient without an address, an action other than ``failed``/``delayed``, a
    malformed status code or a time that is not one.
    """
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    mta = _hostname(reporting_mta)
    if mta is None:
        raise ValueError(f"not a host name: {reporting_mta!r}")
    sender = _sender_address(original_mail_from)
    date = _date(now)
    _date(arrival)  # refuse a bad time before any arithmetic with it
    entries = [_entry(r) for r in recipients]
    all_delayed = all(e.action == "delayed" for e in entries)

    text_headers, text_body = _text_body(_explanation(mta, entries, arrival, now, all_delayed))
    status_body = _delivery_status(mta, envelope_id, arrival, entries)
    orig_headers, orig_body = _headers_part(original_headers)
    parts = [
        (["Content-Description: Notification", *text_headers], text_body),
        (
            ["Content-Description: Delivery report", "Content-Type: message/delivery-status"],
            status_body,
        ),
        (["Content-Description: Undelivered Message Headers", *orig_headers], orig_body),
    ]
    boundary = _boundary([body for _, body in parts])

    head = [
        f"From: {_text_header('Mail Delivery System')} <MAILER-DAEMON@{mta}>",
        # An address is no text for RFC 2047: an ASCII local part keeps the header ASCII
        # (the domain is in A-label form); a UTF-8 one can only be written as UTF-8.
        f"To: <{sender}>",
        f"Subject: {_text_header(_SUBJECT_DELAYED if all_delayed else _SUBJECT_FAILED)}",
        f"Date: {date}",
        f"Message-ID: <{new_id()}.dsn@{mta}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
    ]
    out = [
        "\r\n".join(head).encode("utf-8"),
        b"\r\n\r\nThis is a MIME-encapsulated message.\r\n",
    ]
    for part_headers, body in parts:
        out.append(f"\r\n--{boundary}\r\n".encode("ascii"))
        out.append("\r\n".join(part_headers).encode("ascii") + b"\r\n\r\n")
        out.append(body)  # empty, or ending with the CRLF of its last line
    out.append(f"\r\n--{boundary}--\r\n".encode("ascii"))
    return b"".join(out)


# --- when to notify ----------------------------------------------------------------------


def _automatic(headers: bytes) -> bool:
    """Whether a header block marks its message as a report or an automatic one."""
    msg = BytesHeaderParser(policy=compat32).parsebytes(headers)
    if msg.get_content_type() == "multipart/report":
        return True
    for value in msg.get_all("Auto-Submitted") or ():
        keyword = re.split(r"[;(\s]", str(value).strip(), maxsplit=1)[0].lower()
        if keyword != "no":
            return True
    return False


def should_notify(mail_from: str, *, source: str, headers: bytes | None = None) -> bool:
    """True when a DSN may be sent to ``mail_from`` about a message from ``source``.

    Only mail that came in over SMTP (``source == "smtp"``) is answered with a DSN, and
    never: to the null sender (``""`` / ``<>``) or anything else that is not a mailbox;
    to a mailer daemon (``MAILER-DAEMON@``, ``postmaster@`` and their variants); about
    a message postline generated as a DSN (source ``"dsn"``); nor when the original
    ``headers`` show a report (``Content-Type: multipart/report``) or an automatic
    message (any ``Auto-Submitted`` whose keyword is not ``no``, an empty one included).
    """
    if source != "smtp":
        return False
    mailbox = _mailbox(mail_from)
    if mailbox is None:
        return False
    local = mailbox[0].strip('"').split("+", 1)[0]
    if _DAEMON.match(local):
        return False
    return not (headers is not None and _automatic(headers))
