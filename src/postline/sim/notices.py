"""The words of simulated feedback: late bounces, complaints and auto-replies.

Each builder returns the whole message (headers and body, CRLF line ends) as the
software it imitates writes it, about one recipient of one accepted message
(:class:`Original`):

============= ================================================================================
kind / format what it looks like
============= ================================================================================
dsn postfix   RFC 3464 ``multipart/report``: "Undelivered Mail Returned to Sender", the
              "This is the mail system at host ..." notification, a
              ``message/delivery-status`` part and the returned message (``message/rfc822``,
              or ``text/rfc822-headers`` when the message was too large to keep)
dsn exim      plain text "Mail delivery failed: returning message to sender", the failed
              address with ``host ... [ip]`` and ``SMTP error from remote mail server after
              RCPT TO:<...>:``, then "------ This is a copy of the message, including all
              the headers. ------" and the message
dsn qmail     plain text "failure notice": "Hi. This is the qmail-send program at ...",
              ``<addr>:`` and "Sorry, no mailbox here by that name. (#5.1.1)", then "---
              Below this line is a copy of the message." and the message
dsn exchange  Office 365 NDR: ``multipart/report`` with a text and an HTML part ("Delivery
              has failed to these recipients or groups:", "Original message headers:"), a
              delivery-status part (``smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound;
              Recipient not found by SMTP address lookup``) and ``text/rfc822-headers``
dsn gmail     "Delivery Status Notification (Failure)": "** Address not found **", "The
              response from the remote server was: 550 5.1.1 The email account that you
              tried to reach does not exist.", a delivery-status part and the message
arf yahoo     RFC 5965 report like Yahoo's complaint feedback loop: ``User-Agent:
              Yahoo!-Mail-Feedback/2.0``, the whole message as ``message/rfc822``
arf microsoft Microsoft JMRP in ARF: ``User-Agent: Hotmail FBL``, the message with an
              ``X-HmXmrOriginalRecipient`` header as ``message/rfc822``
arf headers   the RFC 5965 shape with only the headers (``text/rfc822-headers``)
autoreply     ``vacation``: Sieve vacation (``Auto-Submitted: auto-replied (vacation)``,
              "Auto: <subject>"); ``exchange``: Outlook "Automatic reply: <subject>" with
              ``X-MS-Exchange-Inbox-Rules-Loop``; ``out-of-office``: only the subject
              "Out of Office: <subject>"; ``abwesenheit``: "Abwesenheitsnotiz: <subject>"
              with ``X-Autoreply: yes`` and a German text
============= ================================================================================

Every report carries the original Message-ID, From, To, Subject and ``X-Postline-ID``
(the returned message, its headers or, for auto-replies, ``In-Reply-To`` and
``References``). Host names, addresses and ids are filled in from the simulated host
that accepted the message; random-looking ids are hashes, so the same input gives the
same bytes.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import Literal

__all__ = [
    "Notice",
    "Original",
    "Reason",
    "auto_reply",
    "bounce_status",
    "complaint",
    "complaint_sender",
    "header_block",
    "late_bounce",
]

Reason = Literal["user-unknown", "mailbox-full"]

_LINE_END = re.compile(rb"\r\n|\r|\n")
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_MONATE = (
    "Januar",
    "Februar",
    "M=C3=A4rz",  # quoted-printable UTF-8
    "April",
    "Mai",
    "Juni",
    "Juli",
    "August",
    "September",
    "Oktober",
    "November",
    "Dezember",
)
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _crlf(data: bytes) -> bytes:
    return _LINE_END.sub(b"\r\n", data)


def header_block(content: bytes) -> bytes:
    """The header block of ``content`` with CRLF line ends, ending in one CRLF."""
    m = _HEAD_END.search(content)
    head = content if m is None else content[: m.start()]
    head = _crlf(head).rstrip(b"\r\n")
    return head + b"\r\n" if head else b""


@dataclass(frozen=True, slots=True)
class Original:
    """One recipient of one accepted message, as feedback about it needs it.

    ``content`` is the message as received, or only its header block when it was too
    large to keep (``complete`` False). ``host`` / ``host_address`` name the simulated
    mail exchanger that accepted it, ``client_ip`` the sender's address, ``arrival`` the
    time it was accepted (seconds since the epoch).
    """

    mail_from: str
    recipient: str
    message_id: str
    content: bytes
    complete: bool
    client_ip: str
    host: str
    host_address: str
    arrival: float
    tls: bool = False

    @property
    def domain(self) -> str:
        return self.recipient.rpartition("@")[2].lower()

    def head(self) -> bytes:
        return header_block(self.content)

    def header(self, name: str) -> str:
        """One header of the original, unfolded (``""`` when absent)."""
        parsed = BytesHeaderParser(policy=compat32).parsebytes(self.head() + b"\r\n")
        value = parsed.get(name)
        return " ".join(str(value).split()) if value is not None else ""

    def postline_id(self) -> str:
        return self.header("X-Postline-ID")


@dataclass(frozen=True, slots=True)
class Notice:
    """A feedback message ready to send: its envelope and its bytes."""

    kind: str
    format: str
    reason: str
    status: str
    mail_from: str  # "" is the null reverse-path
    rcpt_to: str
    data: bytes


# --- helpers --------------------------------------------------------------------------


def _digest(*parts: str) -> bytes:
    return hashlib.blake2b("|".join(parts).encode(), digest_size=16).digest()


def _b62(data: bytes, width: int) -> str:
    n = int.from_bytes(data, "big")
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_B62[r])
    return "".join(out)


def _date(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%a, %d %b %Y %H:%M:%S +0000")


def _postfix_date(ts: float) -> str:
    dt = datetime.fromtimestamp(ts, UTC)
    return f"{dt:%a}, {dt.day:2d} {dt:%b %Y %H:%M:%S} +0000 (UTC)"


def _lines(*lines: str) -> bytes:
    # Header values of the original may carry raw 8-bit bytes (kept as surrogates).
    return "".join(f"{line}\r\n" for line in lines).encode("utf-8", "surrogateescape")


def _returned(o: Original, *, receiver: str, queue_id: str, when: float) -> bytes:
    """The original as the accepting MTA stored it: Return-Path and Received added."""
    proto = "ESMTPS" if o.tls else "ESMTP"
    trace = _lines(
        f"Return-Path: <{o.mail_from}>",
        f"Received: from [{o.client_ip}] ([{o.client_ip}])",
        f"\tby {o.host} ({receiver}) with {proto} id {queue_id}",
        f"\tfor <{o.recipient}>; {_date(when)}",
    )
    return trace + _crlf(o.content if o.complete else o.head())


def _ends_with_line(data: bytes) -> bytes:
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _subject(o: Original) -> str:
    return o.header("Subject")


def _display_name(address: str) -> str:
    local = address.rpartition("@")[0]
    words = [w for w in re.split(r"[._+-]+", local) if w and not w.isdigit()]
    return " ".join(w.capitalize() for w in words) or local


def _reported_domain(o: Original) -> str:
    found = getaddresses([o.header("From")])
    for _, addr in found:
        if "@" in addr:
            return addr.rpartition("@")[2].lower()
    return o.mail_from.rpartition("@")[2].lower()


def _fold(prefix: str, text: str, width: int = 78, indent: str = "    ") -> list[str]:
    """``prefix + text`` folded at spaces into lines of at most ``width`` characters."""
    out: list[str] = []
    line = prefix
    for word in text.split(" "):
        if line and len(line) + 1 + len(word) > width and line.strip():
            out.append(line)
            line = indent + word
        else:
            line = f"{line} {word}" if line and not line.endswith(" ") else line + word
    out.append(line)
    return out


# --- late bounces ---------------------------------------------------------------------


def bounce_status(fmt: str, reason: Reason, soft: bool) -> str:
    """The enhanced status a late bounce of format ``fmt`` reports for ``reason``."""
    if reason == "user-unknown":
        return "5.1.10" if fmt == "exchange" else "5.1.1"
    return "4.2.2" if soft else "5.2.2"


def _remote_reply(fmt: str, o: Original, status: str) -> str:
    """The reply the domain's internal mailbox server gave (one line)."""
    r = o.recipient
    if fmt == "exchange":
        if status == "5.1.10":
            return (
                "550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
                "Recipient not found by SMTP address lookup"
            )
        code = "452" if status.startswith("4") else "554"
        return (
            f"{code} {status} mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
            "MapiExceptionShutoffQuotaExceeded; Failed to process message due to a "
            "permanent exception with message Cannot open mailbox."
        )
    if fmt == "gmail":
        if status == "5.1.1":
            return (
                "550 5.1.1 The email account that you tried to reach does not exist. "
                "Please try double-checking the recipient's email address for typos or "
                "unnecessary spaces."
            )
        code = "452" if status.startswith("4") else "552"
        return f"{code} {status} The email account that you tried to reach is over quota."
    if status == "5.1.1":
        return f"550 5.1.1 <{r}>: Recipient address rejected: User unknown in virtual mailbox table"
    code = "452" if status.startswith("4") else "552"
    return f"{code} {status} <{r}> Quota exceeded (mailbox for user is full)"


