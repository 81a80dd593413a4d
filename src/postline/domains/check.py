"""Pre-flight check of one message: what receivers would object to, before it is sent.

:func:`preflight` looks at the bytes postline would send and at the DNS of the sender,
the way Gmail's and Yahoo's sender requirements, Microsoft's and SpamAssassin do, and
answers a :class:`CheckReport`: one :class:`Finding` per check — ``ok``, ``warning``
(receivers may hold it against the message) or ``error`` (receivers reject it, file it
as spam, or the mail fails authentication) — each with a ``fix``.

Format (:func:`check_format`, no I/O):

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

Sender (DNS, looked up now with the node's resolvers; the tenant's sender domain's
records when the tenant has the From domain, else what is published at the From
domain): ``dkim`` (will it be signed, by which ``d=``/``s=``, is the key published),
``spf`` (does the envelope sender's domain authorise this node), ``dmarc`` (is there a
policy; ``p=none`` is only monitoring), ``dmarc_alignment`` (will DMARC pass through
aligned DKIM or SPF), ``return_path`` (the bounce domain and its MX), ``sender_domain``
(``[domains] require_verified``), ``unsubscribe`` (RFC 8058 one-click for bulk
streams), and ``spamassassin`` when ``[check] spamd`` names a spamd.

"Bulk" streams are those in ``[domains] list_unsubscribe_streams`` and those whose name
looks like bulk mail (marketing, newsletter, promo...): Gmail and Yahoo ask more of bulk
senders (SPF and DKIM, a DMARC record, alignment, one-click unsubscribe).
"""

from __future__ import annotations

import asyncio
import datetime
import email.policy
import email.utils
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any, Final, Literal, TypeAlias

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from postline.config import Config
from postline.dkim import DnsRecord, RecordStatus, Signer, check, make_resolver
from postline.dkim.records import parse_tags
from postline.domains.finalize import from_domain
from postline.domains.service import DomainService, normalize_domain
from postline.domains.spamd import MAX_SCAN_SIZE, SpamdClient, SpamdError, SpamVerdict
from postline.errors import ValidationError
from postline.store.base import SenderDomain

__all__ = [
    "CheckReport",
    "Finding",
    "Status",
    "check_format",
    "is_bulk_stream",
    "preflight",
    "spamd_client",
]

Status: TypeAlias = Literal["ok", "warning", "error"]

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
_BULK: Final = re.compile(
    r"market|newsletter|news|promo|bulk|campaign|digest|announce|broadcast|blast|offer",
    re.IGNORECASE,
)
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
# Second-level labels under which registrations happen (co.uk, com.au...): a rough
# organizational-domain rule for DMARC relaxed alignment without the public suffix list.
_SLD: Final = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: ``status`` ok, warning or error, what was found, the fix."""

    check: str
    status: Status
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(slots=True)
class CheckReport:
    """Every finding about one message; ``ok`` when none is an error."""

    findings: list[Finding]
    from_domain: str = ""
    stream: str = ""
    size: int = 0
    spam: SpamVerdict | None = None

    @property
    def ok(self) -> bool:
        return not any(f.status == "error" for f in self.findings)

    def count(self, status: Status) -> int:
        return sum(1 for f in self.findings if f.status == status)

    def as_dict(self) -> dict[str, Any]:
        spam: dict[str, Any] | None = None
        if self.spam is not None:
            spam = {
                "score": self.spam.score,
                "threshold": self.spam.threshold,
                "spam": self.spam.spam,
                "rules": [
                    {"name": r.name, "score": r.score, "description": r.description}
                    for r in self.spam.rules
                ],
            }
        return {
            "ok": self.ok,
            "errors": self.count("error"),
            "warnings": self.count("warning"),
            "from_domain": self.from_domain,
            "stream": self.stream,
            "size": self.size,
            "findings": [f.as_dict() for f in self.findings],
            "spam": spam,
        }


def is_bulk_stream(stream: str, config: Config) -> bool:
    """Whether mail of ``stream`` is bulk mail to receivers (see the module docstring)."""
    return stream in config.domains.list_unsubscribe_streams or bool(_BULK.search(stream))


def spamd_client(config: Config) -> SpamdClient | None:
    """The client of ``[check] spamd``; None when none is configured."""
    if not config.check.spamd:
        return None
    return SpamdClient.parse(config.check.spamd, timeout=config.check.spamd_timeout)


# -- format ------------------------------------------------------------------------------


def _split(message: bytes) -> tuple[list[bytes], int]:
    """The header lines (without line ends) and the index where the body starts."""
    lines = message.split(b"\n")
    head: list[bytes] = []
    for i, line in enumerate(lines):
        line = line.removesuffix(b"\r")
        if not line:
            return head, i + 1
        head.append(line)
    return head, len(lines)


def _fields(head: Sequence[bytes]) -> tuple[list[tuple[str, bytes]], list[int]]:
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


def _text(value: bytes) -> str:
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
    head, body_start = _split(message)
    fields, bad_lines = _fields(head)
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
    subject = _text(values.get("subject", b"")).strip() if "subject" in values else None
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
    raw = _text(values["from"])
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
    raw = _text(values["date"]).strip()
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
    raw = _text(values["message-id"]).strip()
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
    version = re.sub(r"\([^)]*\)", "", _text(values["mime-version"])).replace(" ", "")
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
        shown = _short(_text(head[bad_lines[0] - 1]), 60)
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


# -- sender: DNS -------------------------------------------------------------------------


def _org(domain: str) -> str:
    """A rough organizational domain (RFC 7489 §3.2) without the public suffix list."""
    labels = domain.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SLD:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _aligned(a: str, b: str) -> bool:
    """Relaxed DMARC alignment of two domains."""
    return bool(a) and bool(b) and _org(a.lower()) == _org(b.lower())


def _parents(domain: str) -> list[str]:
    """``domain`` and its parents with at least two labels (the DMARC tree walk)."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


