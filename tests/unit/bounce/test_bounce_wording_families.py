"""Wording families and the structure they override, one test per family.

The texts are written for these tests from the published wordings of each kind of
software (Exim, qmail, Postfix, Exchange / Microsoft 365 NDRs, DSPAM, SpamAssassin,
McAfee gateways, RFC 3463 status codes); none is taken from another project's test mail.
"""

from __future__ import annotations

import pytest

from postline.bounce import Category, analyze, classify, classify_reply
from postline.model import Reply

# (text, SMTP command or None, category, hard)
FAMILIES = [
    # a permanent "user unknown" is hard whatever the phase (RFC 5321 allows a receiver
    # to refuse recipients after DATA; qmail, Courier and filtering gateways do)
    ("550 5.0.0 <ann@example.com>... No such user", "DATA", "invalid_recipient", True),
    ("550 Recipient not found", "DATA", "invalid_recipient", True),
    ("550 user unknown", None, "invalid_recipient", True),
    ("550 BAD_RECIPIENT", None, "invalid_recipient", True),
    ("550 5.1.1 unknown_user: mailbox does not exist", "DATA", "invalid_recipient", True),
    # ...but not when the text says the recipient's filter refused this sender
    ("550 Message rejected by recipient's filter", "DATA", "invalid_recipient", False),
    # ...nor when temporary
    ("450 4.0.0 user unknown, try again later", "RCPT TO", "invalid_recipient", False),
    # quota wording beats a 5.2.3 ("message length exceeds administrative limit") status
    ("552 5.2.3 user has overdrawn his diskspace quota", None, "mailbox_full", False),
    ("552 5.2.3 Mailbox quota exhausted", None, "mailbox_full", False),
    ("552 5.2.3 Message size exceeds maximum permitted", None, "message_too_large", False),
    # a content filter's name or verdict beats a generic 5.7.1 and virus/policy words
    (
        "554 5.7.1 CONTENT REJECT: Message identified as spam by dspam",
        None,
        "spam_content",
        False,
    ),
    ("550 5.7.1 Message rejected: mass mailer detected", None, "spam_content", False),
    ("554 5.7.1 Message refused: matches a known spam pattern", None, "spam_content", False),
    ("550 5.7.1 Message rejected (MCSpamSignature)", None, "spam_content", False),
    ("550 5.7.1 Blocked by SpamAssassin, score 12.3", None, "spam_content", False),
    ("554 5.7.1 Message content rejected by content filter", None, "spam_content", False),
    # the sending host on a blocklist stays spam_block
    (
        "554 5.7.1 Service unavailable; Client host [192.0.2.7] blocked using zen.spamhaus.org",
        None,
        "spam_block",
        False,
    ),
    # Exim's "Unrouteable mail domain" is a domain that cannot be routed at all
    ('Unrouteable mail domain "example.net"', None, "bad_domain", True),
    ("550 5.1.2 Unrouteable mail domain", "RCPT TO", "bad_domain", True),
    # a scanner's verdict is a virus; a disclaimer that mentions viruses is not
    ("554 5.7.1 Virus found: Eicar-Test-Signature", None, "virus", False),
    ("550 5.7.1 Message infected with W32/Netsky", None, "virus", False),
    (
        "550 5.1.1 User unknown. This e-mail and any attachments have been scanned for"
        " viruses; the company accepts no liability for any damage caused by any virus"
        " transmitted by this email.",
        None,
        "invalid_recipient",
        True,
    ),
]


@pytest.mark.parametrize(("text", "command", "category", "hard"), FAMILIES)
def test_wording_family(text: str, command: str | None, category: str, hard: bool) -> None:
    c = classify(text, command=command)
    assert (str(c.category), c.hard) == (category, hard), c.rule


def test_a_synchronous_refusal_after_data_is_hard_too() -> None:
    c = classify_reply(
        Reply(550, "5.1.1 Recipient address rejected: User unknown", "5.1.1", "DATA")
    )
    assert (c.category, c.hard) == (Category.INVALID_RECIPIENT, True)


def _message(subject: str, body: str, sender: str = "ann@example.com", extra: str = "") -> bytes:
    return (
        f"From: {sender}\r\nTo: shop@example.org\r\nSubject: {subject}\r\n{extra}"
        "Message-ID: <r1@example.com>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"{body}\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("Thank you for your email", "I am away until 12 May with no access to e-mail."),
        (
            "Re: Your order 1234",
            "Thank you for your message. I am out of the office until Monday and will reply"
            " when I return.",
        ),
        (
            "Automated response",
            "This is an automated response: we have received your request and will get back"
            " to you within two working days.",
        ),
    ],
)
def test_auto_replies_without_rfc3834_headers(subject: str, body: str) -> None:
    report = analyze(_message(subject, body))
    assert report.kind == "autoreply"
    assert [str(r.category) for r in report.results] == ["auto_reply"]


def test_a_bounce_whose_recipient_cannot_be_read_still_gives_a_result() -> None:
    raw = _message(
        "Undeliverable: Your order",
        "Delivery has failed to these recipients or groups.\n\n"
        "Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not"
        " found by SMTP address lookup'",
        sender="postmaster@outlook.example",
    )
    report = analyze(raw)
    assert report.kind == "dsn"
    [result] = report.results
    assert (result.recipient, str(result.category), result.hard) == (
        None,
        "invalid_recipient",
        True,
    )


def test_a_bounce_nothing_recognises_is_unknown_with_its_status() -> None:
    raw = _message(
        "Mail delivery failed",
        "Delivery failed.\n\nDiagnostic: 554 5.9.9 frobnicator out of tune",
        sender="MAILER-DAEMON@mx.example.net",
    )
    [result] = analyze(raw).results
    assert (result.recipient, str(result.category), result.status) == (None, "unknown", "5.9.9")


def test_an_office365_ndr_without_a_report_part_names_its_recipient() -> None:
    # The layout of Microsoft's published NDR ("Your message to ... couldn't be delivered").
    raw = _message(
        "Undeliverable: Quarterly report",
        "Your message to ann.lee@contoso.example couldn't be delivered.\n\n"
        "ann.lee wasn't found at contoso.example.\n\n"
        "Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not"
        " found by SMTP address lookup'",
        sender="postmaster@contoso.example",
    )
    report = analyze(raw)
    assert [(r.recipient, str(r.category), r.hard) for r in report.results] == [
        ("ann.lee@contoso.example", "invalid_recipient", True)
    ]
