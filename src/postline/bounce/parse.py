"""One entry point for inbound reports: :func:`analyze` (raw bytes → :class:`Report`).

The kind is decided in this order:

1. ``arf`` — an RFC 5965 feedback report (or its fields in a text part), a Microsoft
   JMRP complaint, or an Amazon SES complaint notification;
2. ``dsn`` — an RFC 3464 ``message/delivery-status`` part (or its fields printed in the
   text), an SES bounce notification, or any message that reads as a bounce (sender,
   subject or wording), whose recipients and reasons are then read from the prose;
3. ``autoreply`` — an RFC 3834 automatic response or a vacation / out-of-office text;
4. ``other`` — anything else (no recipients).

Every recipient result is classified with the same rules as synchronous SMTP replies.
The identifiers of the original message (``Message-ID``, ``X-Postline-ID``) are read
from the returned message or headers, wherever the report put them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.message import Message
from typing import Literal

from postline.bounce import _mime
from postline.bounce.arf import FeedbackReport, looks_like_feedback, parse_feedback
from postline.bounce.autoreply import autoreply_score
from postline.bounce.classify import (
    Category,
    Classification,
    RuleSet,
    classify,
    extract_command,
    shipped_rules,
)
from postline.bounce.dsn import (
    DeliveryStatus,
    normalise_action,
    parse_fields,
    recipient_statuses,
)
from postline.bounce.plain import (
    bare_recipients,
    cut_returned,
    delay_warning,
    list_notice_recipient,
    looks_like_bounce,
    plain_recipients,
    remote_host,
)
from postline.bounce.ses import parse_ses

__all__ = ["Kind", "RecipientResult", "Report", "analyze"]

Kind = Literal["dsn", "arf", "autoreply", "other"]
_MAX_DEPTH = 3


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What a report says about one recipient.

    ``recipient`` is the address as the sender wrote it when the report tells
    (``Original-Recipient``), else the final one; ``alias`` is the other form when they
    differ. ``action`` is the RFC 3464 action (``failed``, ``delayed``, ``delivered``,
    ``relayed``, ``expanded``), ``complained`` for a complaint, ``auto-replied`` for an
    auto-reply. Only ``failed`` results are bounces, and only they can be ``hard``.
    """

    recipient: str | None
    category: Category
    hard: bool
    action: str | None = None
    status: str | None = None
    diagnostic: str = ""
    remote_mta: str | None = None
    rule: str = ""
    alias: str | None = None

    @property
    def failed(self) -> bool:
        return self.action == "failed"


@dataclass(frozen=True, slots=True)
class Report:
    """The analysis of one inbound report message.

    ``message_id`` and ``postline_id`` identify the original message (from the
    returned message or headers); ``original_to`` lists its recipients.
    """

    kind: Kind
    results: tuple[RecipientResult, ...] = ()
    message_id: str | None = None
    postline_id: str | None = None
    feedback: FeedbackReport | None = None
    reporting_mta: str | None = None
    subject: str = ""
    original_to: tuple[str, ...] = field(default=())


@dataclass
class _Parts:
    """The pieces of a report message, gathered in one walk."""

    msg: Message
    subject: str
    sender: str
    texts: list[str]
    status_texts: list[str]
    feedback_texts: list[str]
    original: _mime.OriginalHeaders
    inner: list[Message]


