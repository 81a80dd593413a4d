"""The format checks of a message (:func:`check_format`, no I/O):

- ``from`` — one From field naming exactly one address (Gmail rejects several);
- ``date`` — present and parseable (a date far off is a warning);
- ``message_id`` — present, ``<left@right>``;
- ``mime_version`` — present when the message uses MIME (Content-Type or
  Content-Transfer-Encoding);
- ``recipients_header`` — a To or Cc field (warning);
- ``subject`` — present and not empty (warning);
- ``duplicate_headers`` — a field RFC 5322 §3.6 allows once (Date, From, Sender,
  Reply-To, To, Cc, Bcc, Message-ID, In-Reply-To, References, Subject) or that MIME
  reads once (MIME-Version, Content-Type, Content-Transfer-Encoding) given twice;
- ``header_syntax`` — header lines that are no field, 8-bit bytes in header fields;
- ``mime`` — what the stdlib ``email`` parser found broken (multipart without
  boundary or parts, missing boundaries, bad base64...), unknown
  Content-Transfer-Encoding (errors), 8-bit bytes in a part not declared 8bit or binary
  (warning);
- ``text_alternative`` — HTML without a text/plain part (warning); ``html_size`` — HTML
  over 102 KB, which Gmail clips (warning);
- ``line_length`` — lines longer than 998 octets (RFC 5322 §2.1.1);
- ``size`` — against ``[submission] max_message_size``.
"""

from __future__ import annotations

import datetime
import email.policy
import email.utils
import re
import time
from collections import Counter
from collections.abc import Sequence
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any, Final

from postline.check.findings import Finding

__all__ = ["check_format", "header_fields", "header_text", "split_header"]

MAX_LINE: Final = 998  # octets, without CRLF (RFC 5322 §2.1.1)

GMAIL_CLIP: Final = 102 * 1024  # Gmail shows "[Message clipped]" past this much HTML

SINGLE: Final = (
    "date",
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "message-id",
    "in-reply-to",
    "references",
    "subject",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)

ENCODINGS: Final = frozenset({"7bit", "8bit", "binary", "quoted-printable", "base64"})

_MSG_ID: Final = re.compile(r"^\s*<[^<>\s@]+@[^<>\s@]+>\s*$")

_FIELD: Final = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*)$", re.DOTALL)

_STRUCTURE_DEFECTS: Final = frozenset(
    {
        "NoBoundaryInMultipartDefect",
        "StartBoundaryNotFoundDefect",
        "MissingHeaderBodySeparatorDefect",
        "FirstHeaderLineIsContinuationDefect",
        "InvalidMultipartContentTransferEncodingDefect",
    }
)

_QUIET_DEFECTS: Final = frozenset(
    {
        # Always accompanies a structural defect reported on its own.
        "MultipartInvariantViolationDefect",
        # Header-level defects are reported by the header checks.
        "InvalidHeaderDefect",
        "HeaderMissingRequiredValue",
        "ObsoleteHeaderDefect",
        "NonASCIILocalPartDefect",
        "InvalidDateDefect",
    }
)


def split_header(message: bytes) -> tuple[list[bytes], int]:
    """The header lines (without line ends) and the index where the body starts."""
    lines = message.split(b"\n")
    head: list[bytes] = []
    for i, line in enumerate(lines):
        line = line.removesuffix(b"\r")
        if not line:
            return head, i + 1
        head.append(line)
    return head, len(lines)


def header_fields(head: Sequence[bytes]) -> tuple[list[tuple[str, bytes]], list[int]]:
    """(lower-case name, unfolded value) of each header field, and the numbers (from 1)
    of header lines that are neither a field nor a continuation."""
    fields: list[tuple[str, bytes]] = []
    bad: list[int] = []
    for n, line in enumerate(head, 1):
        if line[:1] in (b" ", b"\t"):
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, value + b" " + line.strip())
            else:
                bad.append(n)
            continue
        m = _FIELD.match(line)
        if m is None:
            bad.append(n)
            continue
        fields.append((m.group(1).decode("ascii").lower(), m.group(2).strip()))
    return fields, bad


