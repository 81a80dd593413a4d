"""Bounces without a machine-readable report: find recipients and reasons in the prose.

Exim, qmail, Postfix without DSN, Sendmail, Exchange / Office 365, Gmail, Yahoo, Domino,
Courier, GroupWise and countless filters each write their own text, but nearly all share
a shape: some prose, each failed address at the start of a line (or right after words
like "to", "recipient", "RCPT TO"), the reason next to it, then the returned message.
This module works on that shape rather than on a list of products.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from postline.bounce._mime import ADDRESS, clean_address

__all__ = [
    "BOUNCE_SUBJECT",
    "PlainRecipient",
    "bare_recipients",
    "cut_returned",
    "delay_warning",
    "list_notice_recipient",
    "looks_like_bounce",
    "plain_recipients",
    "remote_host",
]

# Lines that start the returned (original) message inside a plain-text bounce: once the
# decoration (dashes, stars...) is stripped, the whole line is one of these phrases.
_DECORATION = " \t-=_*#+~<>|:."
_RETURNED_MARKER = re.compile(
    r"(?:this is )?a copy of (?:the |your )?(?:original |returned )?message\b.*"
    r"|below this line is a copy of the message\b.*"
    r"|(?:the )?(?:original|returned|unsent|undelivered|undeliverable|rejected|bounced|attached)"
    r" (?:message|mail|e-?mail)(?: (?:headers?|text|body))?(?: (?:follows?|below|is attached))?"
    r"|(?:message|mail) (?:text )?follows"
    r"|(?:original )?message headers?(?: follows?)?"
    r"|headers? of (?:the )?original message(?: follows?)?"
    r"|(?:start|beginning) of (?:the )?(?:returned|original) (?:message|mail)"
    r"|returned mail follows|forwarded message|your message reads|text of the returned message"
    r"|(?:the )?original message (?:was|is) (?:attached|included|below)",
    re.IGNORECASE,
)
_HEADER_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,40}:[ \t]")
_HEADER_START = re.compile(
    r"^(?:received|return-path|message-id|mime-version|dkim-signature|x-mailer|"
    r"content-type|delivered-to|authentication-results):",
    re.IGNORECASE,
)


def cut_returned(text: str) -> str:
    """``text`` up to where the returned message starts (a marker line or a header block)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        stripped = line.strip(_DECORATION)
        if i > 0 and stripped and _RETURNED_MARKER.fullmatch(stripped):
            return "\n".join(lines[:i])
        if _HEADER_START.match(line):
            run = 0
            for follow in lines[i : i + 8]:
                if _HEADER_LINE.match(follow) or (follow[:1] in (" ", "\t") and follow.strip()):
                    run += 1
            if run >= 4 and i > 0:
                return "\n".join(lines[:i])
    return text


BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|not delivered|could not be delivered|couldn't be delivered|"
    r"delivery (?:status )?notification|delivery (?:has )?fail|failure notice|returned mail|"
    r"mail delivery|non-?delivery|nondeliverable|delivery problem|delivery report|"
    r"delivery error|mail system error|\bbounced?\b|failed delivery|returned to sender|"
    r"user unknown|unknown user|no such user|"
    r"could not send|delayed mail|delivery delayed|unable to deliver|mail error|"
    r"permanent error|delivery failure|mail failure|failed mail|warning: message|"
    r"delivery notification|error sending|rejected|message status|"
    r"nicht zustellbar|unzustellbar|non remis|non recapitabile|no se puede entregar|"
    r"non distribuibile|impossible de remettre|\u914d\u4fe1|\u4e0d\u9054|\u672a\u9054",
    re.IGNORECASE,
)
_DAEMON = re.compile(
    r"mailer[-_ ]?daemon|post[-_]?master|mail[-_ ]?daemon|"
    r"mail delivery (?:system|subsystem|service)|mail ?administrator|mail system|"
    r"delivery subsystem|\bmailadmin\b|\bmail[-_]?robot\b|"
    r"double-bounce|\bdaemon\b|bounce|\bmdaemon\b",
    re.IGNORECASE,
)
_BOUNCE_PHRASES = re.compile(
    r"could not be delivered|couldn't be delivered|was not delivered|wasn't delivered|"
    r"undeliverable|undelivered|delivery (?:has )?failed|delivery failure|permanent error|"
    r"permanent fatal error|not be delivered|unable to deliver|failed permanently|"
    r"did not reach|delivery to the following|following address(?:es|\(es\))? failed|"
    r"returned to you|returned mail|wasn't able to deliver|could not deliver|"
    r"couldn't deliver|not yet been delivered|delivery status notification|"
    r"following recipients?|delivery problem|non-?delivery|was rejected|"
    r"(?:user|recipient|mailbox|address) (?:unknown|not found)|mailbox (?:is )?full|no such user|"
    r"transcript of session|remote (?:host|server) (?:said|returned|replied)|"
    r"error (?:occurred|was encountered) while|message (?:that )?you sent|"
    r"mail delivery|delivery attempt|retry time|has been delayed|"
    r"will (?:continue|keep) (?:to )?try",
    re.IGNORECASE,
)


