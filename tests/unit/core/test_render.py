"""Message rendering and raw fix-ups: correct MIME, no header injection."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.utils import formataddr

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postline.ingest.render import (
    HeaderInjection,
    _fold,
    fix_raw,
    format_address,
    header_line,
    render_message,
)


def render(**kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "message_id": "<id@acme.test>",
        "date": 1_800_000_000.0,
        "from_": ("ann@acme.test", "Ann"),
        "to": [("bob@example.test", None)],
        "subject": "Hello",
        "text": "Hi Bob",
    }
    args.update(kw)
    return render_message(**args)  # type: ignore[arg-type]


def test_plain_message_parses_back() -> None:
    m = render()
    parsed = message_from_bytes(m.body, policy=policy.default)
    assert parsed["From"] == "Ann <ann@acme.test>"
    assert parsed["Message-ID"] == "<id@acme.test>"
    assert parsed.get_content().strip() == "Hi Bob"
    assert b"\r\n" in m.body and b"\n" not in m.body.replace(b"\r\n", b"")


def test_alternative_parts_and_encoding() -> None:
    m = render(text="Grüße " * 300, html="<p>Grüße</p>", subject="Grüße ✓")
    parsed = message_from_bytes(m.body, policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().startswith("Grüße")
    assert parsed["Subject"] == "Grüße ✓"
    assert all(len(line) <= 998 for line in m.body.split(b"\r\n"))
    assert m.body.isascii()


@given(st.text(min_size=1, max_size=200))
def test_subject_round_trips_or_is_refused(subject: str) -> None:
    try:
        m = render(subject=subject)
    except HeaderInjection:
        assert any(c in subject for c in "\r\n\x00")
        return
    parsed = message_from_bytes(m.body, policy=policy.default)
    headers = [k.lower() for k in parsed]
    assert headers.count("subject") == 1
    assert "bcc" not in headers


@pytest.mark.parametrize("value", ["a\r\nBcc: x@y.test", "a\nX: y", "a\rX: y", "a\x00"])
def test_header_injection_is_impossible(value: str) -> None:
    with pytest.raises(HeaderInjection):
        header_line("X-Custom", value)
    with pytest.raises(HeaderInjection):
        render(subject=value)
    with pytest.raises(HeaderInjection):
        render(from_=("ann@acme.test", value))


def test_fix_raw_adds_missing_headers_and_strips_bcc() -> None:
    raw = b"From: a@acme.test\nBcc: secret@x.test,\n  other@x.test\nSubject: s\n\nline\n"
    body, mid = fix_raw(raw, message_id="<new@acme.test>", date=0.0, postline_id="P1")
    assert mid == "<new@acme.test>"
    assert b"secret" not in body and b"other@x.test" not in body
    assert body.startswith(b"X-Postline-ID: P1\r\n")
    assert b"Message-ID: <new@acme.test>\r\n" in body
    assert b"\r\n\r\nline\r\n" in body
    kept, mid2 = fix_raw(
        b"Message-ID: <old@a.test>\r\nDate: x\r\n\r\nb\r\n", message_id="<n@a>", date=0
    )
    assert mid2 == "<old@a.test>"
    assert kept.count(b"Message-ID") == 1
    with pytest.raises(ValueError, match="header"):
        fix_raw(b"no headers here at all\r\n", message_id="<n@a>", date=0)


def test_fix_raw_adds_mime_version_unless_signed() -> None:
    added, _ = fix_raw(b"From: a@acme.test\r\n\r\nb\r\n", message_id="<n@a>", date=0)
    assert added.count(b"MIME-Version: 1.0\r\n") == 1
    given, _ = fix_raw(b"MIME-Version: 1.0\r\n\r\nb\r\n", message_id="<n@a>", date=0)
    assert given.lower().count(b"mime-version") == 1
    signed = b"DKIM-Signature: v=1; a=rsa-sha256; d=a.test; h=from:mime-version; b=x\r\n"
    kept, _ = fix_raw(signed + b"From: a@a.test\r\n\r\nb\r\n", message_id="<n@a>", date=0)
    assert b"MIME-Version" not in kept  # a new header would break the signature


def test_no_line_exceeds_998_characters() -> None:
    m = render(subject="x" * 998, headers=[("X-Many", " ".join(["word"] * 600))])
    assert all(len(line) <= 998 for line in m.body.split(b"\r\n"))
    parsed = message_from_bytes(m.body, policy=policy.default)
    assert parsed["Subject"] == "x" * 998


@pytest.mark.parametrize(("length", "encoding"), [(996, b"7bit"), (997, b"quoted-printable")])
def test_a_text_line_of_997_characters_is_quoted_printable(length: int, encoding: bytes) -> None:
    # 996 characters and CRLF make a line of 998, the most a 7bit part may carry.
    m = render(text="a\n" + "x" * length + "\nb")
    assert b"Content-Transfer-Encoding: " + encoding + b"\r\n" in m.body
    assert all(len(line) <= 998 for line in m.body.split(b"\r\n"))


@given(
    address=st.from_regex(r"[a-z0-9.+_-]{1,20}@[a-z0-9.-]{1,20}", fullmatch=True),
    name=st.one_of(
        st.none(),
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"),
            max_size=30,
        ),
    ),
)
def test_addresses_are_formatted_as_formataddr_does(address: str, name: str | None) -> None:
    expected = (formataddr((name or "", address), "utf-8"), False)
    assert format_address(address, name) == expected
    assert format_address(address, name) == expected  # and again, from the cache


def _fold_reference(name: str, value: str) -> str:
    """Folding as first written: a line is broken before a word that would take it past
    78 characters, unless it holds nothing but the name and white space."""
    line = f"{name}: {value}"
    if len(line) <= 78:
        return line
    out: list[str] = []
    current = f"{name}:"
    for word in value.split(" "):
        if len(current) + 1 + len(word) > 78 and current.strip() not in (f"{name}:", ""):
            out.append(current)
            current = " " + word
        else:
            current = f"{current} {word}"
    out.append(current)
    return "\r\n".join(out)


@given(
    name=st.sampled_from(["To", "Subject", "X-A-Rather-Long-Header-Name"]),
    words=st.lists(st.sampled_from(["", " ", "\t", "a", "word", "x" * 30, "y" * 90]), max_size=40),
)
def test_folding_breaks_lines_where_it_always_did(name: str, words: list[str]) -> None:
    value = " ".join(words)
    assert _fold(name, value) == _fold_reference(name, value)