def _mailstore(o: Original) -> str:
    return f"mailstore1.{o.domain}"


def late_bounce(fmt: str, o: Original, reason: Reason, *, soft: bool = False, now: float) -> Notice:
    """A late bounce of ``o`` in format ``fmt``, sent with ``MAIL FROM:<>`` to the
    original envelope sender."""
    status = bounce_status(fmt, reason, soft)
    build = {
        "postfix": _postfix,
        "exim": _exim,
        "qmail": _qmail,
        "exchange": _exchange,
        "gmail": _gmail,
    }[fmt]
    data = build(o, status, now)
    return Notice("dsn", fmt, reason, status, "", o.mail_from, data)


def _postfix(o: Original, status: str, now: float) -> bytes:
    d = _digest("postfix", o.message_id, o.recipient, str(o.arrival))
    qid = d[:5].hex().upper()[:10]
    boundary = f"{qid}.{int(now)}/{o.host}"
    reply = _remote_reply("postfix", o, status)
    command = "RCPT TO" if status == "5.1.1" else "end of DATA"
    said = f"<{o.recipient}>: host {_mailstore(o)}[{o.host_address}] said: {reply} "
    human = _fold("", said + f"(in reply to {command} command)")
    diag = _fold("Diagnostic-Code: smtp; ", reply)
    full = o.complete and len(o.content) <= 50_000
    head = [
        f"Received: by {o.host} (Postfix) id {qid}; {_postfix_date(now)}",
        f"Date: {_postfix_date(now)}",
        f"From: MAILER-DAEMON@{o.host} (Mail Delivery System)",
        "Subject: Undelivered Mail Returned to Sender",
        f"To: {o.mail_from}",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "Content-Transfer-Encoding: 8bit",
        f"Message-Id: <{datetime.fromtimestamp(now, UTC):%Y%m%d%H%M%S}.{qid}@{o.host}>",
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"This is the mail system at host {o.host}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. It's attached below.",
        "",
        "For further assistance, please send mail to postmaster.",
        "",
        "If you do so, please include this problem report. You can",
        "delete your own text from the attached returned message.",
        "",
        "                   The mail system",
        "",
        *human,
        "",
        f"--{boundary}",
        "Content-Description: Delivery report",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {o.host}",
        f"X-Postfix-Queue-ID: {qid}",
        f"X-Postfix-Sender: rfc822; {o.mail_from}",
        f"Arrival-Date: {_postfix_date(o.arrival)}",
        "",
        f"Final-Recipient: rfc822; {o.recipient}",
        f"Original-Recipient: rfc822;{o.recipient}",
        "Action: failed",
        f"Status: {status}",
        f"Remote-MTA: dns; {_mailstore(o)}",
        *diag,
        f"Last-Attempt-Date: {_postfix_date(now)}",
        "",
        f"--{boundary}",
    ]
    if full:
        head += [
            "Content-Description: Undelivered Message",
            "Content-Type: message/rfc822",
            "Content-Transfer-Encoding: 8bit",
            "",
        ]
        inner = _returned(o, receiver="Postfix", queue_id=qid, when=o.arrival)
    else:
        head += [
            "Content-Description: Undelivered Message Headers",
            "Content-Type: text/rfc822-headers",
            "Content-Transfer-Encoding: 8bit",
            "",
        ]
        inner = header_block(_returned(o, receiver="Postfix", queue_id=qid, when=o.arrival))
    return _lines(*head) + _ends_with_line(inner) + _lines("", f"--{boundary}--")


