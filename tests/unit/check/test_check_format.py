"""The header, MIME, line-length and size checks of the pre-flight check, on messages
written here by hand."""

from __future__ import annotations

import base64
from email.utils import formatdate

import pytest

from postline.check import Finding, check_format, is_bulk_stream
from postline.config import load_config

LIMIT = 1_000_000


def message(*headers: str, body: str | bytes = "Hello.\r\n", date: bool = True) -> bytes:
    base = [
        "From: Shop <orders@shop.test>",
        "To: ann@inbox.test",
        "Subject: Your order",
        "Message-ID: <1234@shop.test>",
    ]
    if date:
        base.append(f"Date: {formatdate(usegmt=True)}")
    names = {h.split(":", 1)[0].lower() for h in headers}
    kept = [h for h in base if h.split(":", 1)[0].lower() not in names]
    head = "\r\n".join([*kept, *headers]) + "\r\n\r\n"
    data = body.encode() if isinstance(body, str) else body
    return head.encode() + data


def run(data: bytes, limit: int = LIMIT) -> list[Finding]:
    return check_format(data, max_size=limit)


def by_check(findings: list[Finding], name: str) -> list[Finding]:
    return [f for f in findings if f.check == name]


def statuses(findings: list[Finding], name: str) -> set[str]:
    return {f.status for f in by_check(findings, name)}


def errors(findings: list[Finding]) -> set[str]:
    return {f.check for f in findings if f.status == "error"}


def test_a_plain_correct_message_has_no_error_or_warning() -> None:
    found = run(message())
    assert {f.status for f in found} == {"ok"}, [f for f in found if f.status != "ok"]
    assert {f.check for f in found} >= {
        "from",
        "date",
        "message_id",
        "recipients_header",
        "subject",
        "duplicate_headers",
        "mime",
        "line_length",
        "size",
    }


def test_a_multipart_alternative_message_is_sound() -> None:
    body = (
        "--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
        "--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hello</p>\r\n--b1--\r\n"
    )
    found = run(
        message(
            "MIME-Version: 1.0",
            'Content-Type: multipart/alternative; boundary="b1"',
            body=body,
        )
    )
    assert {f.status for f in found} == {"ok"}, [f for f in found if f.status != "ok"]
    assert statuses(found, "text_alternative") == {"ok"}


@pytest.mark.parametrize(
    ("header", "needle"),
    [
        ("From: <<<nobody", "not a usable address"),
        ("From: a@shop.test, b@shop.test", "2 addresses"),
        ("From: undisclosed:;", "not a usable address"),
    ],
)
def test_from_must_name_one_address(header: str, needle: str) -> None:
    (finding,) = by_check(run(message(header)), "from")
    assert finding.status == "error" and needle in finding.message
    assert finding.fix


def test_missing_from_date_and_message_id_are_errors() -> None:
    data = b"To: ann@inbox.test\r\nSubject: hi\r\n\r\nbody\r\n"
    found = run(data)
    assert errors(found) == {"from", "date", "message_id"}
    assert all(f.fix for f in found if f.status == "error")


def test_bad_date_and_message_id() -> None:
    found = run(message("Date: yesterday-ish", "Message-ID: 1234-at-shop"))
    assert errors(found) == {"date", "message_id"}


def test_a_date_far_off_is_a_warning() -> None:
    found = run(message("Date: Mon, 01 Jan 2001 00:00:00 +0000"))
    assert statuses(found, "date") == {"warning"}
    assert "DATE_IN_PAST" in by_check(found, "date")[0].message


def test_date_with_unknown_zone_is_fine() -> None:
    # postline writes "-0000" itself (email.utils.formatdate): UTC, zone unknown.
    assert statuses(run(message(f"Date: {formatdate()}")), "date") == {"ok"}


def test_no_to_or_cc_and_no_subject_are_warnings() -> None:
    data = (
        f"From: a@shop.test\r\nDate: {formatdate()}\r\nMessage-ID: <x@shop.test>\r\n\r\nhi\r\n"
    ).encode()
    found = run(data)
    assert statuses(found, "recipients_header") == {"warning"}
    assert statuses(found, "subject") == {"warning"}
    assert not errors(found)
    assert statuses(run(message("Subject:  ")), "subject") == {"warning"}


def test_mime_version_is_required_when_mime_is_used() -> None:
    found = run(message("Content-Type: text/plain; charset=utf-8"))
    assert statuses(found, "mime_version") == {"error"}
    assert statuses(
        run(message("MIME-Version: 1.0", "Content-Type: text/plain")), "mime_version"
    ) == {"ok"}
    # Plain RFC 5322 text without MIME needs none.
    assert not by_check(run(message()), "mime_version")


def with_header(data: bytes, line: str) -> bytes:
    head, body = data.split(b"\r\n\r\n", 1)
    return head + b"\r\n" + line.encode() + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("From", "other@shop.test"),
        ("To", "bob@inbox.test"),
        ("Subject", "again"),
        ("Date", "Fri, 27 Nov 2026 10:00:00 +0000"),
        ("Message-ID", "<5678@shop.test>"),
        ("Reply-To", "help@shop.test"),
        ("Content-Type", "text/plain"),
    ],
)
def test_single_instance_headers_given_twice_are_errors(name: str, value: str) -> None:
    data = message("MIME-Version: 1.0", f"{name}: {value}")
    data = with_header(data, f"{name}: {value}")
    dups = [f for f in by_check(run(data), "duplicate_headers") if f.status == "error"]
    assert len(dups) == 1
    assert dups[0].message.startswith(f"{name} appears 2 times")


def test_repeatable_headers_are_not_duplicates() -> None:
    found = run(message("Received: from a by b", "Received: from c by d", "X-Tag: 1", "X-Tag: 2"))
    assert statuses(found, "duplicate_headers") == {"ok"}