@dataclass(slots=True)
class _Dmarc:
    status: str  # ok, missing, wrong, error
    name: str = ""
    policy: str = ""
    found: tuple[str, ...] = ()
    fix: str = ""


async def _one(record: DnsRecord, resolver: dns.asyncresolver.Resolver) -> RecordStatus:
    (result,) = await check([record], resolver)
    return result


async def _dmarc(domain: str, value: str, resolver: dns.asyncresolver.Resolver) -> _Dmarc:
    """The DMARC record that governs ``domain``: its own, else the nearest parent's."""
    names = _parents(domain)
    records = [DnsRecord("TXT", f"_dmarc.{name}", value, "dmarc") for name in names]
    results = await check(records, resolver)
    for name, result in zip(names, results, strict=True):
        if result.status == "missing":
            continue
        if result.status == "error":
            return _Dmarc("error", name, fix=result.fix)
        policy = ""
        if result.found:
            try:
                tags = parse_tags(result.found[0])
            except ValueError:
                tags = {}
            policy = tags.get("p", "")
            if name != domain and tags.get("sp"):
                policy = tags["sp"]
        return _Dmarc(result.status, name, policy.lower(), result.found, result.fix)
    return _Dmarc("missing")


async def _txt(name: str, resolver: dns.asyncresolver.Resolver) -> list[str] | None:
    """TXT strings at ``name`` ([] none, None: the lookup failed)."""
    try:
        answer = await resolver.resolve(
            name, dns.rdatatype.TXT, search=False, raise_on_no_answer=False
        )
    except dns.resolver.NXDOMAIN:
        return []
    except dns.exception.DNSException:
        return None
    if answer.rrset is None:
        return []
    return [b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset]


def _existing_signature(message: bytes) -> tuple[str, str] | None:
    """(d=, s=) of the first DKIM-Signature the message already carries."""
    head, _ = _split(message)
    fields, _ = _fields(head)
    for name, value in fields:
        if name == "dkim-signature":
            try:
                tags = parse_tags(_text(value))
            except ValueError:
                return None
            d, s = tags.get("d", "").lower(), tags.get("s", "").lower()
            return (d, s) if d and s else None
    return None


def _from_address(message: bytes) -> str | None:
    """The address of the message's From field (None when there is none)."""
    head, _ = _split(message)
    fields, _ = _fields(head)
    value = next((_text(v) for name, v in fields if name == "from"), None)
    if value is None:
        return None
    address = email.utils.parseaddr(value)[1]
    return address if "@" in address else None


def _nearest(domains: Sequence[SenderDomain], name: str) -> SenderDomain | None:
    """The tenant's domain ``name`` is, or the nearest parent of ``name`` it has."""
    best: SenderDomain | None = None
    for d in domains:
        if (name == d.domain or name.endswith("." + d.domain)) and (
            best is None or len(d.domain) > len(best.domain)
        ):
            best = d
    return best