def _exim_id(o: Original, salt: str) -> str:
    d = _digest("exim", salt, o.message_id, o.recipient, str(o.arrival))
    return f"1{_b62(d[:6], 5)}-{_b62(d[6:12], 6)}-{_b62(d[12:], 2)}"


def _exim(o: Original, status: str, now: float) -> bytes:
    own_id = _exim_id(o, "bounce")
    in_id = _exim_id(o, "in")
    reply = _remote_reply("exim", o, status)
    if status == "5.1.1":
        error = [
            f"    SMTP error from remote mail server after RCPT TO:<{o.recipient}>:",
            f"    {reply}",
        ]
    elif status.startswith("5"):
        error = ["    SMTP error from remote mail server after end of data:", f"    {reply}"]
    else:
        error = [
            "    SMTP error from remote mail server after end of data:",
            f"    {reply}",
            "    retry timeout exceeded",
        ]
    lines = [
        f"Received: from Debian-exim by {o.host} with local (Exim 4.96)",
        f"\tid {own_id}",
        f"\tfor {o.mail_from}; {_date(now)}",
        f"X-Failed-Recipients: {o.recipient}",
        "Auto-Submitted: auto-replied",
        f"From: Mail Delivery System <Mailer-Daemon@{o.host}>",
        f"To: {o.mail_from}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "Subject: Mail delivery failed: returning message to sender",
        f"Message-Id: <E{own_id}@{o.host}>",
        f"Date: {_date(now)}",
        "",
        "This message was created automatically by mail delivery software.",
        "",
        "A message that you sent could not be delivered to one or more of its",
        "recipients. This is a permanent error. The following address(es) failed:",
        "",
        f"  {o.recipient}",
        f"    host {_mailstore(o)} [{o.host_address}]",
        *error,
        "",
    ]
    if o.complete:
        lines += ["------ This is a copy of the message, including all the headers. ------", ""]
        copy = _returned(o, receiver="Exim 4.96", queue_id=in_id, when=o.arrival)
    else:
        lines += [
            "------ This is a copy of the message's headers. ------",
            "",
        ]
        copy = header_block(_returned(o, receiver="Exim 4.96", queue_id=in_id, when=o.arrival))
    return _lines(*lines) + _ends_with_line(copy)