def looks_like_bounce(sender: str, subject: str, body: str) -> bool:
    """Whether a message without a report part still reads as a bounce."""
    if BOUNCE_SUBJECT.search(subject):
        return True
    daemon = bool(_DAEMON.search(sender))
    phrase = bool(_BOUNCE_PHRASES.search(body[:6000]))
    return daemon or phrase


_DELAY = re.compile(
    r"has not yet been delivered|not yet been delivered|not been delivered yet|"
    r"will (?:continue to |keep )?(?:retry|try again|keep trying)|"
    r"delivery attempts? will continue|attempts will continue|"
    r"will continue to (?:try|attempt|be made)|"
    r"(?:still|keep) (?:trying|being retried|retrying)|will be retried|will keep trying|"
    r"this is (?:only )?a warning|warning message only|warning: (?:message|could not)|"
    r"delivery (?:has been |is )?delayed|delayed mail|delay notification|message delayed|"
    r"\(delay\)|no action is required on your part|you will be notified|is a transient",
    re.IGNORECASE,
)
_NO_MORE_TRIES = re.compile(
    r"not (?:going to )?(?:try|retry)|no (?:further|more) (?:attempts|retries)|"
    r"will not be (?:retried|delivered)|(?:given|giving) up|"
    r"permanent(?:ly)? (?:error|failure|fatal|failed)",
    re.IGNORECASE,
)


def delay_warning(subject: str, body: str) -> bool:
    """Whether the bounce only warns of a delay (delivery is still being tried)."""
    head = body[:4000]
    if not (_DELAY.search(subject) or _DELAY.search(head)):
        return False
    return not _NO_MORE_TRIES.search(head)


@dataclass(frozen=True, slots=True)
class PlainRecipient:
    """A recipient found in bounce prose, with the text that explains its failure."""

    address: str
    diagnostic: str
    context: str
    remote_mta: str | None = None


