"""``analyze``: DSNs, non-standard bounces, complaints, auto-replies and the rest.

Every sample under ``samples/`` is a small synthetic message written for these tests in
the style of the software named in its file name.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postline.bounce import Category, Report, analyze

SAMPLES = Path(__file__).resolve().parent / "samples"


def load(name: str) -> Report:
    return analyze((SAMPLES / name).read_bytes())


def by_recipient(report: Report) -> dict[str, tuple[str | None, str, bool, str | None]]:
    return {
        r.recipient: (r.action, str(r.category), r.hard, r.status)
        for r in report.results
        if r.recipient
    }


def test_rfc3464_dsn_gives_one_result_per_recipient_and_the_original_ids() -> None:
    report = load("postfix_dsn.eml")
    assert report.kind == "dsn"
    assert by_recipient(report) == {
        "ann@example.com": ("failed", "invalid_recipient", True, "5.1.1"),
        "bob@example.net": ("failed", "expired", False, "4.4.1"),
    }
    ann = report.results[0]
    assert ann.remote_mta == "mx1.example.com"
    assert "User unknown in virtual mailbox table" in ann.diagnostic
    assert report.message_id == "<01JNB7Y3K2@shop.example>"
    assert report.postline_id == "01JNB7Y3K2QW"
    assert report.reporting_mta == "mx.shop.example"


def test_base64_delivery_status_and_original_recipient() -> None:
    report = load("dsn_original_recipient_b64.eml")
    (result,) = report.results
    # The address the sender used comes first; the one after aliasing is kept too.
    assert result.recipient == "carol@example.org"
    assert result.alias == "carol.smith@internal.example.org"
    assert (result.category, result.hard, result.status) == (Category.MAILBOX_FULL, False, "5.2.2")
    assert report.message_id == "<weekly-42@news.example>"


def test_a_delay_is_not_a_hard_bounce() -> None:
    (result,) = load("dsn_delayed.eml").results
    assert result.action == "delayed"
    assert result.category == Category.MAILBOX_FULL
    assert result.hard is False and result.failed is False


def test_a_success_notification_is_not_a_failure() -> None:
    (result,) = load("dsn_delivered.eml").results
    assert result.action == "delivered"
    assert result.failed is False and result.hard is False


@pytest.mark.parametrize(
    ("sample", "expected"),
    [
        (
            "exim_plain.eml",
            {
                "frank@example.net": ("failed", "invalid_recipient", True, "5.1.1"),
                "grace@example.org": ("failed", "mailbox_full", False, "5.2.2"),
            },
        ),
        (
            "qmail_plain.eml",
            {
                "ivan@example.org": ("failed", "invalid_recipient", True, "5.1.1"),
                "judy@example.org": ("failed", "mailbox_full", False, "5.2.2"),
            },
        ),
        ("postfix_plain.eml", {"mallory@example.com": ("failed", "spam_block", False, "5.7.1")}),
        ("sendmail_plain.eml", {"niaj@example.jp": ("failed", "bad_domain", True, "5.1.2")}),
        (
            "exchange_ndr.eml",
            {"olivia@corp.example.com": ("failed", "invalid_recipient", True, "5.1.10")},
        ),
        ("gmail_plain.eml", {"peggy@example.com": ("failed", "invalid_recipient", True, "5.1.1")}),
        ("yahoo_plain.eml", {"rupert@yahoo.example": ("failed", "inactive_mailbox", False, None)}),
        (
            "domino_plain.eml",
            {"sybil@notes.example.com": ("failed", "invalid_recipient", True, None)},
        ),
        (
            "groupwise_plain.eml",
            {"trent@unknown-host.example.edu": ("failed", "bad_domain", True, None)},
        ),
        ("courier_dsn.eml", {"victor@example.info": ("failed", "relay_denied", False, "5.7.1")}),
        # Greylisting says why the message is late: transient, not a give-up.
        ("exim_delay.eml", {"heidi@example.com": ("delayed", "transient", False, "4.7.1")}),
        ("daemon_intended.eml", {"uma@old.example.net": ("failed", "mailbox_full", False, None)}),
        ("ses_bounce.eml", {"quentin@example.com": ("failed", "invalid_recipient", True, "5.1.1")}),
        (
            # "refused to talk to me" is a refusal of the sending host, whatever the
            # temporary status; "no route to host" is why the sender gave up.
            "postfix_refused_to_talk.eml",
            {
                "xavier@example.com": ("failed", "spam_block", False, "4.0.0"),
                "yvonne@example.net": ("failed", "routing", False, "4.4.1"),
            },
        ),
        (
            # The boundary parameter sits on an unindented line of its own, and the
            # bounce comes from "post_master" with a "Re:" subject.
            "mms_gateway_broken_fold.eml",
            {"5550100@mms.example.net": ("failed", "invalid_recipient", True, None)},
        ),
    ],
)
def test_bounces_in_many_formats(
    sample: str, expected: dict[str, tuple[str | None, str, bool, str | None]]
) -> None:
    report = load(sample)
    assert report.kind == "dsn"
    assert by_recipient(report) == expected


def test_ids_of_a_message_returned_inline_are_found() -> None:
    report = load("exim_plain.eml")
    assert report.message_id == "<0001-frank@shop.example>"
    assert report.postline_id == "01JNBXYZ0001"
    assert load("exchange_ndr.eml").postline_id == "01JNBEXCH77"


def test_the_bounce_sender_and_the_original_sender_are_never_recipients() -> None:
    for sample in ("exim_plain.eml", "qmail_plain.eml", "sendmail_plain.eml", "postfix_dsn.eml"):
        recipients = {r.recipient for r in load(sample).results}
        assert not recipients & {
            "sender@shop.example",
            "shop@shop.example",
            "orders@shop.example",
            "mailer-daemon@mail.example.net",
        }


def test_arf_complaint() -> None:
    report = load("arf_abuse.eml")
    assert report.kind == "arf"
    assert report.feedback is not None
    assert report.feedback.feedback_type == "abuse"
    assert report.feedback.user_agent == "ExampleFBL/1.2"
    assert report.feedback.source_ip == "192.0.2.1"
    (result,) = report.results
    assert (result.recipient, result.category, result.hard, result.action) == (
        "wendy@example-mail.com",
        Category.COMPLAINT,
        False,
        "complained",
    )
    assert report.message_id == "<arf-order-1@shop.example>"
    assert report.postline_id == "01JNBARF0001"


def test_arf_without_original_rcpt_to_uses_the_returned_headers() -> None:
    report = load("arf_headers_only.eml")
    assert report.kind == "arf"
    assert report.feedback is not None and report.feedback.feedback_type == "opt-out"
    assert [r.recipient for r in report.results] == ["xavier@example-isp.net"]
    assert report.message_id == "<news-5@shop.example>"


def test_microsoft_jmrp_complaint() -> None:
    report = load("jmrp.eml")
    assert report.kind == "arf"
    assert [(r.recipient, r.category) for r in report.results] == [
        ("yolanda@hotmail.example", Category.COMPLAINT)
    ]


@pytest.mark.parametrize(
    ("sample", "who"),
    [
        ("autoreply_rfc3834.eml", "zoe@example.com"),
        ("autoreply_german_subject.eml", "uwe@beispiel.example"),
        ("autoreply_body_only.eml", "alice@example.org"),
    ],
)
def test_auto_replies_are_never_bounces(sample: str, who: str) -> None:
    report = load(sample)
    assert report.kind == "autoreply"
    (result,) = report.results
    assert (result.recipient, result.category, result.hard) == (who, Category.AUTO_REPLY, False)
    assert result.failed is False


def test_a_bounce_marked_auto_submitted_is_still_a_bounce() -> None:
    assert load("postfix_dsn.eml").kind == "dsn"  # carries Auto-Submitted: auto-replied
    assert load("gmail_plain.eml").kind == "dsn"


def test_an_ordinary_message_is_other() -> None:
    report = load("ordinary_reply.eml")
    assert (report.kind, report.results) == ("other", ())


def test_garbage_does_not_raise() -> None:
    for raw in (b"", b"\x00\xff\xfe", b"Content-Type: multipart/report\n\n--", b"x" * 10000):
        assert analyze(raw).kind in ("dsn", "arf", "autoreply", "other")


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(sorted(p.name for p in SAMPLES.glob("*.eml"))),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=40),
    st.integers(0, 6000),
)
def test_damaged_reports_never_raise(name: str, edits: list[tuple[int, int]], cut: int) -> None:
    data = bytearray((SAMPLES / name).read_bytes()[: cut or None])
    for position, value in edits:
        if data:
            data[position % len(data)] = value
    report = analyze(bytes(data))
    assert report.kind in ("dsn", "arf", "autoreply", "other")
    assert all(r.hard is False or r.action == "failed" for r in report.results)


# --- who wrote the bounce, and which command it answered ---------------------------------


def test_the_same_unknown_user_is_a_filter_after_data_and_a_bad_address_at_rcpt() -> None:
    # NTT docomo refuses at DATA when the recipient's reception settings block the sender.
    report = load("postfix_docomo_data.eml")
    assert by_recipient(report) == {
        "taro@docomo.ne.jp": ("failed", "policy", False, "5.0.0"),
        "hana@docomo.ne.jp": ("failed", "invalid_recipient", True, "5.0.0"),
    }
    assert report.results[0].rule == "docomo-reception-filter"


def test_the_reporting_mta_is_passed_to_the_rules() -> None:
    # Email Security.cloud checks recipients against the customer's list: "No such user"
    # with a generic 5.0.0 and no command is still a hard unknown user there.
    report = load("messagelabs_dsn.eml")
    assert report.reporting_mta == "server-7.tower-9.messagelabs.com"
    assert by_recipient(report) == {
        "lena@customer.example": ("failed", "invalid_recipient", True, "5.0.0")
    }
    assert report.results[0].rule == "messagelabs-recipient"


def test_a_provider_code_says_more_than_the_words_around_it() -> None:
    report = load("ses_cox_aup.eml")
    assert by_recipient(report) == {"sam@cox.net": ("failed", "spam_block", False, "5.1.0")}
    assert report.results[0].rule == "cox-blocked"


def test_without_a_remote_mta_the_recipient_domain_identifies_the_provider() -> None:
    raw = (SAMPLES / "ses_cox_aup.eml").read_bytes()
    raw = raw.replace(b"<bounce@sender.example> sender rejected", b"recipient rejected")
    raw = raw.replace(b" AUP#CXBL", b"")
    result = analyze(raw).results[0]
    assert (result.category, result.rule, result.remote_mta) == (
        Category.INVALID_RECIPIENT,
        "cox-recipient",
        None,
    )


def test_bare_screen_names_get_the_reporting_domain() -> None:
    report = load("screenname_notice.eml")
    assert [r.recipient for r in report.results] == [
        "lunarmoth@members.example",
        "Quiet.Fox@members.example",
    ]
    assert all(r.action == "failed" for r in report.results)


def test_a_list_manager_refusal_names_the_list_as_recipient() -> None:
    report = load("list_nonmember.eml")
    assert report.kind == "dsn"
    assert [(r.recipient, r.category, r.rule) for r in report.results] == [
        ("cats@lists.example", Category.POLICY, "list-members-only")
    ]


def test_a_list_loop_alert_is_transient() -> None:
    report = load("list_duplicate.eml")
    assert [(r.recipient, r.category) for r in report.results] == [
        ("dogs@lists.example", Category.TRANSIENT)
    ]


def test_an_empty_bounce_of_a_report_uses_the_inner_report() -> None:
    report = load("bounce_of_report.eml")
    assert by_recipient(report) == {
        "gone@far.example": ("failed", "invalid_recipient", True, "5.1.1")
    }


def test_an_ses_complaint_folded_by_a_relay_is_still_read() -> None:
    # A relay folded the long JSON line ("!", line break, space) inside an address.
    report = load("ses_complaint_folded.eml")
    assert report.kind == "arf"
    assert [(r.recipient, str(r.category)) for r in report.results] == [
        ("wendy@example.org", "complaint")
    ]
    assert report.message_id == "<ses-2@shop.example>"


def test_has_not_been_delivered_is_a_failure_not_a_delay() -> None:
    raw = (
        b"From: postmaster@campus.example\r\nTo: orders@shop.example\r\n"
        b"Subject: Undeliverable message\r\n\r\n"
        b"Your message to zoe@campus.example has reached our local address\r\n"
        b"zoe@campus.example, but this email address is wrong or no longer valid.\r\n\r\n"
        b"Your message has NOT been delivered.\r\n"
    )
    (result,) = analyze(raw).results
    assert (result.recipient, result.action) == ("zoe@campus.example", "failed")
    warning = raw.replace(b"has NOT been delivered.", b"has not yet been delivered.")
    assert analyze(warning).results[0].action == "delayed"


def test_a_qmail_bounce_sent_to_the_failed_address_itself_still_names_it() -> None:
    raw = (
        b"From: MAILER-DAEMON@relay.example.org\nTo: fwd@example.org\n"
        b"Subject: failure notice\n\n"
        b"Hi. This is the qmail-send program at relay.example.org.\n"
        b"I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        b"This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        b"<fwd@example.org>:\n192.0.2.1 does not like recipient.\n"
        b"Remote host said: 552 Error: disk quota exceeded\nGiving up on 192.0.2.1.\n\n"
        b"--- Below this line is a copy of the message.\n\nFrom: orders@shop.example\n"
    )
    (result,) = analyze(raw).results
    assert (result.recipient, str(result.category)) == ("fwd@example.org", "mailbox_full")
    # The bounce's own addressee is never a recipient otherwise.
    other = raw.replace(b"<fwd@example.org>:", b"<ann@example.org>:")
    assert [r.recipient for r in analyze(other).results] == ["ann@example.org"]


def test_a_damaged_charset_parameter_does_not_raise() -> None:
    # A NUL inside the charset makes the stdlib's codec lookup fail while decoding.
    raw = (
        b"From: MAILER-DAEMON@mx.example.org\nTo: orders@shop.example\n"
        b"Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        b"Content-Type: text/plain; charset=utf\x00-8\nContent-Transfer-Encoding: 8bit\n\n"
        b"<ann@example.org>: host mx.example.org said: 550 5.1.1 User unknown\n"
        b"Gr\xc3\xbc\xc3\x9fe\n"
    )
    report = analyze(raw)
    assert [(r.recipient, str(r.category)) for r in report.results] == [
        ("ann@example.org", "invalid_recipient")
    ]


def test_a_remote_mta_with_a_trailing_dot_and_a_comment_names_the_host() -> None:
    raw = (
        b"From: MAILER-DAEMON@mx.shop.example\nTo: b-1@bounce.shop.example\n"
        b"Subject: Delivery Status Notification (Failure)\nMIME-Version: 1.0\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        b"--b\nContent-Type: text/plain\n\nDelivery failed.\n\n"
        b"--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.shop.example\n\n"
        b"Final-Recipient: rfc822; ann@ezweb.ne.jp\nAction: failed\nStatus: 5.0.0\n"
        b"Remote-MTA: dns; lsean.ezweb.ne.jp. (192.0.2.7, the server for the domain"
        b" ezweb.ne.jp.)\n"
        b"Diagnostic-Code: smtp; 550 <ann@ezweb.ne.jp>: User unknown\n\n--b--\n"
    )
    (result,) = analyze(raw).results
    assert result.remote_mta == "lsean.ezweb.ne.jp"
    # ...so the provider's own meaning of its reply applies.
    assert (result.rule, result.hard) == ("kddi-unknown-user", True)


def test_iso_2022_jp_status_fields_are_decoded() -> None:
    # Japanese Domino writes its Diagnostic-Code in ISO-2022-JP ("not found in the Domino
    # directory"): decoded, it reads like its English wording.
    (result,) = load("domino_iso2022jp.eml").results
    assert "ディレクトリには見つかりません" in result.diagnostic
    assert (result.recipient, str(result.category), result.hard) == (
        "taro@example.co.jp",
        "invalid_recipient",
        True,
    )


def test_a_global_dsn_keeps_its_utf8_fields() -> None:
    # RFC 6533: message/global-delivery-status fields are UTF-8.
    raw = (
        "From: MAILER-DAEMON@mx.example.org\nTo: b-1@bounce.shop.example\n"
        "Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=global-delivery-status; boundary="g"\n\n'
        "--g\nContent-Type: text/plain; charset=utf-8\n\nDelivery failed.\n\n"
        "--g\nContent-Type: message/global-delivery-status\n\n"
        "Reporting-MTA: dns; mx.example.org\n\n"
        "Final-Recipient: utf-8; jörg@exämple.org\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <jörg@exämple.org>: User unknown\n\n--g--\n"
    ).encode()
    (result,) = analyze(raw).results
    assert result.recipient == "jörg@exämple.org"
    assert "<jörg@exämple.org>" in result.diagnostic
    assert (str(result.category), result.hard) == ("invalid_recipient", True)