def test_header_line_without_colon() -> None:
    found = run(with_header(message(), "this is not a header"))
    assert "header_syntax" in errors(found)


def test_raw_8bit_in_headers_is_a_warning() -> None:
    found = run(with_header(message(), "X-Greeting: Grüße"))
    assert "warning" in statuses(found, "header_syntax")


def test_multipart_without_boundary() -> None:
    found = run(message("MIME-Version: 1.0", "Content-Type: multipart/mixed", body="hello\r\n"))
    (finding,) = [f for f in by_check(found, "mime") if f.status == "error"]
    assert "without a boundary" in finding.message
    assert "boundary" in finding.fix


def test_multipart_whose_boundary_never_appears() -> None:
    found = run(
        message(
            "MIME-Version: 1.0",
            "Content-Type: multipart/mixed; boundary=zz",
            body="no parts here\r\n",
        )
    )
    assert "error" in statuses(found, "mime")


def test_multipart_with_a_missing_closing_boundary_is_a_warning() -> None:
    body = "--b1\r\nContent-Type: text/plain\r\n\r\nHello\r\n"
    found = run(
        message("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b1", body=body)
    )
    mime = by_check(found, "mime")
    assert [f.status for f in mime] == ["warning"], mime


def test_unknown_transfer_encoding_is_an_error() -> None:
    found = run(
        message(
            "MIME-Version: 1.0",
            "Content-Type: text/plain",
            "Content-Transfer-Encoding: x-rot13",
        )
    )
    (finding,) = [f for f in by_check(found, "mime") if f.status == "error"]
    assert "x-rot13" in finding.message


def test_8bit_body_without_8bit_encoding_is_a_warning() -> None:
    body = "Grüße\r\n".encode()
    plain = run(message("MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", body=body))
    assert statuses(plain, "mime") == {"warning"}
    declared = run(
        message(
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: 8bit",
            body=body,
        )
    )
    assert statuses(declared, "mime") == {"ok"}


def test_bad_base64_is_reported() -> None:
    found = run(
        message(
            "MIME-Version: 1.0",
            "Content-Type: text/plain",
            "Content-Transfer-Encoding: base64",
            body="SGVsbG8*gd29y!bGQ\r\n",
        )
    )
    assert "warning" in statuses(found, "mime")


def test_html_without_text_alternative_is_a_warning() -> None:
    found = run(message("MIME-Version: 1.0", "Content-Type: text/html", body="<p>hi</p>\r\n"))
    assert statuses(found, "text_alternative") == {"warning"}
    assert not errors(found)


def test_html_over_gmails_clip_size_is_a_warning() -> None:
    html = base64.encodebytes(b"<p>" + b"x" * 120_000 + b"</p>").decode().replace("\n", "\r\n")
    body = (
        "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n"
        "--b\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        f"{html}--b--\r\n"
    )
    found = run(
        message("MIME-Version: 1.0", "Content-Type: multipart/alternative; boundary=b", body=body)
    )
    assert statuses(found, "html_size") == {"warning"}
    assert "102 KB" in by_check(found, "html_size")[0].message


def test_an_attached_html_file_is_not_the_body() -> None:
    body = (
        "--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
        "--b\r\nContent-Type: text/html\r\nContent-Disposition: attachment; filename=a.html\r\n"
        "\r\n<p>x</p>\r\n--b--\r\n"
    )
    found = run(
        message("MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b", body=body)
    )
    assert not by_check(found, "text_alternative")


def test_lines_over_998_octets_are_errors() -> None:
    found = run(message(body="x" * 1200 + "\r\nshort\r\n" + "y" * 999 + "\r\n"))
    (finding,) = by_check(found, "line_length")
    assert finding.status == "error"
    assert "2 line(s)" in finding.message and "1200 octets" in finding.message
    assert "in the body" in finding.message
    assert statuses(run(message(body="x" * 998 + "\r\n")), "line_length") == {"ok"}
    long_header = run(message("X-Long: " + "h" * 1000))
    assert "in the header" in by_check(long_header, "line_length")[0].message


def test_size_against_the_limit() -> None:
    data = message(body="x" * 500 + "\r\n")
    assert statuses(run(data, limit=len(data)), "size") == {"ok"}
    (finding,) = by_check(run(data, limit=len(data) - 1), "size")
    assert finding.status == "error" and "max_message_size" in finding.message


def test_the_broken_message_of_the_brief_has_every_error() -> None:
    data = (
        b"From: a@shop.test\r\nFrom: b@shop.test\r\nTo: x@inbox.test\r\nSubject: s\r\n"
        + f"Date: {formatdate()}\r\nMessage-ID: <m@shop.test>\r\n".encode()
        + b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n"
        + b"z" * 1200
        + b"\r\n"
    )
    assert errors(run(data)) == {"duplicate_headers", "mime", "line_length"}


def test_a_message_that_is_all_garbage_does_not_crash() -> None:
    for data in (b"", b"\r\n\r\n", b"\x00\xff\xfe", b":\r\n:::\r\n\r\n", b" folded\r\n\r\nx"):
        found = run(data)
        assert "from" in errors(found)


def test_bulk_streams() -> None:
    config = load_config(text="", environ={})
    assert is_bulk_stream("marketing", config)
    assert is_bulk_stream("newsletter", config)
    assert is_bulk_stream("spring-promo", config)
    assert not is_bulk_stream("transactional", config)
    assert not is_bulk_stream("receipts", config)
    custom = load_config(text='[domains]\nlist_unsubscribe_streams = ["weekly"]', environ={})
    assert is_bulk_stream("weekly", custom)