def _add_domain_fix(domain: str) -> str:
    return (
        f'add it with POST /v1/domains {{"domain": "{domain}"}}, publish the DNS records '
        f"it returns, then call POST /v1/domains/{domain}/verify; or send from a domain "
        "this account has verified"
    )


@dataclass(slots=True)
class _Sender:
    """What the DNS checks share."""

    config: Config
    resolver: dns.asyncresolver.Resolver
    domains: DomainService | None
    tenant_id: str | None
    stream: str
    bulk: bool
    from_domain: str
    envelope_domain: str
    node_spf: str | None
    dmarc_value: str
    public_url: str
    records: dict[str, RecordStatus] = field(default_factory=dict)
    sender_domain: SenderDomain | None = None
    signer: Signer | None = None


def _spf_severity(s: _Sender, dkim_ok: bool) -> Status:
    return "error" if s.bulk or not dkim_ok else "warning"


async def _sender_checks(
    message: bytes,
    *,
    config: Config,
    resolver: dns.asyncresolver.Resolver,
    domains: DomainService | None,
    tenant_id: str | None,
    stream: str,
    mail_from: str | None,
    public_url: str | None,
) -> tuple[list[Finding], Signer | None]:
    raw_domain = from_domain(message)
    try:
        fd = normalize_domain(raw_domain)
    except ValidationError:
        return [
            Finding(
                "dkim",
                "error",
                "the From header names no usable domain, so nothing about the sender can "
                "be checked",
                "fix the From header",
            )
        ], None
    envelope = config.bounce.domain or (
        (mail_from or "").rpartition("@")[2].lower().rstrip(".") or fd
    )
    node_spf = domains.spf if domains is not None else (config.domains.spf or _default_spf(config))
    dmarc_value = "v=DMARC1; p=none"
    if config.domains.dmarc_rua:
        dmarc_value += f"; rua=mailto:{config.domains.dmarc_rua.removeprefix('mailto:')}"
    s = _Sender(
        config=config,
        resolver=resolver,
        domains=domains,
        tenant_id=tenant_id,
        stream=stream,
        bulk=is_bulk_stream(stream, config),
        from_domain=fd,
        envelope_domain=envelope,
        node_spf=node_spf,
        dmarc_value=dmarc_value,
        public_url=public_url or config.api.public_url or f"http://{config.api.listen}",
    )
    if domains is not None and tenant_id is not None:
        s.signer = domains.signer_for(tenant_id, fd)
        owned = await domains.all(tenant_id)
        s.sender_domain = _nearest(owned, fd)
        if s.signer is not None:
            signing = next((d for d in owned if d.domain == s.signer.key.domain), None)
            s.sender_domain = signing or s.sender_domain
    # Every lookup at once: the sender domain's records (or what the From domain
    # publishes), the envelope domain's SPF, DMARC, and the bounce domain's MX.
    wanted: dict[str, DnsRecord] = {}
    if s.sender_domain is not None and domains is not None:
        for record in domains.records(s.sender_domain):
            key = record.purpose
            if record.purpose == "dkim":
                if s.signer is not None and record.name.startswith(
                    f"{s.signer.key.selector}._domainkey."
                ):
                    key = "dkim"
                elif "dkim" in wanted:
                    continue
            wanted[key] = record
    else:
        if node_spf is not None:
            wanted["spf"] = DnsRecord("TXT", fd, f"v=spf1 {node_spf} ~all", "spf")
        if config.bounce.domain:
            wanted["return_path"] = DnsRecord(
                "MX", config.bounce.domain, f"10 {config.hostname}", "return_path"
            )
    wanted.pop("dmarc", None)
    spf_domain = wanted["spf"].name if "spf" in wanted else fd
    if envelope != spf_domain and node_spf is not None:
        wanted["spf_envelope"] = DnsRecord("TXT", envelope, f"v=spf1 {node_spf} ~all", "spf")
    keys = list(wanted)
    results, dmarc, existing_key = await asyncio.gather(
        check([wanted[k] for k in keys], resolver),
        _dmarc(fd, dmarc_value, resolver),
        _existing_key(message, resolver, tenant_id),
    )
    s.records = dict(zip(keys, results, strict=True))
    out: list[Finding] = []
    dkim_finding, dkim_aligned = _dkim(s, message, existing_key)
    out.append(dkim_finding)
    out += _spf(s, dkim_aligned)
    env_spf = _envelope_spf(s)
    spf_aligned = _aligned(envelope, fd) and env_spf is not None and env_spf.status == "ok"
    out += _dmarc_findings(s, dmarc, dkim_aligned, spf_aligned)
    out.append(_return_path(s, mail_from))
    out.append(_unsubscribe(s, message))
    if domains is not None and tenant_id is not None and config.domains.require_verified:
        if domains.is_verified(tenant_id, fd):
            out.append(Finding("sender_domain", "ok", f"{fd} is a verified sender domain"))
        else:
            out.append(
                Finding(
                    "sender_domain",
                    "error",
                    f"this node refuses mail from {fd}: it is not a verified sender domain of "
                    "this account ([domains] require_verified)",
                    _add_domain_fix(_org(fd)),
                )
            )
    return out, s.signer


