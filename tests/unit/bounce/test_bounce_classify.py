"""The shipped classification rules: replies and diagnostics → category and hard/soft."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postline.bounce import Category, classify, classify_reply, shipped_rules
from postline.bounce.classify import extract_codes, extract_command, normalise
from postline.model import Reply

# (code, enhanced, text, expected category, expected hard) for synchronous replies at
# RCPT TO, written in the style of the receivers that send them.
REPLIES = [
    (
        550,
        "5.1.1",
        "<ann@example.com>: Recipient address rejected: User unknown",
        "invalid_recipient",
        True,
    ),
    (
        550,
        "5.1.1",
        "The email account that you tried to reach does not exist.",
        "invalid_recipient",
        True,
    ),
    (550, None, "Requested action not taken: mailbox unavailable", "invalid_recipient", True),
    (
        550,
        "5.1.10",
        "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        "invalid_recipient",
        True,
    ),
    (554, "5.1.2", "Host or domain name not found", "bad_domain", True),
    (556, "5.1.10", "Recipient address has null MX", "bad_domain", True),
    (
        550,
        "5.2.1",
        "The email account that you tried to reach is disabled.",
        "inactive_mailbox",
        False,
    ),
    (552, "5.2.2", "Mailbox full", "mailbox_full", False),
    (
        452,
        "4.2.2",
        "The email account that you tried to reach is over quota.",
        "mailbox_full",
        False,
    ),
    (552, "5.3.4", "Message size exceeds fixed maximum message size", "message_too_large", False),
    (
        554,
        "5.7.1",
        "Service unavailable; Client host [198.51.100.7] blocked using zen.spamhaus.org",
        "spam_block",
        False,
    ),
    (
        550,
        "5.7.25",
        "The IP address sending this message does not have a PTR record setup.",
        "spam_block",
        False,
    ),
    (
        421,
        "4.7.0",
        "[TSS04] Messages from 198.51.100.7 temporarily deferred due to user complaints",
        "spam_block",
        False,
    ),
    (
        550,
        "5.7.1",
        "Our system has detected that this message is likely unsolicited mail.",
        "spam_content",
        False,
    ),
    (554, "5.7.9", "Message not accepted for policy reasons.", "policy", False),
    (
        550,
        "5.7.26",
        "Unauthenticated email from shop.example is not accepted due to domain's DMARC policy.",
        "auth_failure",
        False,
    ),
    (530, "5.7.0", "Must issue a STARTTLS command first", "auth_failure", False),
    (
        421,
        "4.7.0",
        "Too many concurrent SMTP connections; please try again later.",
        "rate_limited",
        False,
    ),
    (
        450,
        "4.2.1",
        "The user you are trying to contact is receiving mail at a rate that prevents "
        "additional messages from being delivered.",
        "rate_limited",
        False,
    ),
    (554, "5.7.1", "<x@example.net>: Relay access denied", "relay_denied", False),
    (451, "4.4.0", "DNS resolution failed", "routing", False),
    (451, "4.3.0", "Temporary local problem - please try later", "transient", False),
    (500, "5.5.1", "Command unrecognized", "protocol", False),
    (554, "5.7.1", "The message was rejected because it contains a virus", "virus", False),
    (554, None, "something nobody has ever written", "unknown", False),
]


@pytest.mark.parametrize(("code", "enhanced", "text", "category", "hard"), REPLIES)
def test_replies_at_rcpt_are_classified(
    code: int, enhanced: str | None, text: str, category: str, hard: bool
) -> None:
    c = classify_reply(Reply(code, text, enhanced, "RCPT TO"), "mx.example.com")
    assert (c.category, c.hard) == (category, hard), c.rule
    assert c.rule
    assert str(code) in c.diagnostic


def test_a_transient_reply_is_never_hard() -> None:
    c = classify_reply(Reply(450, "User unknown", "4.1.1", "RCPT TO"))
    assert c.category == Category.INVALID_RECIPIENT
    assert c.hard is False


def test_giving_up_after_temporary_errors_proves_nothing() -> None:
    # A resolver error the reporting server itself called temporary (4.0.0) is DNS
    # trouble, not proof that the domain is gone.
    c = classify(
        "DNS Error: 1234 DNS type 'mx' lookup of example.invalid responded with code NXDOMAIN",
        status="4.0.0",
        action="failed",
    )
    assert c.category == Category.ROUTING
    assert c.hard is False
    gone = classify("Domain example.invalid does not exist (NXDOMAIN)", status="5.1.2")
    assert (gone.category, gone.hard) == (Category.BAD_DOMAIN, True)
    assert classify("Host or domain name not found", status="5.1.2", action="failed").hard


def test_user_unknown_is_hard_whatever_the_phase_unless_the_text_names_a_filter() -> None:
    after_data = classify_reply(Reply(550, "User unknown", None, "DATA END"))
    assert (after_data.category, after_data.hard) == (Category.INVALID_RECIPIENT, True)
    with_status = classify_reply(Reply(550, "User unknown", "5.1.1", "DATA END"))
    assert with_status.hard is True
    temporary = classify_reply(Reply(450, "User unknown", None, "RCPT TO"))
    assert temporary.hard is False
    # A refusal of this sender by the recipient's own filter says nothing about the address.
    refused = classify_reply(Reply(550, "Message rejected by recipient's filter", None, "DATA"))
    assert (refused.category, refused.hard) == (Category.INVALID_RECIPIENT, False)


def test_a_generic_refusal_is_hard_only_at_rcpt_or_with_an_address_status() -> None:
    at_data = classify("550 5.0.0 <ann@example.com>... Recipient rejected", command="DATA")
    assert (at_data.category, at_data.hard) == (Category.INVALID_RECIPIENT, False)
    at_rcpt = classify("550 5.0.0 <ann@example.com>... Recipient rejected", command="RCPT TO")
    assert at_rcpt.hard is True
    with_status = classify("550 5.1.1 <ann@example.com>... Recipient rejected", command="DATA")
    assert with_status.hard is True


def test_command_is_read_from_a_diagnostic_text() -> None:
    text = "host mx[192.0.2.1] said: 550 no such user (in reply to\n    RCPT TO command)"
    assert extract_command(text) == "RCPT TO"
    assert extract_command("SMTP error from remote mail server after end of data:") == "DATA"
    assert classify(text).hard is True
    assert classify("550 no such user").hard is True  # any phase: the address is unknown


def test_codes_are_found_in_diagnostic_text() -> None:
    assert extract_codes("smtp; 550 5.1.1 <a@b.example>: no such user") == (550, "5.1.1")
    assert extract_codes("Remote host said: 554 delivery error") == (554, None)
    assert extract_codes("Sorry, no mailbox here by that name. (#5.1.1)") == (None, "5.1.1")
    assert extract_codes("nothing at all 1.2.3.4") == (None, None)


def test_final_failure_with_temporary_status_has_expired() -> None:
    c = classify(
        "connect to mx.example.net[192.0.2.20]:25: Connection timed out",
        status="4.4.1",
        action="failed",
    )
    assert c.category == Category.EXPIRED
    same_text_as_reply = classify_reply(Reply(421, "Connection timed out", "4.4.1", "CONNECT"))
    assert same_text_as_reply.category == Category.ROUTING


def test_a_specific_phrase_beats_the_enhanced_code() -> None:
    # Status says "bad mailbox", the words say the mailbox is full.
    c = classify("552 5.1.1 Mailbox full", status="5.1.1", action="failed")
    assert c.category == Category.MAILBOX_FULL


def test_a_precise_status_beats_a_generic_prefix() -> None:
    c = classify(
        "550 5.1.2 <x@nowhere.example>: Recipient address rejected: Bad destination system",
        action="failed",
    )
    assert c.category == Category.BAD_DOMAIN


def test_multi_line_replies_read_as_one_sentence() -> None:
    text = (
        "550-5.7.1 Messages with multiple addresses in From:\n"
        "550-5.7.1 header are not accepted.\n550 5.7.1 gsmtp"
    )
    assert "multiple addresses in from: header" in normalise(text)
    assert classify(text).category == Category.PROTOCOL


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "user unknown",
                "mailbox",
                "full",
                "quota",
                "spamhaus",
                "blocked",
                "relay",
                "denied",
                "policy",
                "rate limit",
                "timed out",
                "dmarc",
                "virus",
                "not",
                "exist",
                "host",
                "domain",
                "try again later",
                "550",
                "5.1.1",
                "421",
                "expired",
                "too many",
                "spam",
                "reputation",
                "ptr",
                "unknown user",
                "no such user",
                "aup#cxbl",
                "ofr_416",
                "host network not allowed",
                "x",
                "\n",
            ]
        ),
        max_size=12,
    ),
    st.sampled_from([None, "5.1.1", "4.4.1", "5.7.1", "5.0.0", "4.2.2"]),
    st.sampled_from([None, "failed", "delayed"]),
    st.sampled_from([None, 550, 421, 552]),
    st.sampled_from([None, "mfsmax.docomo.ne.jp", "mx.cox.net", "us-smtp-1.mimecast.com"]),
    st.sampled_from([None, "server-1.messagelabs.com", "mta.example.org"]),
    st.sampled_from([None, "DATA", "RCPT TO", "MAIL FROM"]),
)
def test_prefiltered_matching_agrees_with_the_single_alternation(
    words: list[str],
    status: str | None,
    action: str | None,
    code: int | None,
    remote: str | None,
    reporting: str | None,
    command: str | None,
) -> None:
    rules = shipped_rules()
    subject = {
        "code": code,
        "status": status,
        "action": action,
        "remote": remote,
        "text": normalise(" ".join(words)),
        "reporting": reporting,
        "command": command,
    }
    assert rules.match(**subject) == rules.match_reference(**subject)


def test_an_unknown_mailbox_refused_on_every_try_is_hard_once_the_sender_gives_up() -> None:
    text = (
        "450 4.1.1 <ann@example.org>: Recipient address rejected:"
        " User unknown in virtual alias table"
    )
    gave_up = classify(text, status="4.1.1", action="failed", command="RCPT TO")
    assert (gave_up.category, gave_up.hard) == (Category.INVALID_RECIPIENT, True)
    still_trying = classify(text, status="4.1.1", action="delayed", command="RCPT TO")
    assert still_trying.hard is False
    # Another temporary status proves nothing about the address.
    other = classify("451 4.3.0 Mailbox busy", status="4.3.0", action="failed")
    assert other.hard is False


def test_an_account_check_is_hard_with_or_without_the_phase() -> None:
    no_phase = classify("This user doesn't have a example.com account (ann@example.com) [-9]")
    assert (no_phase.category, no_phase.hard) == (Category.INVALID_RECIPIENT, True)
    at_rcpt = classify(
        "This user doesn't have a example.com account (ann@example.com)", command="RCPT TO"
    )
    assert at_rcpt.hard is True
    provider = classify(
        "554 delivery error: dd This user doesn't have a example.com account"
        " (ann@example.com) [0] - mta1.mail.example.com"
    )
    assert (provider.category, provider.hard) == (Category.INVALID_RECIPIENT, True)


def test_kddi_says_unknown_user_two_ways() -> None:
    # With the address: the mailbox does not exist. Without it: the recipient's reception
    # filter refused the sender, and the address may well exist.
    unknown = classify(
        "550 <ann@ezweb.ne.jp>: User unknown", status="5.0.0", remote="lsean.ezweb.ne.jp"
    )
    assert (unknown.category, unknown.hard, unknown.rule) == (
        Category.INVALID_RECIPIENT,
        True,
        "kddi-unknown-user",
    )
    filtered = classify("550 : User unknown", status="5.0.0", remote="lsean.ezweb.ne.jp")
    assert (filtered.category, filtered.hard, filtered.rule) == (
        Category.INVALID_RECIPIENT,
        False,
        "kddi-reception-filter",
    )
    elsewhere = classify(
        "550 <ann@example.com>: User unknown", status="5.0.0", remote="mx.example.com"
    )
    assert elsewhere.rule == "recipient-unknown"
