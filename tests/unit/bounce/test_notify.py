"""``build_dsn`` / ``should_notify``: the DSNs postline sends to SMTP submitters.

Every notification is read back twice: with postline's own report parser
(:func:`postline.bounce.analyze`), which must see the same recipients, statuses and
verdicts, and with the standard library's ``email`` package, for the MIME structure.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postline.bounce import Category, Report, analyze
from postline.bounce.notify import DsnRecipient, _text_header, build_dsn, should_notify

MTA = "mta1.example.net"
SENDER = "ann@shop.example"
ARRIVAL = datetime(2026, 2, 26, 9, 58, tzinfo=UTC).timestamp()
NOW = datetime(2026, 3, 2, 10, 0, 5, tzinfo=UTC).timestamp()
ATTEMPT = datetime(2026, 3, 2, 9, 59, 30, tzinfo=UTC).timestamp()
HEADERS = (
    b"Received: from client.shop.example by mta1.example.net with ESMTPSA\r\n"
    b"\tid 01JNB7Y3K2QW; Thu, 26 Feb 2026 09:58:00 +0000\r\n"
    b"From: Shop <ann@shop.example>\r\n"
    b"To: bob@x.example\r\n"
    b"Subject: Your order\r\n"
    b"Message-ID: <order-42@shop.example>\r\n"
    b"X-Postline-ID: 01JNB7Y3K2QW\r\n"
    b"MIME-Version: 1.0\r\n"
)

USER_UNKNOWN = DsnRecipient(
    address="bob@x.example",
    action="failed",
    status="5.1.1",
    diagnostic="550 5.1.1 <bob@x.example>: user unknown",
    remote_mta="mx.x.example",
    last_attempt=ATTEMPT,
)


def build(
    recipients: Sequence[DsnRecipient] = (USER_UNKNOWN,),
    *,
    headers: bytes = HEADERS,
    mail_from: str = SENDER,
    reporting_mta: str = MTA,
    envelope_id: str | None = "01JNB7Y3K2QW",
) -> bytes:
    return build_dsn(
        reporting_mta=reporting_mta,
        original_mail_from=mail_from,
        original_headers=headers,
        recipients=recipients,
        arrival=ARRIVAL,
        now=NOW,
        envelope_id=envelope_id,
    )


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def parts(msg: EmailMessage) -> list[Message]:
    payload = msg.get_payload()
    assert isinstance(payload, list)
    return payload


def status_blocks(raw: bytes) -> list[Message]:
    """The field blocks of the message/delivery-status part, as the stdlib reads them."""
    part = parts(parse(raw))[1]
    assert part.get_content_type() == "message/delivery-status"
    blocks = part.get_payload()
    assert isinstance(blocks, list)
    return blocks


def human_text(raw: bytes) -> str:
    part = parts(parse(raw))[0]
    assert isinstance(part, EmailMessage)
    text = part.get_content()
    assert isinstance(text, str)
    return text


def unxtext(value: str) -> str:
    """Decode RFC 6533 utf-8-addr-xtext (``\\x{HEX}`` escapes)."""
    return re.sub(r"\\x\{([0-9A-Fa-f]{1,6})\}", lambda m: chr(int(m.group(1), 16)), value)


def assert_well_formed(raw: bytes, *, seven_bit_headers: bool = True) -> None:
    """CRLF everywhere, lines within 998 octets, a 7-bit body, three parts, no defects."""
    assert raw.endswith(b"\r\n")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\x00" not in raw
    lines = raw.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    head, _, body = raw.partition(b"\r\n\r\n")
    assert body.isascii()
    if seven_bit_headers:
        assert head.isascii()
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in parts(msg)] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert not msg.defects
    assert all(not p.defects for p in msg.walk())


def only(report: Report) -> tuple[str | None, str | None, str | None, Category, bool]:
    (r,) = report.results
    return r.recipient, r.action, r.status, r.category, r.hard


# --- build_dsn, read back ---------------------------------------------------------------


def test_failed_recipient_is_a_hard_invalid_recipient_bounce_to_our_parser() -> None:
    raw = build()
    report = analyze(raw)
    assert report.kind == "dsn"
    assert only(report) == (
        "bob@x.example",
        "failed",
        "5.1.1",
        Category.INVALID_RECIPIENT,
        True,
    )
    (result,) = report.results
    assert result.remote_mta == "mx.x.example"
    assert "user unknown" in result.diagnostic
    assert report.reporting_mta == MTA
    # The original message is identified from the returned headers.
    assert report.message_id == "<order-42@shop.example>"
    assert report.postline_id == "01JNB7Y3K2QW"
    assert report.original_to == ("bob@x.example",)


def test_top_level_headers() -> None:
    raw = build()
    assert_well_formed(raw)
    msg = parse(raw)
    assert msg["From"] == f"Mail Delivery System <MAILER-DAEMON@{MTA}>"
    assert f"\r\nTo: <{SENDER}>\r\n".encode() in raw
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["MIME-Version"] == "1.0"
    assert parsedate_to_datetime(str(msg["Date"])).timestamp() == NOW
    message_id = str(msg["Message-ID"])
    assert re.fullmatch(rf"<[^<>@\s]+@{re.escape(MTA)}>", message_id)
    # A fresh id every time.
    assert parse(build())["Message-ID"] != message_id


def test_delivery_status_fields() -> None:
    raw = build()
    per_message, per_recipient = status_blocks(raw)
    assert per_message["Original-Envelope-Id"] == "01JNB7Y3K2QW"
    assert per_message["Reporting-MTA"] == f"dns; {MTA}"
    assert parsedate_to_datetime(str(per_message["Arrival-Date"])).timestamp() == ARRIVAL
    assert per_recipient["Final-Recipient"] == "rfc822; bob@x.example"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Remote-MTA"] == "dns; mx.x.example"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@x.example>: user unknown"
    last = parsedate_to_datetime(str(per_recipient["Last-Attempt-Date"]))
    assert last.timestamp() == ATTEMPT


def test_no_envelope_id_no_field() -> None:
    per_message = status_blocks(build(envelope_id=None))[0]
    assert "Original-Envelope-Id" not in per_message
    assert per_message["Reporting-MTA"] == f"dns; {MTA}"


def test_human_part_names_the_recipient_and_the_remote_reply() -> None:
    text = human_text(build())
    assert MTA in text
    assert "<bob@x.example>" in text
    assert "5.1.1" in text
    assert "mx.x.example" in text
    assert "550 5.1.1 <bob@x.example>: user unknown" in text


def test_original_headers_are_returned_with_crlf() -> None:
    lf_headers = HEADERS.replace(b"\r\n", b"\n")
    for given_headers in (HEADERS, lf_headers):
        part = parts(parse(build(headers=given_headers)))[2]
        assert part.get_payload(decode=True) == HEADERS
        assert "Content-Transfer-Encoding" not in part


def test_only_the_header_block_is_returned() -> None:
    raw = build(headers=HEADERS + b"\r\nSecret body text\r\n")
    assert b"Secret body text" not in raw
    assert parts(parse(raw))[2].get_payload(decode=True) == HEADERS


def test_delayed_recipient() -> None:
    delayed = DsnRecipient(
        "bob@x.example",
        "delayed",
        "4.2.2",
        "452 4.2.2 <bob@x.example>: mailbox full",
        "mx.x.example",
        ATTEMPT,
    )
    raw = build([delayed])
    assert_well_formed(raw)
    assert parse(raw)["Subject"] == "Delayed Mail (still being retried)"
    report = analyze(raw)
    assert report.kind == "dsn"
    assert only(report) == ("bob@x.example", "delayed", "4.2.2", Category.MAILBOX_FULL, False)
    (result,) = report.results
    assert not result.failed
    assert result.remote_mta == "mx.x.example"
    assert "still trying" in human_text(raw)


def test_expired_recipient_5_4_7() -> None:
    expired = DsnRecipient("bob@x.example", "failed", "5.4.7", "", None, ATTEMPT)
    raw = build([expired])
    assert_well_formed(raw)
    assert parse(raw)["Subject"] == "Undelivered Mail Returned to Sender"
    report = analyze(raw)
    assert only(report) == ("bob@x.example", "failed", "5.4.7", Category.EXPIRED, False)
    (block,) = status_blocks(raw)[1:]
    assert "Diagnostic-Code" not in block
    assert "Remote-MTA" not in block
    # Arrival to now is four days and a bit.
    assert "4 days" in human_text(raw)


def test_expired_recipient_with_the_last_temporary_reply() -> None:
    expired = DsnRecipient(
        "bob@x.example", "failed", "5.4.7", "421 4.4.2 mx.x.example timed out", "mx.x.example"
    )
    report = analyze(build([expired]))
    assert only(report) == ("bob@x.example", "failed", "5.4.7", Category.EXPIRED, False)
    assert report.results[0].remote_mta == "mx.x.example"


def test_multiple_recipients() -> None:
    recipients = [
        DsnRecipient("ann@x.example", "failed", "5.1.1", "550 5.1.1 no such user", "mx.x.example"),
        DsnRecipient("carl@y.example", "failed", "5.2.2", "552 5.2.2 mailbox full", "mx.y.example"),
        DsnRecipient("dan@z.example", "failed", "5.4.7", "", "mx.z.example", ATTEMPT),
        DsnRecipient("eve@w.example", "delayed", "4.2.2", "452 4.2.2 over quota", "mx.w.example"),
    ]
    raw = build(recipients)
    assert_well_formed(raw)
    # Any failure makes it a bounce, not a delay warning.
    assert parse(raw)["Subject"] == "Undelivered Mail Returned to Sender"
    blocks = status_blocks(raw)
    assert len(blocks) == 1 + len(recipients)
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        f"rfc822; {r.address}" for r in recipients
    ]
    report = analyze(raw)
    assert report.kind == "dsn"
    got = {
        r.recipient: (r.action, r.status, r.category, r.hard, r.remote_mta) for r in report.results
    }
    assert got == {
        "ann@x.example": ("failed", "5.1.1", Category.INVALID_RECIPIENT, True, "mx.x.example"),
        "carl@y.example": ("failed", "5.2.2", Category.MAILBOX_FULL, False, "mx.y.example"),
        "dan@z.example": ("failed", "5.4.7", Category.EXPIRED, False, "mx.z.example"),
        "eve@w.example": ("delayed", "4.2.2", Category.MAILBOX_FULL, False, "mx.w.example"),
    }
    assert report.postline_id == "01JNB7Y3K2QW"


def test_every_recipient_delayed_makes_a_delay_warning() -> None:
    recipients = [
        DsnRecipient("ann@x.example", "delayed", "4.4.1", "", "mx.x.example"),
        DsnRecipient("dan@z.example", "DELAYED", "4.7.1", "451 4.7.1 greylisted, try later"),
    ]
    raw = build(recipients)
    assert parse(raw)["Subject"] == "Delayed Mail (still being retried)"
    report = analyze(raw)
    assert {r.recipient: (r.action, r.hard) for r in report.results} == {
        "ann@x.example": ("delayed", False),
        "dan@z.example": ("delayed", False),
    }


NON_ASCII = "jöhn.müller@exämple.org"


def test_non_ascii_recipient_goes_as_utf_8_address_type() -> None:
    recipient = DsnRecipient(NON_ASCII, "failed", "5.1.1", "550 5.1.1 unknown user", "mx.example")
    raw = build([recipient])
    assert_well_formed(raw)
    final = str(status_blocks(raw)[1]["Final-Recipient"])
    kind, _, value = final.partition("; ")
    assert kind == "utf-8"
    assert value.isascii()
    assert unxtext(value) == NON_ASCII
    # The explanation is UTF-8 text (quoted-printable on the wire).
    assert f"<{NON_ASCII}>" in human_text(raw)
    report = analyze(raw)
    assert report.kind == "dsn"
    (result,) = report.results
    assert (result.action, result.status, result.category, result.hard) == (
        "failed",
        "5.1.1",
        Category.INVALID_RECIPIENT,
        True,
    )
    assert result.recipient is not None
    assert result.remote_mta == "mx.example"


@pytest.mark.xfail(
    strict=True,
    reason="postline.bounce.dsn.address_of does not decode the RFC 6533 utf-8 address "
    "type (\\x{HEX} escapes), and lower-cases the escapes in the domain",
)
def test_our_parser_decodes_the_utf_8_address_type() -> None:
    recipient = DsnRecipient(NON_ASCII, "failed", "5.1.1", "550 5.1.1 unknown user")
    (result,) = analyze(build([recipient])).results
    assert result.recipient == NON_ASCII


def test_xtext_escapes_the_characters_xtext_reserves() -> None:
    recipient = DsnRecipient("ö+tag=x\\y@exämple.org", "failed", "5.1.1")
    final = str(status_blocks(build([recipient]))[1]["Final-Recipient"])
    assert final == r"utf-8; \x{F6}\x{2B}tag\x{3D}x\x{5C}y@ex\x{E4}mple.org"


def test_non_ascii_diagnostic_stays_ascii_in_the_report_and_utf_8_in_the_text() -> None:
    reply = "550 5.1.1 Empfänger unbekannt"
    raw = build([DsnRecipient("bob@x.example", "failed", "5.1.1", reply)])
    assert_well_formed(raw)
    diagnostic = str(status_blocks(raw)[1]["Diagnostic-Code"])
    assert diagnostic == r"smtp; 550 5.1.1 Empf\x{E4}nger unbekannt"
    assert reply in human_text(raw)


def test_diagnostic_that_is_no_smtp_reply_is_typed_as_ours() -> None:
    recipient = DsnRecipient("bob@x.example", "delayed", "4.4.1", "connection refused")
    diagnostic = status_blocks(build([recipient]))[1]["Diagnostic-Code"]
    assert diagnostic == "x-postline; connection refused"


def test_long_diagnostic_is_folded_and_unfolds_to_the_same_text() -> None:
    reply = "550 5.7.1 " + " ".join(f"word{i}" for i in range(200))
    raw = build([DsnRecipient("bob@x.example", "failed", "5.7.1", reply, "mx.x.example")])
    assert_well_formed(raw)
    assert max(len(line) for line in raw.split(b"\r\n")) <= 78
    assert status_blocks(raw)[1]["Diagnostic-Code"] == f"smtp; {reply}"
    assert analyze(raw).results[0].status == "5.7.1"


def test_huge_diagnostic_is_cut_and_an_endless_word_is_broken() -> None:
    reply = "550 5.7.1 " + "x" * 1500 + " " + "word " * 1000
    raw = build([DsnRecipient("bob@x.example", "failed", "5.7.1", reply, "mx.x.example")])
    assert_well_formed(raw)
    diagnostic = str(status_blocks(raw)[1]["Diagnostic-Code"])
    assert diagnostic.startswith("smtp; 550 5.7.1 xxx")
    assert diagnostic.endswith("...")
    assert len(diagnostic) < 2100
    assert analyze(raw).results[0].status == "5.7.1"


# --- hostile input --------------------------------------------------------------------------

INJECTION = "\r\nX-Injected: yes\r\n\r\n--boundary\r\nContent-Type: text/html\r\n\r\n<b>x</b>"


def all_header_names(raw: bytes) -> set[str]:
    """Every header name the stdlib sees: the message, its parts, the status blocks."""
    msg = parse(raw)
    names = {k.lower() for k in msg}
    for part in msg.walk():
        names |= {k.lower() for k in part}
    for block in status_blocks(raw):
        names |= {k.lower() for k in block}
    return names


def test_crlf_in_the_diagnostic_cannot_inject_anything() -> None:
    recipient = DsnRecipient(
        "bob@x.example", "failed", "5.1.1", "550 5.1.1 user unknown" + INJECTION, "mx.x.example"
    )
    raw = build([recipient])
    assert_well_formed(raw)
    assert "x-injected" not in all_header_names(raw)
    assert b"\r\nX-Injected" not in raw
    assert b"\r\n--boundary" not in raw
    assert len(status_blocks(raw)) == 2
    report = analyze(raw)
    assert only(report) == (
        "bob@x.example",
        "failed",
        "5.1.1",
        Category.INVALID_RECIPIENT,
        True,
    )
    assert report.results[0].remote_mta == "mx.x.example"


def test_crlf_in_address_and_remote_mta_cannot_inject_anything() -> None:
    recipient = DsnRecipient(
        "bob@x.example" + INJECTION,
        "failed",
        "5.1.1",
        "550 5.1.1 user unknown",
        "mx.x.example" + INJECTION,
    )
    raw = build([recipient], mail_from=SENDER + "\r\n")
    assert_well_formed(raw)
    assert "x-injected" not in all_header_names(raw)
    assert b"\r\nX-Injected" not in raw
    assert len(status_blocks(raw)) == 2
    # A remote MTA name that is no host name is left out rather than mangled.
    assert "Remote-MTA" not in status_blocks(raw)[1]
    assert f"\r\nTo: <{SENDER}>\r\n".encode() in raw
    (result,) = analyze(raw).results
    assert result.recipient == "bob@x.example"


def test_control_characters_are_replaced_by_spaces() -> None:
    nasty = "550\x005.1.1\tuser\x0bunknown\x85now\u2028here\x1b[31m"
    raw = build([DsnRecipient("bob@x.example", "failed", "5.1.1", nasty)])
    assert_well_formed(raw)
    diagnostic = status_blocks(raw)[1]["Diagnostic-Code"]
    assert diagnostic == "smtp; 550 5.1.1 user unknown now here [31m"


def test_sender_with_crlf_inside_is_refused() -> None:
    with pytest.raises(ValueError):
        build(mail_from="ann@shop.example\r\nBcc: victim@example.com")


def test_8bit_utf_8_original_headers_go_quoted_printable() -> None:
    headers = (
        "From: Jürgen <jürgen@shop.example>\nSubject: Grüße\n"
        "Message-ID: <utf8@shop.example>\nX-Postline-ID: 01JUTF8\n"
    ).encode()
    raw = build(headers=headers)
    assert_well_formed(raw)
    part = parts(parse(raw))[2]
    assert part["Content-Transfer-Encoding"] == "quoted-printable"
    assert part.get_content_charset() == "utf-8"
    assert part.get_payload(decode=True) == headers.replace(b"\n", b"\r\n")
    report = analyze(raw)
    assert (report.message_id, report.postline_id) == ("<utf8@shop.example>", "01JUTF8")


def test_8bit_legacy_original_headers_keep_their_octets() -> None:
    headers = b"Subject: caf\xe9 cr\xe8me\r\nX-Odd: a\rb\x00c\r\nMessage-ID: <l1@shop.example>\r\n"
    raw = build(headers=headers)
    assert_well_formed(raw)
    part = parts(parse(raw))[2]
    assert part.get_content_charset() == "unknown-8bit"
    assert part.get_payload(decode=True) == headers
    assert analyze(raw).message_id == "<l1@shop.example>"


def test_overlong_original_header_line_is_wrapped_by_the_encoding() -> None:
    headers = b"X-Long: " + b"a" * 3000 + b"\r\nMessage-ID: <long@shop.example>\r\n"
    raw = build(headers=headers)
    assert_well_formed(raw)
    assert parts(parse(raw))[2].get_payload(decode=True) == headers


def test_international_sender_domain_goes_as_a_label() -> None:
    raw = build(mail_from="<ann@bücher.example>")
    assert_well_formed(raw)
    assert b"\r\nTo: <ann@xn--bcher-kva.example>\r\n" in raw


def test_utf_8_sender_local_part_is_written_as_utf_8() -> None:
    # No 7-bit form exists for it; such a DSN travels over SMTPUTF8 only (RFC 6532).
    raw = build(mail_from="jürgen@shop.example")
    assert_well_formed(raw, seven_bit_headers=False)
    assert "To: <jürgen@shop.example>\r\n".encode() in raw


def test_text_headers_use_rfc_2047_for_non_ascii() -> None:
    assert _text_header("Undelivered Mail") == "Undelivered Mail"
    encoded = _text_header("Unzustellbare Nachricht – Rückläufer")
    assert encoded.isascii()
    assert encoded.startswith("=?utf-8?")
    assert str(email.header.make_header(email.header.decode_header(encoded))) == (
        "Unzustellbare Nachricht – Rückläufer"
    )


@settings(max_examples=150, deadline=None)
@given(
    address=st.text(min_size=1, max_size=80).filter(lambda s: s.strip("\x00\t\n\r <>")),
    diagnostic=st.text(max_size=600),
    remote=st.one_of(st.none(), st.text(max_size=40)),
    action=st.sampled_from(["failed", "delayed"]),
)
def test_no_input_breaks_the_structure(
    address: str, diagnostic: str, remote: str | None, action: str
) -> None:
    recipient = DsnRecipient(address, action, "5.0.0", diagnostic, remote, ATTEMPT)
    try:
        raw = build([recipient, USER_UNKNOWN])
    except ValueError:
        return  # an address of nothing but controls and spaces is refused
    assert_well_formed(raw)
    blocks = status_blocks(raw)
    assert len(blocks) == 3
    expected = {"final-recipient", "action", "status", "remote-mta", "diagnostic-code"}
    expected |= {"last-attempt-date"}
    assert {k.lower() for k in blocks[1]} <= expected
    head = parse(raw)
    assert sorted(k.lower() for k in head) == sorted(
        [
            "from",
            "to",
            "subject",
            "date",
            "message-id",
            "auto-submitted",
            "mime-version",
            "content-type",
        ]
    )
    assert analyze(raw).kind == "dsn"


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=120),
            st.sampled_from([b"\r\n", b"\n", b"\r", b"\x00", b"\xff", b"--", b"=", b" "]),
        ),
        max_size=30,
    ).map(b"".join)
)
def test_any_original_header_bytes_are_returned_intact(headers: bytes) -> None:
    raw = build(headers=headers)
    assert_well_formed(raw)
    # The header block: line ends made CRLF, cut at the first empty line.
    block = headers.replace(b"\r\n", b"\n").lstrip(b"\n").split(b"\n\n", 1)[0].rstrip(b"\n")
    expected = b"".join(line + b"\r\n" for line in block.split(b"\n")) if block else b""
    assert parts(parse(raw))[2].get_payload(decode=True) == expected


# --- refusals -------------------------------------------------------------------------------


def test_no_recipients_is_an_error() -> None:
    with pytest.raises(ValueError, match="recipient"):
        build([])


@pytest.mark.parametrize(
    "reporting_mta",
    [
        "",
        " ",
        "mta 1.example.net",
        "mta1.example.net\r\nX-Injected: yes",
        "mta1\x00.example.net",
        "-mta.example.net",
        "mta..example.net",
        "mta_1.example.net",
        "192.0.2.1",
        "[192.0.2.1]",
        "a" * 64 + ".example.net",
        "<mta1.example.net>",
    ],
)
def test_invalid_reporting_mta_is_an_error(reporting_mta: str) -> None:
    with pytest.raises(ValueError, match="host name"):
        build(reporting_mta=reporting_mta)


def test_reporting_mta_is_normalised() -> None:
    raw = build(reporting_mta="MTA1.Example.NET.")
    assert parse(raw)["From"] == "Mail Delivery System <MAILER-DAEMON@mta1.example.net>"
    raw = build(reporting_mta="mta.bücher.example")
    assert status_blocks(raw)[0]["Reporting-MTA"] == "dns; mta.xn--bcher-kva.example"


@pytest.mark.parametrize("mail_from", ["", "<>", " <> ", "no-at-sign", "a@", "@b.example"])
def test_a_dsn_needs_a_mailbox_to_go_to(mail_from: str) -> None:
    with pytest.raises(ValueError, match="mailbox"):
        build(mail_from=mail_from)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("action", "delivered"),
        ("action", "bounced"),
        ("status", "550"),
        ("status", "5.1"),
        ("status", "6.1.1"),
        ("status", "5.1.1\r\nX-Injected: yes"),
        ("address", " \r\n "),
        ("last_attempt", float("nan")),
        ("last_attempt", 1e300),
    ],
)
def test_invalid_recipient_fields_are_errors(field: str, value: object) -> None:
    fields: dict[str, object] = {
        "address": "bob@x.example",
        "action": "failed",
        "status": "5.1.1",
        field: value,
    }
    recipient = DsnRecipient(**fields)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        build([recipient])


def test_status_is_normalised() -> None:
    recipient = DsnRecipient("bob@x.example", " Failed ", "5.01.001 ")
    block = status_blocks(build([recipient]))[1]
    assert (block["Action"], block["Status"]) == ("failed", "5.1.1")


# --- should_notify --------------------------------------------------------------------------


def test_notifies_an_smtp_sender() -> None:
    assert should_notify("ann@shop.example", source="smtp")
    assert should_notify("<ann@shop.example>", source="smtp", headers=HEADERS)
    assert should_notify("jürgen@bücher.example", source="smtp")


@pytest.mark.parametrize("source", ["api", "dsn", "SMTP", ""])
def test_only_smtp_submissions_are_notified(source: str) -> None:
    assert not should_notify("ann@shop.example", source=source, headers=HEADERS)


@pytest.mark.parametrize("mail_from", ["", "<>", " <> ", "  ", "not an address", "ann@"])
def test_never_to_the_null_sender_or_a_non_mailbox(mail_from: str) -> None:
    assert not should_notify(mail_from, source="smtp", headers=HEADERS)


@pytest.mark.parametrize(
    "mail_from",
    [
        "MAILER-DAEMON@mx.example.com",
        "<mailer-daemon@mx.example.com>",
        "Mailer_Daemon@mx.example.com",
        "mailerdaemon@mx.example.com",
        "postmaster@example.com",
        "Postmaster+bounces@example.com",
        '"MAILER-DAEMON"@example.com',
    ],
)
def test_never_to_a_mailer_daemon(mail_from: str) -> None:
    assert not should_notify(mail_from, source="smtp")


@pytest.mark.parametrize(
    "headers",
    [
        b'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="b1"\r\n',
        b"content-type: Multipart/Report; report-type=disposition-notification\n",
        b"Auto-Submitted: auto-replied\r\n",
        b"Auto-Submitted: auto-generated\r\n",
        b"Auto-Submitted: Auto-Notified; owner-email=x@example.com\r\n",
        b"Auto-Submitted: \r\n",
        b"Auto-Submitted: no\r\nAuto-Submitted: auto-generated\r\n",
    ],
)
def test_never_about_a_report_or_an_automatic_message(headers: bytes) -> None:
    assert not should_notify("ann@shop.example", source="smtp", headers=HEADERS + headers)


@pytest.mark.parametrize(
    "headers",
    [
        b"Auto-Submitted: no\r\n",
        b"Auto-Submitted: No (a person wrote this)\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n",
        b"Subject: your report\r\n",
        b"",
    ],
)
def test_ordinary_messages_are_notified(headers: bytes) -> None:
    assert should_notify("ann@shop.example", source="smtp", headers=HEADERS + headers)