def _default_spf(config: Config) -> str | None:
    return DomainService._default_spf(config)


async def _existing_key(
    message: bytes, resolver: dns.asyncresolver.Resolver, tenant_id: str | None
) -> tuple[str, str, bool | None] | None:
    """For a check without a tenant: (d, s, key published?) of a signature the message
    carries already (None: lookup failed)."""
    if tenant_id is not None:
        return None
    found = _existing_signature(message)
    if found is None:
        return None
    d, s = found
    values = await _txt(f"{s}._domainkey.{d}", resolver)
    if values is None:
        return d, s, None
    published = any(re.search(r"(?:^|;)\s*p\s*=\s*[A-Za-z0-9+/]", v) for v in values)
    return d, s, published


def _dkim(
    s: _Sender, message: bytes, existing: tuple[str, str, bool | None] | None
) -> tuple[Finding, bool]:
    fd = s.from_domain
    if s.tenant_id is None or s.domains is None:
        if existing is not None:
            d, sel, published = existing
            aligned = _aligned(d, fd)
            if published is None:
                return Finding(
                    "dkim",
                    "warning",
                    f"the message is signed (d={d} s={sel}) but the lookup of its key failed",
                    "check again later",
                ), aligned
            if not published:
                return Finding(
                    "dkim",
                    "error",
                    f"the message is signed (d={d} s={sel}) but {sel}._domainkey.{d} "
                    "publishes no key: receivers fail the signature",
                    f"publish the public key at TXT {sel}._domainkey.{d}",
                ), False
            note = "aligned with From" if aligned else f"not aligned with From ({fd})"
            return Finding(
                "dkim",
                "ok" if aligned else "warning",
                f"signed with d={d} s={sel}, key published, {note}",
                "" if aligned else f"sign with a key of {_org(fd)}",
            ), aligned
        return Finding(
            "dkim",
            "warning",
            "no tenant given: whether postline signs this message depends on the tenant's "
            f"verified sender domains ({fd} or a parent of it)",
            "run the check with --tenant NAME, or through POST /v1/messages/check",
        ), False
    sd = s.sender_domain
    record = s.records.get("dkim")
    if sd is None:
        return Finding(
            "dkim",
            "error",
            f"{fd} is not a sender domain of this account: its mail is sent without a "
            "DKIM signature, and Gmail, Yahoo and Microsoft reject or spam-file unsigned "
            "bulk mail",
            _add_domain_fix(_org(fd)),
        ), False
    if s.signer is None:
        fix = (record.fix if record is not None and record.fix else "") or (
            f"publish the DKIM record of {sd.domain} (GET /v1/domains/{sd.domain})"
        )
        return Finding(
            "dkim",
            "error",
            f"{sd.domain} is a sender domain of this account but not verified (status "
            f"{sd.status}): its mail is sent without a DKIM signature",
            f"{fix}; then call POST /v1/domains/{sd.domain}/verify",
        ), False
    key = s.signer.key
    signed = f"d={key.domain} s={key.selector} a={key.algorithm}"
    if record is None or record.status == "error":
        why = record.fix if record is not None else "no record to look up"
        return Finding(
            "dkim",
            "warning",
            f"signed with {signed}, aligned with From ({fd}); the key record could not be "
            f"looked up now ({why})",
            "check again later",
        ), True
    if record.status != "ok":
        return Finding(
            "dkim",
            "error",
            f"signed with {signed}, but the key record {record.record.name} is "
            f"{record.status}: receivers fail the signature",
            record.fix,
        ), False
    return Finding(
        "dkim",
        "ok",
        f"signed with {signed}, aligned with From ({fd}); key record "
        f"{record.record.name} published",
    ), True