def _qmail(o: Original, status: str, now: float) -> bytes:
    d = _digest("qmail", o.message_id, o.recipient, str(o.arrival))
    pid = int.from_bytes(d[:2], "big")
    if status == "5.1.1":
        why = ["Sorry, no mailbox here by that name. (#5.1.1)"]
        error = "This is a permanent error; I've given up. Sorry it didn't work out."
    elif status.startswith("5"):
        why = ["The users mailfolder is over the allowed quota (size). (#5.2.2)"]
        error = "This is a permanent error; I've given up. Sorry it didn't work out."
    else:
        why = [
            f"{o.host_address} does not like recipient.",
            f"Remote host said: {_remote_reply('qmail', o, status)}",
            "I'm not going to try again; this message has been in the queue too long.",
        ]
        error = "This is a permanent error; I've given up. Sorry it didn't work out."
    lines = [
        f"Received: (qmail {pid} invoked for bounce); {_date(now)}",
        f"Date: {_date(now)}",
        f"From: MAILER-DAEMON@{o.host}",
        f"To: {o.mail_from}",
        "Subject: failure notice",
        f"Message-ID: <{int(now)}.{pid}.qmail@{o.host}>",
        "",
        f"Hi. This is the qmail-send program at {o.host}.",
        "I'm afraid I wasn't able to deliver your message to the following addresses.",
        error,
        "",
        f"<{o.recipient}>:",
        *why,
        "",
        "--- Below this line is a copy of the message.",
        "",
    ]
    copy = _returned(o, receiver="qmail 1.03", queue_id=str(pid), when=o.arrival)
    if not o.complete:
        copy = header_block(copy)
    return _lines(*lines) + _ends_with_line(copy)