def header_text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _short(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _defect_text(defect: Exception) -> str:
    text = str(defect).strip()
    if not text:
        text = (type(defect).__doc__ or type(defect).__name__).strip().rstrip(".")
    return text[:1].lower() + text[1:]


def check_format(message: bytes, *, max_size: int) -> list[Finding]:
    """Header, MIME, line-length and size checks of a message (no I/O)."""
    out: list[Finding] = []
    head, body_start = split_header(message)
    fields, bad_lines = header_fields(head)
    names = Counter(name for name, _ in fields)
    values: dict[str, bytes] = {}
    for name, value in fields:
        values.setdefault(name, value)
    msg: EmailMessage | None
    try:
        parsed = BytesParser(policy=email.policy.default).parsebytes(message)
        msg = parsed if isinstance(parsed, EmailMessage) else None
    except Exception as exc:  # the stdlib parser has failure modes of its own
        msg = None
        out.append(
            Finding(
                "mime",
                "error",
                f"the message cannot be parsed as MIME: {exc}",
                "build the message with a MIME library instead of by hand",
            )
        )
    out += _check_from(names, values, msg)
    out += _check_date(values)
    out += _check_message_id(values)
    out += _check_mime_version(values, msg)
    if names["to"] or names["cc"]:
        out.append(Finding("recipients_header", "ok", "To/Cc present"))
    else:
        out.append(
            Finding(
                "recipients_header",
                "warning",
                "the message has neither To nor Cc: receivers and SpamAssassin count mail "
                "that names no recipient against it",
                "put the recipient (or an 'undisclosed-recipients:;' group) in To",
            )
        )
    subject = header_text(values.get("subject", b"")).strip() if "subject" in values else None
    if subject is None:
        out.append(
            Finding(
                "subject",
                "warning",
                "the message has no Subject",
                "give it a subject that says what the message is about",
            )
        )
    elif not subject:
        out.append(Finding("subject", "warning", "the Subject is empty", "give it a subject"))
    else:
        out.append(Finding("subject", "ok", f"Subject: {_short(subject, 80)}"))
    out += _check_duplicates(names)
    out += _check_header_syntax(head, bad_lines)
    if msg is not None:
        out += _check_mime(msg, values)
    out += _check_lines(message, body_start)
    size = len(message)
    if size > max_size:
        out.append(
            Finding(
                "size",
                "error",
                f"the message is {size} bytes, more than this node's limit of {max_size} "
                "([submission] max_message_size)",
                "link to large files instead of attaching them",
            )
        )
    else:
        out.append(Finding("size", "ok", f"{size} bytes (limit {max_size})"))
    return out


def _check_from(
    names: Counter[str], values: dict[str, bytes], msg: EmailMessage | None
) -> list[Finding]:
    if not names["from"]:
        return [
            Finding(
                "from",
                "error",
                "the message has no From header",
                "add a From header with the sender's address",
            )
        ]
    raw = header_text(values["from"])
    addresses: list[str] = []
    problem = ""
    try:
        header: Any = msg["From"] if msg is not None else None
        if header is None:
            raise ValueError("unreadable")
        defects = list(getattr(header, "defects", ()))
        if defects:
            problem = _defect_text(defects[0])
        for a in header.addresses:
            if not a.username or not a.domain:
                problem = problem or f"{a.addr_spec or 'an empty address'} is not an address"
            addresses.append(a.addr_spec)
    except Exception as exc:
        problem = f"it cannot be parsed ({exc})"
    if problem or not addresses:
        return [
            Finding(
                "from",
                "error",
                f"From: {_short(raw)!r} is not a usable address: {problem or 'no address'}",
                "write it as 'Name <user@example.com>' or 'user@example.com'",
            )
        ]
    if len(addresses) > 1:
        return [
            Finding(
                "from",
                "error",
                f"From names {len(addresses)} addresses ({', '.join(addresses)}); Gmail "
                "rejects messages whose From has more than one address",
                "put one address in From (and any others in Reply-To)",
            )
        ]
    return [Finding("from", "ok", f"From: {addresses[0]}")]


def _check_date(values: dict[str, bytes]) -> list[Finding]:
    if "date" not in values:
        return [
            Finding(
                "date",
                "error",
                "the message has no Date header (RFC 5322 requires one)",
                "add a Date header (postline adds one to raw messages that have none)",
            )
        ]
    raw = header_text(values["date"]).strip()
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        when = None
    if when is None:
        return [
            Finding(
                "date",
                "error",
                f"Date: {_short(raw)!r} is not an RFC 5322 date",
                "write it like 'Thu, 27 Nov 2025 10:00:00 +0000' (email.utils.formatdate)",
            )
        ]
    if when.tzinfo is None:  # "-0000": UTC, local zone unknown (RFC 5322 §3.3)
        when = when.replace(tzinfo=datetime.UTC)
    delta = when.timestamp() - time.time()
    if delta > 3600 or delta < -7 * 86400:
        ahead = "ahead" if delta > 0 else "behind"
        return [
            Finding(
                "date",
                "warning",
                f"Date: {raw} is {abs(delta) / 3600:.0f} h {ahead} of now; SpamAssassin scores "
                "dates far off (DATE_IN_FUTURE / DATE_IN_PAST rules)",
                "set Date to the time the message is sent, or leave it out of raw messages",
            )
        ]
    return [Finding("date", "ok", f"Date: {raw}")]


def _check_message_id(values: dict[str, bytes]) -> list[Finding]:
    if "message-id" not in values:
        return [
            Finding(
                "message_id",
                "error",
                "the message has no Message-ID; Gmail rejects or spam-files such mail",
                "add a Message-ID like <unique@your-domain> (postline adds one to raw "
                "messages that have none)",
            )
        ]
    raw = header_text(values["message-id"]).strip()
    if not _MSG_ID.match(raw):
        return [
            Finding(
                "message_id",
                "error",
                f"Message-ID: {_short(raw)!r} is not of the form <left@right>",
                "write it as <unique-part@your-domain>",
            )
        ]
    return [Finding("message_id", "ok", f"Message-ID: {raw}")]


def _check_mime_version(values: dict[str, bytes], msg: EmailMessage | None) -> list[Finding]:
    uses_mime = "content-type" in values or "content-transfer-encoding" in values
    if msg is not None and msg.is_multipart():
        uses_mime = True
    if not uses_mime:
        return []
    if "mime-version" not in values:
        return [
            Finding(
                "mime_version",
                "error",
                "the message uses MIME (Content-Type / Content-Transfer-Encoding) but has no "
                "MIME-Version header, so receivers may read it as plain text",
                "add 'MIME-Version: 1.0'",
            )
        ]
    version = re.sub(r"\([^)]*\)", "", header_text(values["mime-version"])).replace(" ", "")
    if version != "1.0":
        return [
            Finding(
                "mime_version",
                "warning",
                f"MIME-Version is {version!r}, not 1.0",
                "write 'MIME-Version: 1.0'",
            )
        ]
    return [Finding("mime_version", "ok", "MIME-Version: 1.0")]


def _check_duplicates(names: Counter[str]) -> list[Finding]:
    twice = [name for name in SINGLE if names[name] > 1]
    if not twice:
        return [Finding("duplicate_headers", "ok", "no header that may appear once is repeated")]
    out = []
    for name in twice:
        title = "-".join(part.capitalize() for part in name.split("-"))
        title = title.replace("Mime", "MIME").replace("-Id", "-ID")
        out.append(
            Finding(
                "duplicate_headers",
                "error",
                f"{title} appears {names[name]} times; it may appear once (RFC 5322 §3.6, "
                "RFC 2045), and receivers reject or spam-file such messages",
                f"keep one {title} header",
            )
        )
    return out


def _check_header_syntax(head: Sequence[bytes], bad_lines: Sequence[int]) -> list[Finding]:
    out: list[Finding] = []
    if bad_lines:
        shown = _short(header_text(head[bad_lines[0] - 1]), 60)
        out.append(
            Finding(
                "header_syntax",
                "error",
                f"header line {bad_lines[0]} ({shown!r}) is not a 'Name: value' field nor "
                f"the continuation of one ({len(bad_lines)} such line(s)); receivers may "
                "take the rest of the header as body",
                "separate the header from the body with an empty line, and fold long "
                "values with a leading space",
            )
        )
    eight_bit = [n for n, line in enumerate(head, 1) if any(b >= 0x80 for b in line)]
    if eight_bit:
        out.append(
            Finding(
                "header_syntax",
                "warning",
                f"{len(eight_bit)} header line(s) carry raw 8-bit (non-ASCII) bytes; "
                "receivers that do not speak SMTPUTF8 refuse or mangle them",
                "encode non-ASCII text in headers as RFC 2047 encoded words (any MIME "
                "library does this)",
            )
        )
    if not out:
        out.append(Finding("header_syntax", "ok", "header fields are well formed"))
    return out


def _payload_bytes(part: Message) -> bytes:
    payload = part.get_payload(decode=False)
    if not isinstance(payload, str):
        return b""
    try:
        return payload.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return payload.encode("utf-8", "surrogateescape")


def _check_mime(msg: EmailMessage, values: dict[str, bytes]) -> list[Finding]:
    out: list[Finding] = []
    has_html = has_text = False
    html_bytes = 0
    defects: list[tuple[str, Exception]] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if part.is_multipart():
            if not part.get_payload():
                out.append(
                    Finding(
                        "mime",
                        "error",
                        f"the {ctype} part has no parts",
                        "give a multipart at least one body part, or make it a single part",
                    )
                )
        else:
            cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower() or "7bit"
            raw = _payload_bytes(part)
            if cte not in ENCODINGS:
                out.append(
                    Finding(
                        "mime",
                        "error",
                        f"the {ctype} part has the unknown Content-Transfer-Encoding "
                        f"{cte!r}; receivers cannot decode it",
                        "use 7bit, 8bit, quoted-printable or base64",
                    )
                )
            elif cte not in ("8bit", "binary") and any(b >= 0x80 for b in raw):
                out.append(
                    Finding(
                        "mime",
                        "warning",
                        f"the {ctype} part carries 8-bit bytes but is declared {cte}; "
                        "relays may mangle it",
                        "encode the part as quoted-printable or base64, or declare "
                        "Content-Transfer-Encoding: 8bit",
                    )
                )
            try:
                decoded = part.get_payload(decode=True)
            except Exception:
                decoded = raw
            size = len(decoded) if isinstance(decoded, bytes) else len(raw)
            if part.get_content_disposition() != "attachment":
                if ctype == "text/html":
                    has_html = True
                    html_bytes += size
                elif ctype == "text/plain":
                    has_text = True
        defects.extend((ctype, d) for d in part.defects)
    structural = {type(d).__name__ for _, d in defects} & _STRUCTURE_DEFECTS
    seen: set[tuple[str, str]] = set()
    for ctype, defect in defects:
        kind = type(defect).__name__
        if kind in _QUIET_DEFECTS and (kind != "MultipartInvariantViolationDefect" or structural):
            continue
        text = _defect_text(defect)
        if (ctype, text) in seen:
            continue
        seen.add((ctype, text))
        severe = kind in _STRUCTURE_DEFECTS or kind == "MultipartInvariantViolationDefect"
        if kind == "NoBoundaryInMultipartDefect":
            text = "a multipart Content-Type without a boundary parameter"
        out.append(
            Finding(
                "mime",
                "error" if severe else "warning",
                f"broken MIME in the {ctype} part: {text}",
                "build the message with a MIME library; a multipart needs a boundary "
                "parameter, an opening --boundary line before each part and a closing "
                "--boundary-- line"
                if severe
                else "rebuild the message with a MIME library",
            )
        )
    if not [f for f in out if f.status != "ok"]:
        kind = msg.get_content_type() if "content-type" in values else "text/plain"
        out.append(Finding("mime", "ok", f"MIME structure is sound ({kind})"))
    if has_html and not has_text:
        out.append(
            Finding(
                "text_alternative",
                "warning",
                "the message has HTML but no text/plain alternative; SpamAssassin "
                "(MIME_HTML_ONLY) and some receivers count that against it",
                "send text and html together (multipart/alternative); the API does this "
                "when both 'text' and 'html' are given",
            )
        )
    elif has_html:
        out.append(Finding("text_alternative", "ok", "HTML with a text/plain alternative"))
    if html_bytes > GMAIL_CLIP:
        out.append(
            Finding(
                "html_size",
                "warning",
                f"the HTML is {html_bytes // 1024} KB; Gmail clips HTML past 102 KB and "
                "hides the rest (unsubscribe link included) behind 'View entire message'",
                "trim the HTML (inline CSS, long tracking URLs) under 102 KB",
            )
        )
    return out


def _check_lines(message: bytes, body_start: int) -> list[Finding]:
    long_lines = [
        n
        for n, line in enumerate(message.split(b"\n"), 1)
        if len(line.removesuffix(b"\r")) > MAX_LINE
    ]
    if not long_lines:
        return [Finding("line_length", "ok", f"no line is longer than {MAX_LINE} octets")]
    first = long_lines[0]
    where = "header" if first <= body_start else "body"
    length = len(message.split(b"\n")[first - 1].removesuffix(b"\r"))
    return [
        Finding(
            "line_length",
            "error",
            f"{len(long_lines)} line(s) are longer than {MAX_LINE} octets, the most RFC 5322 "
            f"allows (first: line {first}, in the {where}, {length} octets); receivers "
            "break them or reject the message",
            "encode long bodies as quoted-printable or base64, which keep lines short, and "
            "fold long header values",
        )
    ]