_PLAIN_TYPES = ("text/plain", "text/html", "text/enriched", "text/x-aol")
_HEADERS_TYPES = ("text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header")
_RETURNED_TYPES = ("message/rfc822", "message/global", "message/partial")
_POSTLINE_ID = re.compile(r"^[ \t>]*X-Postline-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)
_LIST_MANAGER_HEADERS = ("X-MLServer", "X-ML-Name", "X-Mailman-Version", "Mailing-List")
_MESSAGE_ID = re.compile(r"^[ \t>]*Message-ID:[ \t]*(<[^<>\s]+>)", re.IGNORECASE | re.MULTILINE)


def _merge_original(*items: _mime.OriginalHeaders) -> _mime.OriginalHeaders:
    return _mime.OriginalHeaders(
        message_id=next((o.message_id for o in items if o.message_id), None),
        postline_id=next((o.postline_id for o in items if o.postline_id), None),
        to=next((o.to for o in items if o.to), ()),
        sender=next((o.sender for o in items if o.sender), ()),
        subject=next((o.subject for o in items if o.subject), ""),
        complained=next((o.complained for o in items if o.complained), ()),
    )


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    m = pattern.search(text)
    return m.group(1) if m else None


def _gather(raw: bytes) -> _Parts:
    msg = _mime.parse(raw)
    plain: list[str] = []
    html: list[str] = []
    status_texts: list[str] = []
    feedback_texts: list[str] = []
    originals: list[_mime.OriginalHeaders] = []
    returned_texts: list[str] = []
    inner: list[Message] = []
    for leaf in _mime.leaves(msg):
        ctype = leaf.content_type
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            if not leaf.returned:
                status_texts.append(_mime.report_part_text(leaf.part))
            continue
        if ctype == "message/feedback-report":
            if not leaf.returned:
                feedback_texts.append(_mime.report_part_text(leaf.part))
            continue
        if ctype in _RETURNED_TYPES:
            payload = _mime.payload(leaf.part)
            if not leaf.returned and isinstance(payload, list) and payload:
                first = payload[0]
                if isinstance(first, Message):
                    originals.append(_mime.original_from_message(first))
                    inner.append(first)
            continue
        if ctype in _HEADERS_TYPES:
            text = _mime.part_text(leaf.part)
            if not leaf.returned:
                originals.append(_mime.original_from_headers_text(text))
                returned_texts.append(text)
            continue
        if leaf.returned:
            continue
        disposition = str(leaf.part.get("Content-Disposition", "")).lower()
        if ctype in _PLAIN_TYPES or (ctype.startswith("text/") and "attachment" not in disposition):
            text = _mime.part_text(leaf.part)
            (html if ctype == "text/html" else plain).append(text)
    texts = [t for t in plain if t.strip()] or [t for t in html if t.strip()]
    if not texts and not msg.is_multipart():
        # A single-part message whose body is not text still has a body.
        texts = [_mime.part_text(msg)]
    raw_text = _mime.decode_bytes(raw, None).replace("\r\n", "\n")
    body_start = raw_text.find("\n\n")
    after_headers = raw_text[body_start:] if body_start >= 0 else ""
    scanned = _mime.OriginalHeaders(
        message_id=_first(_MESSAGE_ID, "\n".join([*returned_texts, after_headers])),
        postline_id=_first(_POSTLINE_ID, after_headers),
    )
    return _Parts(
        msg=msg,
        subject=_mime.header(msg, "Subject"),
        sender=" ".join((_mime.header(msg, "From"), _mime.header(msg, "Sender"))),
        texts=texts,
        status_texts=status_texts,
        feedback_texts=feedback_texts,
        original=_merge_original(*originals, _original_in_text("\n".join(texts)), scanned),
        inner=inner,
    )


def _original_in_text(text: str) -> _mime.OriginalHeaders:
    """Headers of a message returned inline, after the bounce prose."""
    body = cut_returned(text)
    rest = text[len(body) :].lstrip("\n")
    if not rest:
        return _mime.OriginalHeaders()
    lines = rest.split("\n")
    start = next((i for i, ln in enumerate(lines[:6]) if re.match(r"^[A-Za-z-]+:\s", ln)), None)
    if start is None:
        return _mime.OriginalHeaders()
    block = []
    for ln in lines[start:]:
        if not ln.strip():
            break
        block.append(ln)
    return _mime.original_from_headers_text("\n".join(block) + "\n\n")


# --- classification of one recipient ----------------------------------------------------


def _decide(
    texts: Iterable[str],
    *,
    status: str | None,
    action: str | None,
    remote: str | None,
    rules: RuleSet,
    reporting: str | None = None,
) -> Classification:
    """Classify with the first text a specific rule recognises; failing that, the best
    weak match (earliest rule) among all texts; failing that, the codes alone.

    The SMTP command the refusal answered is the first one any of the texts names.
    """
    texts = [t for t in texts if t and t.strip()]
    command = next((c for c in map(extract_command, texts) if c), None)
    best: Classification | None = None
    best_rank = len(rules) + 1
    for text in texts:
        c = classify(
            text,
            status=status,
            action=action,
            remote=remote,
            command=command,
            rules=rules,
            reporting=reporting,
        )
        rule = rules.by_name.get(c.rule)
        if rule is not None and not rule.weak:
            return c
        rank = rules.rank(c.rule)
        if best is None or rank < best_rank:
            best, best_rank = c, rank
    if best is None:
        best = classify(
            "", status=status, action=action, remote=remote, rules=rules, reporting=reporting
        )
    return best


def _domain(address: str | None) -> str | None:
    """The domain of ``address`` (the host a provider rule may recognise when the report
    names no remote server: a provider's domain is usually its mail exchanger's)."""
    if not address or "@" not in address:
        return None
    return address.rpartition("@")[2].strip("[]<> ").lower() or None


_EMAILISH = re.compile(r"[^\s<>()\[\]\"',;:]+@[^\s<>()\[\]\"',;:]+")


class _Mentions:
    """Which of a report's recipient addresses each line of its text names, found once
    (a report may list thousands of recipients)."""

    def __init__(self, text: str, addresses: set[str]) -> None:
        self.lines = text.split("\n")
        self.by_line: list[set[str]] = []
        self.first: dict[str, int] = {}
        for i, line in enumerate(self.lines):
            found = {m.rstrip(".").lower() for m in _EMAILISH.findall(line)} & addresses
            self.by_line.append(found)
            for a in found:
                self.first.setdefault(a, i)

    def block(self, address: str) -> str:
        """The lines about ``address``: from its first mention to another's."""
        low = address.lower()
        start = self.first.get(low)
        if start is None:  # named in a form the tokens missed (inside a longer word...)
            start = next((i for i, ln in enumerate(self.lines) if low in ln.lower()), None)
            if start is None:
                return ""
        out = [self.lines[start]]
        for j in range(start + 1, min(start + 25, len(self.lines))):
            if self.by_line[j] - {low}:
                break
            out.append(self.lines[j])
        return "\n".join(out).strip()


def _result(
    recipient: str | None,
    c: Classification,
    *,
    action: str | None,
    remote: str | None,
    alias: str | None = None,
) -> RecipientResult:
    return RecipientResult(
        recipient=recipient,
        category=c.category,
        hard=c.hard and action == "failed",
        action=action,
        status=c.status,
        diagnostic=c.diagnostic,
        remote_mta=remote,
        rule=c.rule,
        alias=alias,
    )


def _not_a_failure(status: str | None, diagnostic: str) -> Classification:
    return Classification(Category.UNKNOWN, False, "not-a-failure", status, diagnostic)


def _dsn_results(
    records: list[DeliveryStatus], human: str, rules: RuleSet
) -> list[RecipientResult]:
    addresses = {a.lower() for r in records for a in (r.recipient, r.other_recipient) if a}
    mentions = _Mentions(human, addresses)
    out = []
    for rec in records:
        blocks = [mentions.block(a) for a in (rec.recipient, rec.other_recipient) if a]
        diag = rec.diagnostic
        if rec.diagnostic_type not in ("", "smtp", "x-postfix") and diag:
            diag = f"{rec.diagnostic_type}; {diag}"
        remote = rec.remote_mta or next((h for h in map(remote_host, blocks) if h), None)
        if rec.action in ("delivered", "relayed", "expanded"):
            c = _not_a_failure(rec.status, rec.diagnostic)
        else:
            whole = cut_returned(human) if len(records) == 1 else ""
            c = _decide(
                (diag, *blocks, whole),
                status=rec.status,
                action=rec.action,
                remote=remote or _domain(rec.recipient),
                rules=rules,
                reporting=rec.reporting_mta,
            )
        out.append(
            _result(rec.recipient, c, action=rec.action, remote=remote, alias=rec.other_recipient)
        )
    return out


def _plain_results(
    parts: _Parts,
    body: str,
    rules: RuleSet,
    nested: Callable[[Message], Report | None] | None = None,
) -> list[RecipientResult]:
    exclude = {a.lower() for a in _mime.header_addresses(parts.sender)}
    exclude |= {a.lower() for a in _mime.header_addresses(_mime.header(parts.msg, "To"))}
    exclude |= {a.lower() for a in parts.original.sender}
    hints = {a.lower() for a in parts.original.to}
    exclude -= hints
    failed_header = _mime.header_addresses(_mime.header(parts.msg, "X-Failed-Recipients"))
    found = plain_recipients(body, exclude=exclude, hints=hints, strong_hints=failed_header)
    if not found:
        # A bounce sent back to the failed address itself (a forwarder, or mail to self):
        # its address may still lead a recipient paragraph of its own ("<addr>:").
        own = {a for a in exclude if re.search(rf"^<{re.escape(a)}>:\s*$", body, re.I | re.M)}
        if own:
            found = plain_recipients(body, exclude=exclude - own, hints=hints | own)
    action = "delayed" if delay_warning(parts.subject, body) else "failed"
    # The host that wrote the bounce: the domain of its sender (MAILER-DAEMON@host).
    reporting = next((_domain(a) for a in _mime.header_addresses(parts.sender)), None)
    out = []
    for rcpt in found:
        c = _decide(
            (rcpt.diagnostic, rcpt.context + "\n" + rcpt.diagnostic, body, parts.subject),
            status=None,
            action=action,
            remote=rcpt.remote_mta or _domain(rcpt.address),
            rules=rules,
            reporting=reporting,
        )
        out.append(_result(rcpt.address, c, action=action, remote=rcpt.remote_mta))
    if not out and reporting:
        # Some MTAs (AOL) name a local recipient by its bare screen name.
        for name, block in bare_recipients(body):
            address = f"{name}@{reporting}"
            if address.lower() in exclude:
                continue
            c = _decide(
                (block, body, parts.subject), status=None, action=action, remote=None, rules=rules
            )
            out.append(_result(address, c, action=action, remote=remote_host(block)))
    if not out and nested is not None:
        # The bounce names nobody but returns another report that does.
        for inner in parts.inner:
            inner_report = nested(inner)
            if inner_report is not None:
                return list(inner_report.results)
    if not out and len(parts.original.to) == 1:
        # The bounce names nobody, but the returned message had exactly one recipient.
        c = _decide((body, parts.subject), status=None, action=action, remote=None, rules=rules)
        out.append(_result(parts.original.to[0], c, action=action, remote=remote_host(body)))
    return out


def _complaint(
    recipient: str | None, feedback_type: str, rule: str = "feedback-report"
) -> RecipientResult:
    return RecipientResult(
        recipient, Category.COMPLAINT, False, "complained", None, feedback_type, None, rule
    )


def _arf_report(parts: _Parts, feedback: FeedbackReport) -> Report:
    recipients = list(feedback.recipients) or list(parts.original.complained)
    if not recipients:
        recipients = _mime.header_addresses(_mime.header(parts.msg, "X-HmXmrOriginalRecipient"))
    if not recipients and len(parts.original.to) == 1:
        recipients = list(parts.original.to)
    results = [_complaint(r, feedback.feedback_type) for r in recipients]
    return Report(
        "arf",
        tuple(results) or (_complaint(None, feedback.feedback_type),),
        parts.original.message_id,
        parts.original.postline_id,
        feedback,
        None,
        parts.subject,
        parts.original.to,
    )


def _autoreply(parts: _Parts) -> Report:
    sender = _mime.header_addresses(_mime.header(parts.msg, "From"))
    reply_to = _mime.header_addresses(_mime.header(parts.msg, "Reply-To"))
    found = sender or reply_to
    who = found[0] if found else None
    result = RecipientResult(
        who, Category.AUTO_REPLY, False, "auto-replied", None, parts.subject, None, "auto-reply"
    )
    return Report(
        "autoreply",
        (result,),
        parts.original.message_id,
        parts.original.postline_id,
        None,
        None,
        parts.subject,
        parts.original.to,
    )


def analyze(raw: bytes, *, rules: RuleSet | None = None) -> Report:
    """Analyse one inbound message: a DSN, a complaint, an auto-reply or something else."""
    return _analyze(raw, rules if rules is not None else shipped_rules(), 0)


def _analyze(raw: bytes, rules: RuleSet, depth: int) -> Report:
    parts = _gather(raw)
    human = "\n".join(parts.texts)
    original = parts.original

    def report(
        kind: Kind, results: Iterable[RecipientResult], reporting: str | None = None
    ) -> Report:
        return Report(
            kind,
            tuple(results),
            original.message_id,
            original.postline_id,
            None,
            reporting,
            parts.subject,
            original.to,
        )

    # 1. complaints
    if parts.feedback_texts:
        return _arf_report(parts, parse_feedback("\n\n".join(parts.feedback_texts)))
    if looks_like_feedback(human):
        return _arf_report(parts, parse_feedback(human))
    if original.complained and not parts.status_texts:
        return _arf_report(parts, FeedbackReport("abuse"))

    # 2. SES notifications (JSON in the body)
    ses = parse_ses(human) if "notificationType" in human or "eventType" in human else None
    if ses is not None:
        if ses.message_id:
            original = _mime.OriginalHeaders(ses.message_id, original.postline_id, original.to)
        if ses.kind == "complaint":
            fb = FeedbackReport(ses.feedback_type or "abuse", ses.user_agent)
            return Report(
                "arf",
                tuple(_complaint(r.address, fb.feedback_type) for r in ses.recipients),
                original.message_id,
                original.postline_id,
                fb,
                None,
                parts.subject,
                original.to,
            )
        results = []
        for r in ses.recipients:
            action = normalise_action(r.action) or ("failed" if ses.permanent else "delayed")
            if ses.kind == "delivery":
                action, c = "delivered", _not_a_failure(r.status, r.diagnostic)
            else:
                c = _decide(
                    (r.diagnostic, ses.sub_type),
                    status=r.status,
                    action=action,
                    remote=None,
                    rules=rules,
                )
            results.append(_result(r.address, c, action=action, remote=None))
        return report("dsn", results, ses.reporting_mta)

    # 3. RFC 3464 delivery status
    records = recipient_statuses([b for t in parts.status_texts for b in parse_fields(t)])
    if not records and re.search(r"^\s*final-recipient:", human, re.IGNORECASE | re.MULTILINE):
        records = recipient_statuses(parse_fields(human))
    records = [r for r in records if r.recipient]
    if records:
        reporting = next((r.reporting_mta for r in records if r.reporting_mta), None)
        return report("dsn", _dsn_results(records, human, rules), reporting)

    body = cut_returned(human)
    score = autoreply_score(lambda name: _mime.header(parts.msg, name), parts.subject, body)
    bounce_like = bool(parts.status_texts) or looks_like_bounce(parts.sender, parts.subject, body)
    daemon_or_subject = looks_like_bounce(parts.sender, parts.subject, "")

    # 4. a list manager's notice that it refused a posting (the list is the recipient)
    if any(_mime.header(parts.msg, h) for h in _LIST_MANAGER_HEADERS):
        listed = list_notice_recipient(
            body, {a.lower() for a in _mime.header_addresses(parts.sender)}
        )
        if listed is not None:
            c = _decide(
                (body, parts.subject), status=None, action="failed", remote=None, rules=rules
            )
            return report("dsn", [_result(listed, c, action="failed", remote=None)])

    # 5. auto-replies announced by their headers or subject
    if score == 2 and not daemon_or_subject:
        return _autoreply(parts)

    # 6. bounces without a report part
    if bounce_like:
        results = _plain_results(
            parts,
            body,
            rules,
            (lambda inner: _nested(inner, rules, depth)) if depth < _MAX_DEPTH else None,
        )
        # An auto-reply without RFC 3834 headers whose prose happens to read like a
        # bounce: no failure was recognised in it.
        unrecognised = all(r.category is Category.UNKNOWN for r in results)
        if score >= 1 and not daemon_or_subject and not parts.status_texts and unrecognised:
            return _autoreply(parts)
        if not any(r.recipient for r in results) and depth < _MAX_DEPTH:
            # A bounce that only forwards another report (a bounce of a bounce).
            for inner in parts.inner:
                nested = _nested(inner, rules, depth)
                if nested is not None:
                    return nested
        if not results:
            # Never silent: a bounce whose recipient could not be read still says what
            # failed (``unknown`` with the status its text gives when no rule matches).
            results = [_unnamed_failure(parts, body, rules)]
        return report("dsn", results)

    # 7. auto-replies known only by their wording
    if score >= 1:
        return _autoreply(parts)
    return report("other", ())


def _unnamed_failure(parts: _Parts, body: str, rules: RuleSet) -> RecipientResult:
    """The failure a bounce reports when it names no recipient we can read."""
    action = "delayed" if delay_warning(parts.subject, body) else "failed"
    reporting = next((_domain(a) for a in _mime.header_addresses(parts.sender)), None)
    texts = [t for t in (*parts.status_texts, body, parts.subject) if t.strip()]
    c = _decide(texts, status=None, action=action, remote=None, rules=rules, reporting=reporting)
    return _result(None, c, action=action, remote=remote_host(body))


def _nested(inner: Message, rules: RuleSet, depth: int) -> Report | None:
    try:
        raw = inner.as_bytes()
    except (ValueError, LookupError, UnicodeError, TypeError):
        return None
    nested = _analyze(raw, rules, depth + 1)
    if nested.kind in ("dsn", "arf") and any(r.recipient for r in nested.results):
        return nested
    return None