_EXCHANGE_HUMAN = {
    "user-unknown": (
        "The email address you entered couldn't be found. Please check the recipient's "
        "email address and try to resend the message. If the problem continues, please "
        "contact your helpdesk."
    ),
    "mailbox-full": (
        "The recipient's mailbox is full and can't accept messages now. Please try "
        "resending your message later, or contact the recipient directly."
    ),
}


def _exchange(o: Original, status: str, now: float) -> bytes:
    d = _digest("exchange", o.message_id, o.recipient, str(o.arrival))
    server = f"{_b62(d[:6], 6).upper()}.{o.domain}".upper()
    outer = f"_000_{d[:8].hex()}_"
    alt = f"_001_{d[8:].hex()}_"
    reason: Reason = "user-unknown" if status.startswith("5.1.") else "mailbox-full"
    human = _EXCHANGE_HUMAN[reason]
    reply = _remote_reply("exchange", o, status)
    subject = _subject(o)
    original_headers = header_block(o.content).decode("utf-8", "replace").split("\r\n")
    text = [
        "Delivery has failed to these recipients or groups:",
        "",
        f"{o.recipient} ({o.recipient})",
        human,
        "",
        "",
        "",
        "",
        "",
        "",
        "Diagnostic information for administrators:",
        "",
        f"Generating server: {server}",
        "",
        o.recipient,
        f"Remote Server returned '{reply}'",
        "",
        "Original message headers:",
        "",
        *[ln for ln in original_headers if ln],
        "",
    ]
    esc = html.escape
    page = [
        "<html>",
        '<head><meta http-equiv="Content-Type" content="text/html; charset=us-ascii"></head>',
        "<body>",
        '<p><b><font color="#000066" size="3" face="Arial">'
        "Delivery has failed to these recipients or groups:</font></b></p>",
        f'<p><font color="#000000" size="2" face="Tahoma"><a href="mailto:{esc(o.recipient)}">'
        f"{esc(o.recipient)}</a><br>",
        f"{esc(human)}<br></font></p>",
        '<p><font color="#808080" size="2" face="Tahoma"><br>',
        "<b>Diagnostic information for administrators:</b></font></p>",
        f'<p><font color="#808080" size="2" face="Tahoma">Generating server: {server}</font></p>',
        f'<p><font color="#808080" size="2" face="Tahoma">{esc(o.recipient)}<br>',
        f"Remote Server returned '{esc(reply)}'<br></font></p>",
        "</body>",
        "</html>",
    ]
    subject_line = f"Undeliverable: {subject}" if subject else "Undeliverable:"
    lines = [
        f"From: Microsoft Outlook <postmaster@{o.domain}>",
        f"To: <{o.mail_from}>",
        f"Date: {_date(now)}",
        f"Subject: {subject_line}",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{outer}"',
        "Content-Language: en-US",
        f"Message-ID: <{d[:12].hex()}@{server.lower()}>",
    ]
    if o.message_id:
        lines += [f"In-Reply-To: {o.message_id}", f"References: {o.message_id}"]
    lines += [
        "X-MS-Exchange-Message-Is-Ndr:",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "",
        f"--{outer}",
        f'Content-Type: multipart/alternative; differences=Content-Type; boundary="{alt}"',
        "",
        f"--{alt}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 8bit",
        "",
        *text,
        f"--{alt}",
        'Content-Type: text/html; charset="us-ascii"',
        "",
        *page,
        "",
        f"--{alt}--",
        "",
        f"--{outer}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns;{server}",
        f"Received-From-MTA: dns;{o.host}",
        f"Arrival-Date: {_date(o.arrival)}",
        "",
        f"Original-Recipient: rfc822;{o.recipient}",
        f"Final-Recipient: rfc822;{o.recipient}",
        "Action: failed",
        f"Status: {status}",
        f"Diagnostic-Code: smtp;{reply}",
        "",
        f"--{outer}",
        "Content-Type: text/rfc822-headers",
        "Content-Transfer-Encoding: 8bit",
        "",
    ]
    return _lines(*lines) + _ends_with_line(header_block(o.content)) + _lines("", f"--{outer}--")