def _envelope_spf(s: _Sender) -> RecordStatus | None:
    return s.records.get("spf_envelope") or s.records.get("spf")


def _spf(s: _Sender, dkim_ok: bool) -> list[Finding]:
    out: list[Finding] = []
    env = _envelope_spf(s)
    if env is None:
        return [
            Finding(
                "spf",
                "warning",
                "SPF cannot be checked: this node does not know the address it sends from "
                f"(host name {s.config.hostname!r}, no source address configured)",
                "set [[delivery.sources]] or [delivery] source_address to the node's public "
                "address, or [domains] spf to the mechanism senders must include",
            )
        ]
    via = f"the envelope sender (return path) is in {s.envelope_domain}, whose SPF receivers check"
    if env.status == "ok":
        out.append(
            Finding(
                "spf",
                "ok",
                f"SPF of {env.record.name} authorises this node ({env.found[0]}); {via}",
            )
        )
    elif env.status == "error":
        out.append(Finding("spf", "warning", f"SPF of {env.record.name}: {env.fix}", ""))
    else:
        published = f" (published: {'; '.join(env.found)})" if env.found else ""
        out.append(
            Finding(
                "spf",
                _spf_severity(s, dkim_ok),
                f"SPF of {env.record.name} is {env.status}{published}: receivers cannot "
                f"tell that this node may send for it; {via}",
                env.fix,
            )
        )
    if "spf_envelope" in s.records:
        own = s.records["spf"]
        if own.status == "ok":
            out.append(Finding("spf", "ok", f"SPF of {own.record.name} authorises this node too"))
        else:
            out.append(
                Finding(
                    "spf",
                    "warning",
                    f"SPF of the From domain {own.record.name} is {own.status}; this message's "
                    f"SPF is checked on {s.envelope_domain}, but mail sent with a return path "
                    f"in {own.record.name} would fail",
                    own.fix or "check again later",
                )
            )
    return out


def _dmarc_findings(
    s: _Sender, dmarc: _Dmarc, dkim_aligned: bool, spf_aligned: bool
) -> list[Finding]:
    fd = s.from_domain
    target = s.sender_domain.domain if s.sender_domain is not None else _org(fd)
    publish = f"publish TXT _dmarc.{target} with value {s.dmarc_value}"
    out: list[Finding] = []
    bulk_note = "Gmail and Yahoo require a DMARC record of bulk senders"
    if dmarc.status == "error":
        out.append(Finding("dmarc", "warning", f"DMARC of {fd}: {dmarc.fix}", ""))
    elif dmarc.status == "missing":
        out.append(
            Finding(
                "dmarc",
                "error" if s.bulk else "warning",
                f"no DMARC record at _dmarc.{fd} or a parent domain; {bulk_note}",
                publish,
            )
        )
    elif dmarc.status == "wrong":
        out.append(
            Finding(
                "dmarc",
                "error" if s.bulk else "warning",
                f"the DMARC record of {dmarc.name} is not usable, so receivers apply none: "
                f"{dmarc.fix}",
                dmarc.fix or publish,
            )
        )
    elif dmarc.policy == "none":
        inherited = f" (of {dmarc.name})" if dmarc.name != fd else ""
        out.append(
            Finding(
                "dmarc",
                "warning" if s.bulk else "ok",
                f"DMARC p=none{inherited}: it meets the Gmail/Yahoo requirement, but asks "
                "receivers to do nothing with mail that fails DMARC (monitoring only)",
                f"once the aggregate reports show all your mail passing, move _dmarc."
                f"{dmarc.name} to p=quarantine, then p=reject"
                if s.bulk
                else "",
            )
        )
    else:
        inherited = f" (of {dmarc.name})" if dmarc.name != fd else ""
        out.append(Finding("dmarc", "ok", f"DMARC p={dmarc.policy}{inherited}"))
    strict = dmarc.status == "ok" and dmarc.policy in ("quarantine", "reject")
    if dkim_aligned:
        out.append(Finding("dmarc_alignment", "ok", f"DMARC passes through DKIM aligned with {fd}"))
    elif spf_aligned:
        out.append(
            Finding(
                "dmarc_alignment",
                "ok",
                f"DMARC passes through SPF: the return path {s.envelope_domain} is aligned "
                f"with {fd}",
            )
        )
    elif s.tenant_id is None:
        out.append(
            Finding(
                "dmarc_alignment",
                "warning",
                f"DMARC passes only with a DKIM signature by {fd} (or a parent), which "
                "depends on the tenant",
                "run the check with --tenant NAME",
            )
        )
    else:
        verb = "reject" if dmarc.policy == "reject" else "spam-file"
        consequence = (
            f"with p={dmarc.policy} receivers {verb} it"
            if strict
            else "Gmail and Yahoo require alignment of bulk senders"
        )
        out.append(
            Finding(
                "dmarc_alignment",
                "error" if strict or s.bulk else "warning",
                f"DMARC fails for {fd}: no DKIM signature aligned with it, and the return path "
                f"{s.envelope_domain} is not aligned with it; {consequence}",
                _add_domain_fix(_org(fd))
                if s.signer is None
                else "sign with a key of the From domain",
            )
        )
    return out