# Words after which an address on the same line names a recipient.
_RECIPIENT_CUE = re.compile(
    r"(?:recipients?|rcpt(?: to)?|to|address(?:es)?|addressee|user|mail ?box|for|"
    r"deliver(?:ed|y|ing)? to|failed|undeliverable|unknown|following|account|"
    r"destination|sent to|reach|original-recipient|final-recipient|x-failed-recipients|"
    r"generated (?:from|by)|expanded from|intended recipient|"
    r"destinataire|empf[aä]nger|destinatario|an|à|a|para|user unknown|no such user)"
    r"[^@\n]{0,6}[:<(\s\"']*$",
    re.IGNORECASE,
)
# Lines whose addresses are about the sender, a server or a message, never a recipient.
_NOT_RECIPIENT_LINE = re.compile(
    r"^\s*(?:>+\s*)?(?:from|sender|reply-to|return-path|envelope-from|message-id|in-reply-to|"
    r"references|x-[a-z0-9-]+|reporting-mta|received|date|subject|mail from|"
    r">>> mail from|smtp\.mailfrom|original-envelope-id|dkim-signature|list-[a-z]+)\s*[:=]",
    re.IGNORECASE,
)
_MSGID_CUE = re.compile(r"message[- ]?id|msgid|queue[- ]?id|\bid[:= ]+<?$", re.IGNORECASE)
_SENDERISH_CUE = re.compile(
    r"(?<!generated )(?<!expanded )(?<!forwarded )"
    r"(?:from|sender|sent by|mail from|envelope-from|return-path|reply-to)[^@\n]{0,4}[:<(\s\"']*$",
    re.IGNORECASE,
)
_SYSTEM_LOCAL = re.compile(
    r"^(?:post[-_]?master|mailer[-_]?daemon|mail[-_]?daemon|double-bounce|mailerdaemon|"
    r"maildelivery|noreply-dmarc-support)$",
    re.IGNORECASE,
)
_HOST = re.compile(
    r"(?:\bhost|remote host|remote server|talking to|connect(?:ing|ed)? to|\bmx)[ \t]+"
    r"\[?([A-Za-z0-9][A-Za-z0-9.-]*\.[A-Za-z0-9-]{2,}|\d{1,3}(?:\.\d{1,3}){3})\]?",
    re.IGNORECASE,
)


def remote_host(text: str) -> str | None:
    """The remote server a bounce text names (``host mx.example.com [192.0.2.1]``)."""
    m = _HOST.search(text)
    if m is None:
        return None
    host = m.group(1).rstrip(".").lower()
    return host if "." in host else None


_CODE_PREFIX = re.compile(
    r"^\s*(?:[<>]{3}\s*)?[245]\d\d(?:[ -][245]\.\d{1,3}\.\d{1,3})?[ -:]*\s*[<\"'(]*$"
)


def _at_line_start(line: str, start: int) -> bool:
    """Whether the address starting at ``start`` leads its line (after bullets, quotes
    or a reply code such as Sendmail's ``554 <addr>... reason``)."""
    prefix = line[:start]
    if not prefix.strip(" \t<\"'([*-•>:"):
        return True
    if re.fullmatch(r"\s*(?:\d+[.)]|[-*•])?\s*[<\"'(]*", prefix):
        return True
    return bool(_CODE_PREFIX.match(prefix))