def _gmail(o: Original, status: str, now: float) -> bytes:
    d = _digest("gmail", o.message_id, o.recipient, str(o.arrival))
    boundary = f"000000000000{d[:6].hex()}"
    alt = f"000000000000{d[6:12].hex()}"
    reply = _remote_reply("gmail", o, status)
    if status == "5.1.1":
        title = "** Address not found **"
        body = (
            f"Your message wasn't delivered to {o.recipient} because the address couldn't "
            "be found, or is unable to receive mail."
        )
        learn = "Learn more here: https://support.google.com/mail/?p=NoSuchUser"
    else:
        title = "** Message not delivered **"
        body = (
            f"Your message couldn't be delivered to {o.recipient} because the recipient's "
            "inbox is full and can't receive new messages right now."
        )
        learn = "Learn more here: https://support.google.com/mail/?p=OverQuotaTemp"
    esc = html.escape
    dsn_diag = _fold("Diagnostic-Code: smtp; ", reply)
    full = o.complete and len(o.content) <= 50_000
    lines = [
        f"Received: by {o.host} with SMTP id {d[:8].hex()}; {_date(now)}",
        f"Date: {_date(now)}",
        f"From: Mail Delivery Subsystem <mailer-daemon@{o.host}>",
        f"To: {o.mail_from}",
        "Auto-Submitted: auto-replied",
        "Subject: Delivery Status Notification (Failure)",
    ]
    if o.message_id:
        lines += [f"References: {o.message_id}", f"In-Reply-To: {o.message_id}"]
    lines += [
        f"X-Failed-Recipients: {o.recipient}",
        f"Message-ID: <{d[:10].hex()}.{int(now)}@{o.host}>",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; boundary="{boundary}"; report-type=delivery-status',
        "",
        f"--{boundary}",
        f'Content-Type: multipart/alternative; boundary="{alt}"',
        "",
        f"--{alt}",
        'Content-Type: text/plain; charset="UTF-8"',
        "",
        "",
        title,
        "",
        body,
        "",
        learn,
        "",
        "The response from the remote server was:",
        reply,
        "",
        f"--{alt}",
        'Content-Type: text/html; charset="UTF-8"',
        "",
        "<html><head></head><body>",
        f'<h2 style="font-weight:400">{esc(title.strip("* "))}</h2>',
        f"<p>{esc(body)}</p>",
        "<p>The response was:</p>",
        f'<p style="font-family:monospace">{esc(reply)}</p>',
        "</body></html>",
        "",
        f"--{alt}--",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {o.host}",
        f"Received-From-MTA: dns; [{o.client_ip}]",
        f"Arrival-Date: {_date(o.arrival)}",
    ]
    if o.message_id:
        lines.append(f"X-Original-Message-ID: {o.message_id}")
    lines += [
        "",
        f"Final-Recipient: rfc822; {o.recipient}",
        "Action: failed",
        f"Status: {status}",
        f"Remote-MTA: dns; {_mailstore(o)}. ({o.host_address}, the server for the domain "
        f"{o.domain}.)",
        *dsn_diag,
        f"Last-Attempt-Date: {_date(now)}",
        "",
        f"--{boundary}",
    ]
    if full:
        lines += ["Content-Type: message/rfc822", ""]
        inner = _crlf(o.content)
    else:
        lines += ["Content-Type: text/rfc822-headers", ""]
        inner = header_block(o.content)
    return _lines(*lines) + _ends_with_line(inner) + _lines(f"--{boundary}--")