def _return_path(s: _Sender, mail_from: str | None) -> Finding:
    bounce = s.config.bounce.domain
    if not bounce:
        sender = mail_from or f"an address at {s.from_domain}"
        return Finding(
            "return_path",
            "warning",
            f"no [bounce] domain: the envelope sender is {sender} itself, so bounces and "
            "complaints go to that mailbox and postline never sees them (no automatic "
            "suppression of dead addresses)",
            "set [bounce] domain on the node and publish an MX for it naming this node",
        )
    record = s.records.get("return_path")
    if record is None:
        return Finding("return_path", "warning", f"the return path is b-…@{bounce}", "")
    if record.status == "ok":
        return Finding(
            "return_path",
            "ok",
            f"bounces come back to b-…@{bounce} (MX {', '.join(record.found)})",
        )
    if record.status == "error":
        return Finding("return_path", "warning", f"MX of {bounce}: {record.fix}", "")
    return Finding(
        "return_path",
        "error",
        f"the return path domain {bounce} has {record.status} MX: bounces cannot come back, "
        "and receivers that verify the sender refuse the message",
        record.fix,
    )


def _one_click_own(message: bytes) -> tuple[bool, bool]:
    """(has List-Unsubscribe, has its own RFC 8058 one-click: https URI and the Post field)."""
    head, _ = _split(message)
    fields, _ = _fields(head)
    found = {name: _text(value) for name, value in fields}
    lu = found.get("list-unsubscribe")
    if lu is None:
        return False, False
    post = found.get("list-unsubscribe-post", "").replace(" ", "").lower()
    return True, "<https://" in lu.lower() and post == "list-unsubscribe=one-click"


def _unsubscribe(s: _Sender, message: bytes) -> Finding:
    config = s.config
    has_own, own_one_click = _one_click_own(message)
    if s.stream in config.domains.list_unsubscribe_streams:
        if has_own:
            return Finding(
                "unsubscribe",
                "warning",
                "the message has a List-Unsubscribe header of its own, and postline adds "
                f"another to mail of stream {s.stream!r}: receivers see two",
                "leave List-Unsubscribe out of the message; postline adds a per-recipient "
                "one-click link",
            )
        public = s.public_url
        mailto = f" and <mailto:u-…@{config.bounce.domain}>" if config.bounce.domain else ""
        if not public.startswith("https://"):
            return Finding(
                "unsubscribe",
                "error",
                f"stream {s.stream!r} gets one-click List-Unsubscribe at send time, but the "
                f"link would be {public.rstrip('/')}/u/…: RFC 8058 one-click needs an https "
                "URI that receivers reach, which Gmail and Yahoo require of bulk senders",
                "set [api] public_url to the https URL under which receivers reach this node's API",
            )
        signed = ", covered by the DKIM signature" if s.signer is not None else ""
        return Finding(
            "unsubscribe",
            "ok",
            f"one-click unsubscribe: List-Unsubscribe <{public.rstrip('/')}/u/…>{mailto} "
            "and List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058) are added "
            f"for each recipient at send time{signed}",
        )
    if s.bulk:
        if own_one_click:
            return Finding(
                "unsubscribe",
                "ok",
                "the message carries its own one-click List-Unsubscribe (RFC 8058)",
            )
        return Finding(
            "unsubscribe",
            "warning",
            f"stream {s.stream!r} looks like bulk mail but is not in [domains] "
            "list_unsubscribe_streams, so no List-Unsubscribe is added; Gmail and Yahoo "
            "require one-click unsubscribe of bulk senders",
            f"add {s.stream!r} to [domains] list_unsubscribe_streams, or send it on "
            f"a stream that is there ({', '.join(config.domains.list_unsubscribe_streams)})"
            if config.domains.list_unsubscribe_streams
            else f"add {s.stream!r} to [domains] list_unsubscribe_streams",
        )
    return Finding(
        "unsubscribe",
        "ok",
        f"stream {s.stream!r} is not bulk mail: no List-Unsubscribe is needed",
    )