def plain_recipients(
    body: str,
    *,
    exclude: set[str],
    hints: set[str],
    strong_hints: list[str] | None = None,
) -> list[PlainRecipient]:
    """The failed recipients named in ``body`` (already cut at the returned message).

    ``exclude`` holds lower-cased addresses that cannot be recipients (the bounce's own
    sender and receiver, the original sender); ``hints`` the original message's
    recipients; ``strong_hints`` addresses a header such as ``X-Failed-Recipients``
    names as failed.
    """
    lines = body.split("\n")
    strong: dict[str, int] = {}
    weak: dict[str, int] = {}
    mentions: dict[str, list[int]] = {}
    for n, line in enumerate(lines):
        if _NOT_RECIPIENT_LINE.match(line):
            continue
        for m in ADDRESS.finditer(line):
            addr = clean_address(m.group(1))
            if addr is None:
                continue
            key = addr.lower()
            if key in exclude:
                continue
            before = line[: m.start()]
            if _MSGID_CUE.search(before[-30:]) or _SENDERISH_CUE.search(before[-30:]):
                continue
            if before.endswith(("/", "=", "%40")) or ("?" in before[-40:] and "http" in before):
                continue
            mentions.setdefault(key, []).append(n)
            leading = _at_line_start(line, m.start()) or bool(_RECIPIENT_CUE.search(before[-40:]))
            if _SYSTEM_LOCAL.match(key.rpartition("@")[0]) and not leading:
                continue
            if leading:
                strong.setdefault(addr, n)
            else:
                weak.setdefault(addr, n)
    for addr in strong_hints or []:
        if not any(k.lower() == addr.lower() for k in strong):
            strong[addr] = weak.pop(addr, len(lines))
    chosen: dict[str, int]
    if strong:
        chosen = dict(strong)
        for addr, n in weak.items():
            if addr.lower() in hints and addr not in chosen:
                chosen[addr] = n
    else:
        in_hints = {a: n for a, n in weak.items() if a.lower() in hints}
        if in_hints:
            chosen = in_hints
        elif weak:
            earliest = min(weak, key=lambda a: weak[a])
            chosen = {earliest: weak[earliest]}
        else:
            chosen = {}
    # One entry per address (case-insensitive), in order of appearance.
    seen: set[str] = set()
    ordered = []
    for addr, n in sorted(chosen.items(), key=lambda kv: kv[1]):
        if addr.lower() in seen:
            continue
        seen.add(addr.lower())
        ordered.append((addr, n))
    keys = {a.lower() for a, _ in ordered}
    # Every line that mentions a chosen recipient, in order, with whose it is.
    marks = sorted((ln, k) for k in keys for ln in mentions.get(k, []))
    mark_lines = [ln for ln, _ in marks]
    first = ordered[0][1] if ordered else 0
    context = "\n".join(lines[:first]).strip()
    out = []
    for addr, n in ordered:
        # The block runs to the next line that mentions another chosen recipient.
        low = addr.lower()
        end = len(lines)
        for i in range(bisect.bisect_right(mark_lines, n), len(marks)):
            if marks[i][1] != low:
                end = marks[i][0]
                break
        block = "\n".join(lines[n:end]).strip() if n < len(lines) else ""
        out.append(
            PlainRecipient(
                address=addr, diagnostic=block, context=context, remote_mta=remote_host(block)
            )
        )
    return out


# "...could not be delivered to the following recipients:" followed by indented names
# without a domain: AOL and other closed systems name a local mailbox by its screen name.
_FOLLOWING = re.compile(
    r"(?:following|these) (?:recipients?|address(?:es)?|users?)\b[^\n]*(?:\n[^\n:]+)?:[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_BARE_NAME = re.compile(r"[ \t]+([A-Za-z][A-Za-z0-9._-]{1,63})[ \t]*")


def bare_recipients(body: str) -> list[tuple[str, str]]:
    """Bare local names (no ``@``) listed, indented, under a "following recipients:" line,
    each with the text of its block; the caller adds the reporting domain."""
    m = _FOLLOWING.search(body)
    if m is None:
        return []
    lines = body[m.end() :].lstrip("\n").split("\n")
    out: list[tuple[str, str]] = []
    for line in lines:
        name = _BARE_NAME.fullmatch(line)
        if name is None:
            break
        out.append((name.group(1), body[: m.end()] + "\n" + line))
    return out


# A mailing-list manager's notice about a posting it refused or dropped (fml, Mailman,
# Majordomo, ezmlm): the list address is the failed recipient.
_LIST_NOTICE = re.compile(
    r"not (?:a )?member of (?:this|the) (?:mailing )?list|"
    r"(?:posting|post|message|mail) (?:to [^\n]{0,80})?(?:was |has been |is )?"
    r"(?:rejected|refused|held|denied)|"
    r"non-?member (?:posting|submission)|members only|duplicated? message-id|"
    r"loop (?:alert|detected)|requires? approval",
    re.IGNORECASE,
)
_ANGLED = re.compile(r"<([^<>@\s]+@[^<>\s]+)>")


def list_notice_recipient(body: str, exclude: set[str]) -> str | None:
    """The list address a list manager's refusal names in its first lines, if any."""
    head = "\n".join(body.strip().split("\n")[:6])
    if not _LIST_NOTICE.search(head):
        return None
    for m in _ANGLED.finditer(head):
        addr = clean_address(m.group(1))
        if addr is not None and addr.lower() not in exclude:
            return addr
    return None