# --- complaints -----------------------------------------------------------------------


def _redact(data: bytes, address: str, replacement: str) -> bytes:
    return re.sub(re.escape(address.encode()), replacement.encode(), data, flags=re.IGNORECASE)


def complaint_sender(fmt: str, domain: str) -> str:
    """The address the feedback loop of ``domain`` sends complaints of ``fmt`` from."""
    if fmt == "yahoo":
        return f"feedback@arf.mail.{domain}"
    if fmt == "microsoft":
        return f"staff@{domain}"
    return f"fbl@{domain}"


def complaint(fmt: str, o: Original, to: str, *, now: float, redact: bool = False) -> Notice:
    """An ARF complaint (RFC 5965, ``Feedback-Type: abuse``) about ``o`` in format
    ``fmt``, from the domain's feedback loop to ``to``."""
    d = _digest("arf", fmt, o.message_id, o.recipient, str(o.arrival))
    boundary = {
        "yahoo": f"----=_Part_{int.from_bytes(d[:3], 'big')}_{int.from_bytes(d[3:6], 'big')}."
        f"{int(now) * 1000}",
        "microsoft": f"_{d[:8].hex()}_",
        "headers": f"part1_{d[:2].hex()}.{d[2:6].hex()}_boundary",
    }[fmt]
    subject = _subject(o)
    rcpt = o.recipient
    shown = f"redacted@{o.domain}" if redact else rcpt
    sender = complaint_sender(fmt, o.domain)
    if fmt == "yahoo":
        from_line = f"From: Yahoo! Mail AntiSpam Feedback <{sender}>"
        subject_line = f"Subject: FW: {subject}" if subject else "Subject: FW:"
        agent = "Yahoo!-Mail-Feedback/2.0"
    elif fmt == "microsoft":
        from_line = f"From: {sender}"
        subject_line = f"Subject: complaint about message from {o.client_ip}"
        agent = "Hotmail FBL"
    else:
        from_line = f"From: <{sender}>"
        subject_line = f"Subject: Email Feedback Report for IP {o.client_ip}"
        agent = f"{o.domain} FBL/1.0"
    lines = [
        from_line,
        f"Date: {_date(now)}",
        subject_line,
        f"To: <{to}>",
        f"Message-ID: <{d[:10].hex()}.arf@{o.host}>",
    ]
    lines += [
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=feedback-report;",
        f'\tboundary="{boundary}"',
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="US-ASCII"',
        "Content-Transfer-Encoding: 7bit",
        "",
        "This is an email abuse report for an email message received from IP",
        f"{o.client_ip} on {_date(o.arrival)}.",
        "For more information about this format please see http://www.mipassoc.org/arf/.",
        "",
        f"--{boundary}",
        "Content-Type: message/feedback-report",
        "",
        "Feedback-Type: abuse",
        f"User-Agent: {agent}",
        "Version: 1",
        f"Original-Mail-From: <{o.mail_from}>",
        f"Original-Rcpt-To: <{shown}>",
        f"Arrival-Date: {_date(o.arrival)}",
        f"Source-IP: {o.client_ip}",
        f"Reported-Domain: {_reported_domain(o)}",
        f"Authentication-Results: {o.host}; none",
        "",
        f"--{boundary}",
    ]
    queue_id = d[10:14].hex()
    receiver = {"yahoo": "YahooMailProxy", "microsoft": "Microsoft SMTP Server"}.get(fmt, "Postfix")
    copy = _returned(o, receiver=receiver, queue_id=queue_id, when=o.arrival)
    if fmt == "microsoft":
        copy = f"X-HmXmrOriginalRecipient: <{rcpt}>\r\n".encode() + copy
    if fmt == "headers" or not o.complete:
        lines += ["Content-Type: text/rfc822-headers", "Content-Transfer-Encoding: 8bit", ""]
        copy = header_block(copy)
    else:
        lines += [
            "Content-Type: message/rfc822",
            "Content-Disposition: inline",
            "Content-Transfer-Encoding: 8bit",
            "",
        ]
    if redact:
        copy = _redact(copy, rcpt, shown)
    data = _lines(*lines) + _ends_with_line(copy) + _lines("", f"--{boundary}--")
    return Notice("arf", fmt, "abuse", "", sender, to, data)