# -- SpamAssassin --------------------------------------------------------------------------


async def _spam(message: bytes, spamd: SpamdClient) -> tuple[Finding, SpamVerdict | None]:
    if len(message) > MAX_SCAN_SIZE:
        return Finding(
            "spamassassin",
            "ok",
            f"not scanned: larger than {MAX_SCAN_SIZE // 1024} KB (spamc does not scan such "
            "messages either)",
        ), None
    try:
        verdict = await spamd.report(message)
    except SpamdError as exc:
        return Finding(
            "spamassassin",
            "warning",
            f"no spam score: {exc}",
            "check that spamd runs and listens where [check] spamd says",
        ), None
    hits = sorted(
        (r for r in verdict.rules if r.score is None or r.score > 0),
        key=lambda r: -(r.score or 0.0),
    )
    listed = ", ".join(
        f"{r.name} ({r.score:g})" if r.score is not None else r.name for r in hits[:8]
    )
    summary = f"SpamAssassin score {verdict.score:g} (threshold {verdict.threshold:g})"
    if listed:
        summary += f": {listed}"
    if verdict.spam or verdict.score >= verdict.threshold:
        return Finding(
            "spamassassin",
            "error",
            summary,
            "change what the rules listed flag (their descriptions are in 'spam.rules')",
        ), verdict
    if verdict.score >= verdict.threshold / 2:
        return Finding(
            "spamassassin",
            "warning",
            summary,
            "the score is over half the threshold; look at the rules listed",
        ), verdict
    return Finding("spamassassin", "ok", summary), verdict


# -- all of it ------------------------------------------------------------------------------


async def preflight(
    message: bytes,
    *,
    tenant_id: str | None,
    stream: str,
    domains: DomainService | None,
    config: Config,
    spamd: SpamdClient | None,
    mail_from: str | None = None,
    public_url: str | None = None,
    resolver: dns.asyncresolver.Resolver | None = None,
) -> CheckReport:
    """Check ``message`` (the bytes postline would send) before it is sent.

    ``tenant_id`` None: no account — the DKIM check cannot tell whether postline signs
    and the DNS checks report what the From domain publishes. ``mail_from``: the
    envelope sender when there is no bounce domain (default: the From address).
    ``public_url``: where one-click links point (default ``[api] public_url``, else
    ``http://`` and ``[api] listen``). ``resolver``: default the node's
    ``[dns] nameservers``.
    """
    if resolver is None:
        resolver = make_resolver(config.dns.nameservers, timeout=config.dns.timeout)
    if mail_from is None:
        mail_from = _from_address(message)
    # Parsing a large message takes a while: not on the event loop.
    findings = await asyncio.to_thread(
        check_format, message, max_size=config.submission.max_message_size
    )
    sender, signer = await _sender_checks(
        message,
        config=config,
        resolver=resolver,
        domains=domains,
        tenant_id=tenant_id,
        stream=stream,
        mail_from=mail_from,
        public_url=public_url,
    )
    findings += sender
    verdict = None
    if spamd is not None:
        scanned = message
        if signer is not None:
            try:
                scanned = signer.sign(message) + message
            except Exception:
                scanned = message
        finding, verdict = await _spam(scanned, spamd)
        findings.append(finding)
    return CheckReport(
        findings,
        from_domain=from_domain(message),
        stream=stream,
        size=len(message),
        spam=verdict,
    )
