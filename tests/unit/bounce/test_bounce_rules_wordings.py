"""Wordings of widely used MTAs and providers, and the rules that recognise them.

Every text below is written for these tests in the style of the software that sends it
(Postfix, Exim, Sendmail, qmail, Exchange / Microsoft 365, Gmail, list managers...); the
sample messages under ``samples/`` are synthetic too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from postline.bounce import analyze, classify
from postline.bounce.classify import normalise

SAMPLES = Path(__file__).resolve().parent / "samples"

# (reply text, DSN action or None for a synchronous reply, expected category, rule)
WORDINGS = [
    # assorted MTA and provider wordings
    ("550 5.2.1 Account not active", "failed", "inactive_mailbox", "inactive-mailbox"),
    ("451 Temporary failure in MX lookup", "delayed", "routing", "dns-temporary"),
    ("554 5.4.0 Maximum hop count exceeded", "failed", "routing", "mail-loop"),
    ("500 Line limit exceeded", "failed", "message_too_large", "message-too-large"),
    ("501 5.1.7 Fully qualified email address required", "failed", "policy", "sender-rejected"),
    ("450 4.7.1 No matches to nameserver query", "delayed", "spam_block", "ptr-rdns"),
    (
        "554 User arn:aws:iam::123:user/app is not authorized to perform ses:SendRawEmail",
        "failed",
        "auth_failure",
        "sender-auth-smtp-tls",
    ),
    ("550 Nessun utente simile in questo indirizzo", "failed", "invalid_recipient", None),
    (
        "552-5.7.0 This message was blocked because its content presents a potential security"
        " issue.",
        "failed",
        "spam_content",
        "spam-content",
    ),
    # the network, not the recipient
    (
        "lost connection with mx.example.com[192.0.2.1] while receiving the initial greeting",
        "failed",
        "routing",
        "network-unreachable",
    ),
    (
        "Sorry, I wasn't able to establish an SMTP connection. (#4.4.1) I'm not going to try"
        " again; this message has been in the queue too long.",
        "failed",
        "routing",
        "network-unreachable",
    ),
    ("connect to mx.example.net[192.0.2.4]:25: No route to host", "delayed", "routing", None),
    ("Deferred: Connection refused by mx.example.jp.", "failed", "routing", "network-unreachable"),
    ("550 5.4.312 Message expired, DNS query failed", "failed", "routing", "dns-failure"),
    ("Delivery failed 12 attempts: ann@example.com", "failed", "expired", "expired"),
    # null MX (RFC 7505) in Exim's words
    ("an MX or SRV record indicated no SMTP service", "failed", "bad_domain", "bad-domain"),
    # header and content verdicts that mention authentication in passing
    (
        "554 Transaction failed: Duplicate header 'DKIM-Signature'.",
        "failed",
        "protocol",
        "duplicate-header",
    ),
    (
        "Your email to group list@example.com was rejected due to spam classification. To"
        " address this issue: * Set up SPF records for your sending domain.",
        "failed",
        "spam_content",
        "spam-classification",
    ),
    ("500 Remote server does not support TLS (state 6).", "failed", "auth_failure", None),
    # discussion groups, relay services and mailbox servers
    (
        "Il se peut que le groupe que vous avez essayé de contacter (ventes) n'existe pas ou"
        " que vous ne soyez pas autorisé à lui envoyer des messages.",
        "failed",
        "policy",
        "group-posting-refused",
    ),
    (
        "554 Message rejected: Email address is not verified. The following identities failed"
        " the check in region EU-WEST-1: orders@shop.example",
        "failed",
        "relay_denied",
        "relay-denied",
    ),
    (
        "Invalid final delivery userid: ann@example.com",
        "failed",
        "invalid_recipient",
        "recipient-unknown-directory",
    ),
    (
        "Unable to deliver message to <ann@example.com> (and other recipients in the same"
        " domain). Please check if address is correct.",
        "failed",
        "invalid_recipient",
        "recipient-unknown-directory",
    ),
    # the receiving system reports a fault of its own
    ("550 5.4.6 mail for example.org loops back to myself", "failed", "transient", None),
    ("451 4.3.0 Temporary local problem - please try later", "failed", "transient", None),
    ("451 Could not load DRD for domain (example.com)", "failed", "transient", None),
    ("451 4.3.0 Error: queue file write error", "failed", "transient", None),
    ("554 5.3.5 Local configuration error", "failed", "transient", None),
    # temporary DNS trouble
    ("Malformed or unexpected name server reply", "failed", "routing", "dns-temporary"),
    # Exim's router found no route to the domain at all: the domain is bad, not the DNS
    ('Unrouteable mail domain "example.net"', "failed", "bad_domain", "bad-domain"),
    # reverse DNS / unverifiable sending hosts
    ("450 Service permits 2 unverifiable sending IPs", "delayed", "spam_block", "ptr-rdns"),
    ("550 5.7.1 Cannot resolve your address.", "failed", "spam_block", "ptr-rdns"),
    ("501 5.5.4 HELO/EHLO argument is invalid.", "failed", "spam_block", "ptr-rdns"),
    # the sending host is refused
    (
        "421 4.7.0 IP not in whitelist for RCPT domain, closing connection.",
        "delayed",
        "spam_block",
        None,
    ),
    ("554 Mail from 192.0.2.7 refused - see http://dnsbl.example/", "failed", "spam_block", None),
    ("451 4.7.550 Access denied, please try again later.", None, "spam_block", None),
    # the envelope sender
    ("550 5.7.1 Sender is in my black list", "failed", "policy", "address-blocklisted"),
    ("553 5.1.8 Sender domain is empty", "failed", "policy", None),
    ("550 Null sender is not allowed", "failed", "policy", "sender-rejected"),
    ("550 This server does not accept mail from bounces@shop.example", "failed", "policy", None),
    ("550 Transaction failed unsigned DSN for bounces@shop.example", "failed", "policy", None),
    # lists, attachments and other named policies
    (
        "550 Message rejected: posting by non-member to a members-only list",
        "failed",
        "policy",
        "policy-specific",
    ),
    ("550 You are not allowed to post to this mailing list", "failed", "policy", "policy-specific"),
    (
        "552 5.7.0 Our system detected an illegal attachment on your message",
        "failed",
        "policy",
        "policy-specific",
    ),
    ("550 Message bounced due to organizational settings", "failed", "policy", "policy-specific"),
    # the recipient or its filter refuses
    (
        "550 Recipient is only accepting mail from specific email addresses",
        "failed",
        "invalid_recipient",
        "recipient-refuses",
    ),
    (
        "550 5.2.1 The user refuses to receive this mail",
        "failed",
        "invalid_recipient",
        "recipient-refuses",
    ),
    # addresses that do not exist
    (
        "553 sorry, your envelope recipient is in my badrcptto list (#5.7.1)",
        "failed",
        "invalid_recipient",
        None,
    ),
    ("550 User (ann) unknown", "failed", "invalid_recipient", None),
    ("550 Recipient ann@example.com was not found in LDAP", "failed", "invalid_recipient", None),
    # disabled mailboxes
    (
        "550 5.7.1 <ann@example.com>: Recipient address rejected: User temporary locked",
        "failed",
        "inactive_mailbox",
        None,
    ),
    ("550 Mailbox unavailable or access denied", "failed", "inactive_mailbox", None),
    # storage
    ("452 4.3.1 Mail system full", "failed", "mailbox_full", "mailbox-full"),
    ("552 Not sufficient disk space for this message", "failed", "mailbox_full", "mailbox-full"),
    # the content's format, not its size
    (
        "552 5.3.4 Header size exceeds maximum permitted",
        "failed",
        "spam_content",
        "content-malformed",
    ),
    (
        "554 5.6.0 Message MIME complexity exceeds the policy maximum",
        "failed",
        "spam_content",
        None,
    ),
    (
        "550 5.6.11 SMTPSEND.BareLinefeedsAreIllegal; invalid characters",
        "failed",
        "spam_content",
        "status-content",
    ),
    # spam verdicts that also name viruses
    ("554 Message contains spam or virus", "failed", "spam_content", "spam-content"),
    ("550 Message refused by MailMarshal SpamProfiler", "failed", "spam_content", "spam-content"),
    # relaying
    (
        "550 5.7.1 Unable to relay; this system is not configured to relay mail",
        "failed",
        "relay_denied",
        "relay-denied",
    ),
    (
        "553 sorry, that domain isn't in my list of allowed rcpthost",
        "failed",
        "relay_denied",
        "relay-denied",
    ),
    (
        "550 5.7.1 Invalid credentials for relay [192.0.2.7]",
        "failed",
        "relay_denied",
        "relay-denied",
    ),
    # TLS and authentication wordings that a rate-limit phrase must not hide
    (
        "421 4.7.29 Your email has been rate limited because this message wasn't sent over a "
        "TLS connection.",
        "delayed",
        "auth_failure",
        None,
    ),
    (
        "550 5.7.515 Access denied, sending domain doesn't meet the required authentication level.",
        "failed",
        "auth_failure",
        None,
    ),
    # the sending server gave up
    ("Could not deliver for the last 432000 seconds. Giving up.", "failed", "expired", "expired"),
    (
        "Delivery to the following recipients failed: could not find a gateway for example.net",
        "failed",
        "expired",
        "expired",
    ),
    # a local delivery program
    ('procmail: Quota exceeded while writing "/var/mail/ann"', "failed", "mailbox_full", None),
    ("Command output: maildrop: error writing to mailbox", "failed", "routing", "mailer-error"),
]


@pytest.mark.parametrize(("text", "action", "category", "rule"), WORDINGS)
def test_wordings(text: str, action: str | None, category: str, rule: str | None) -> None:
    c = classify(text, action=action)
    assert str(c.category) == category, c.rule
    if rule is not None:
        assert c.rule == rule


@pytest.mark.parametrize(
    ("code", "status", "category", "hard"),
    [
        (556, None, "bad_domain", True),  # RFC 7504: domain does not accept mail
        (521, None, "bad_domain", True),  # RFC 7504: host does not accept mail
        (554, "5.3.2", "bad_domain", True),  # RFC 3463: system not accepting messages
        (421, "4.3.2", "transient", False),  # ... temporarily
        (554, "5.6.0", "spam_content", False),  # RFC 3463 X.6.x: content or media
    ],
)
def test_codes_that_say_the_destination_accepts_no_mail(
    code: int, status: str | None, category: str, hard: bool
) -> None:
    # A synchronous reply: a delay warning (Action: delayed) is reported as expired.
    c = classify("", code=code, status=status, action="failed" if code >= 500 else None)
    assert (str(c.category), c.hard) == (category, hard)


def test_a_mailbox_name_is_never_read_as_a_reason() -> None:
    assert normalise("550 <Virus-Alerts@example.com> no such user") == (
        "550 <x@example.com> no such user"
    )
    c = classify(
        "550 5.7.0 <policy.violation@example.com>: Recipient address rejected", action="failed"
    )
    assert c.rule != "policy-explicit"
    c = classify(
        "There was an error delivering your mail to <expired@example.net>.", action="failed"
    )
    assert c.rule != "expired"


def test_addresses_in_literal_domains_and_plain_at_signs() -> None:
    assert normalise("ann@[192.0.2.1] and user @ host") == "x@[192.0.2.1] and user @ host"


@pytest.mark.parametrize(
    ("sample", "recipient", "action", "category", "hard"),
    [
        ("postfix_loops_back.eml", "walter@loop.example.org", "failed", "transient", False),
        ("sendmail_null_mx.eml", "xavier@nomail.example", "failed", "bad_domain", True),
        ("exim_unverifiable_ip_delay.eml", "yvonne@strict.example", "delayed", "spam_block", False),
        (
            "dsn_mailbox_named_like_reason.eml",
            "spam-virus-policy@lists.example.net",
            "failed",
            "invalid_recipient",
            True,
        ),
    ],
)
def test_reports(sample: str, recipient: str, action: str, category: str, hard: bool) -> None:
    report = analyze((SAMPLES / sample).read_bytes())
    assert report.kind == "dsn"
    [result] = report.results
    assert (result.recipient, result.action, str(result.category), result.hard) == (
        recipient,
        action,
        category,
        hard,
    )