# --- auto-replies ---------------------------------------------------------------------


def auto_reply(fmt: str, o: Original, *, now: float) -> Notice:
    """An automatic reply from ``o``'s recipient to the original envelope sender, sent
    with ``MAIL FROM:<>`` (RFC 3834, section 3.3)."""
    d = _digest("autoreply", fmt, o.message_id, o.recipient, str(o.arrival))
    rcpt = o.recipient
    subject = _subject(o)
    back = datetime.fromtimestamp(now + 14 * 86400, UTC)
    day = f"{back.day} {back:%B %Y}"
    name = _display_name(rcpt)
    threading = [f"In-Reply-To: {o.message_id}", f"References: {o.message_id}"]
    if not o.message_id:
        threading = []
    common = [
        f"Date: {_date(now)}",
        f"Message-ID: <{d[:10].hex()}.{fmt}@{o.host}>",
        f"To: {o.mail_from}",
    ]
    if fmt == "vacation":
        lines = [
            *common,
            f"From: {name} <{rcpt}>",
            f"Subject: Auto: {subject}",
            *threading,
            "Auto-Submitted: auto-replied (vacation)",
            "Precedence: bulk",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 7bit",
            "",
            f"I am away until {day}, with limited access to e-mail.",
            "I will reply to your message when I am back.",
            "",
            name,
        ]
    elif fmt == "exchange":
        lines = [
            *common,
            f"From: {name} <{rcpt}>",
            f"Subject: Automatic reply: {subject}",
            f"Thread-Topic: {subject}",
            *threading,
            "Auto-Submitted: auto-generated",
            "X-Auto-Response-Suppress: All",
            f"X-MS-Exchange-Inbox-Rules-Loop: {rcpt}",
            "X-MS-Exchange-Generated-Message-Source: Mailbox Rules Agent",
            "Content-Language: en-US",
            "MIME-Version: 1.0",
            'Content-Type: text/plain; charset="us-ascii"',
            "",
            f"I am out of the office until {day} with limited access to email.",
            "For urgent matters, please contact my colleagues.",
            "",
            "Best regards,",
            name,
        ]
    elif fmt == "out-of-office":
        lines = [
            *common,
            f"From: {rcpt}",
            f"Subject: Out of Office: {subject}",
            *threading,
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "",
            "Thank you for your message.",
            f"I am currently out of the office and will be back on {day}.",
        ]
    else:  # abwesenheit
        month = _MONATE[back.month - 1]
        lines = [
            *common,
            f"From: {name} <{rcpt}>",
            f"Subject: Abwesenheitsnotiz: {subject}",
            *threading,
            "X-Autoreply: yes",
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            "Vielen Dank f=C3=BCr Ihre Nachricht.",
            "",
            f"Ich bin bis zum {back.day}. {month} {back.year} nicht im B=C3=BCro und habe nur",
            "eingeschr=C3=A4nkten Zugriff auf meine E-Mails.",
            "",
            "Mit freundlichen Gr=C3=BC=C3=9Fen",
            name,
        ]
    reason = "out-of-office"
    return Notice("autoreply", fmt, reason, "", "", o.mail_from, _lines(*lines))
