"""Pure wire helpers: reply parsing, dot-stuffing, EHLO parsing, command encoding."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postline.model import Reply
from postline.smtp.wire import (
    REPLY_LINE_LIMIT,
    ReplyParser,
    SMTPProtocolError,
    dot_stuff,
    is_8bit,
    is_safe_address,
    mail_command,
    needs_smtputf8,
    parse_ehlo,
    parse_reply_line,
    rcpt_command,
)

# --- reply lines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"250 OK\r\n", (250, True, "OK")),
        (b"250-PIPELINING\r\n", (250, False, "PIPELINING")),
        (b"550 5.1.1 no such user\n", (550, True, "5.1.1 no such user")),
        (b"220", (220, True, "")),
        (b"354 \r\n", (354, True, "")),
        (b"421-\r\n", (421, False, "")),
        (b"250 caf\xc3\xa9\r\n", (250, True, "café")),
        (b"250 bad \xff byte\r\n", (250, True, "bad \ufffd byte")),
    ],
)
def test_parse_reply_line(line: bytes, expected: tuple[int, bool, str]) -> None:
    assert parse_reply_line(line) == expected


@pytest.mark.parametrize(
    "line",
    [b"", b"25", b"abc OK", b"2x0 OK", b"150 old", b"600 nope", b"250_OK", b"250\tOK", b" 250 OK"],
)
def test_parse_reply_line_rejects_garbage(line: bytes) -> None:
    with pytest.raises(SMTPProtocolError) as info:
        parse_reply_line(line)
    assert info.value.reply.synthetic
    assert info.value.reply.code == 421
    assert info.value.reply.enhanced == "4.5.0"


@given(st.binary(max_size=64))
def test_parse_reply_line_never_crashes(line: bytes) -> None:
    try:
        code, _, text = parse_reply_line(line)
    except SMTPProtocolError:
        return
    assert 200 <= code <= 599
    assert isinstance(text, str)


# --- reply parser ---------------------------------------------------------------------


def test_parser_multiline_reply_with_enhanced_codes() -> None:
    parser = ReplyParser()
    parser.expect("RCPT TO")
    replies = parser.feed(b"550-5.1.1 The email account does not exist.\r\n550 5.1.1 Try again\r\n")
    assert replies == [
        Reply(550, "The email account does not exist.\nTry again", "5.1.1", "RCPT TO")
    ]
    assert parser.pending == 0


def test_parser_labels_pipelined_replies_in_order() -> None:
    parser = ReplyParser()
    for command in ("MAIL FROM", "RCPT TO", "RCPT TO", "DATA"):
        parser.expect(command)
    replies = parser.feed(b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n452 4.2.2 full\r\n354 go ahead\r\n")
    assert [(r.code, r.command) for r in replies] == [
        (250, "MAIL FROM"),
        (250, "RCPT TO"),
        (452, "RCPT TO"),
        (354, "DATA"),
    ]
    assert replies[2].enhanced == "4.2.2"


def test_parser_keeps_partial_lines_between_chunks() -> None:
    parser = ReplyParser()
    parser.expect("EHLO")
    assert parser.feed(b"250-mx.example\r\n250-SIZE 10") == []
    assert parser.buffered
    assert parser.feed(b"00\r\n250 PIPEL") == []
    [reply] = parser.feed(b"INING\r\n")
    assert reply.text == "mx.example\nSIZE 1000\nPIPELINING"
    assert not parser.buffered


def test_parser_unsolicited_reply_has_no_command() -> None:
    parser = ReplyParser()
    [reply] = parser.feed(b"421 4.4.2 idle timeout\r\n")
    assert reply.command == ""
    assert reply.code == 421


def test_parser_rejects_code_change_inside_multiline() -> None:
    parser = ReplyParser()
    parser.expect("EHLO")
    with pytest.raises(SMTPProtocolError) as info:
        parser.feed(b"250-mx.example\r\n251 PIPELINING\r\n")
    assert info.value.command == "EHLO"
    assert "multi-line" in info.value.reply.text


def test_parser_rejects_over_long_lines() -> None:
    parser = ReplyParser()
    with pytest.raises(SMTPProtocolError):
        parser.feed(b"250 " + b"x" * REPLY_LINE_LIMIT)
    parser = ReplyParser()
    with pytest.raises(SMTPProtocolError):
        parser.feed(b"250 " + b"x" * REPLY_LINE_LIMIT + b"\r\n")


def test_parser_rejects_endless_multiline_replies() -> None:
    parser = ReplyParser(lines_limit=3)
    parser.feed(b"250-a\r\n250-b\r\n250-c\r\n")
    with pytest.raises(SMTPProtocolError):
        parser.feed(b"250-d\r\n")


def test_parser_rejects_garbage_line_naming_the_command() -> None:
    parser = ReplyParser()
    parser.expect("MAIL FROM")
    with pytest.raises(SMTPProtocolError) as info:
        parser.feed(b"HTTP/1.1 400 Bad Request\r\n")
    assert info.value.command == "MAIL FROM"
    assert str(info.value).startswith("MAIL FROM: 421 4.5.0 malformed reply")


_reply_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r\n"),
    max_size=30,
)
_replies = st.lists(
    st.tuples(st.integers(200, 599), st.lists(_reply_text, min_size=1, max_size=4)),
    min_size=1,
    max_size=6,
)


def _encode(replies: list[tuple[int, list[str]]]) -> bytes:
    out = b""
    for code, lines in replies:
        for i, line in enumerate(lines):
            sep = " " if i == len(lines) - 1 else "-"
            out += f"{code}{sep}{line}\r\n".encode()
    return out


@given(_replies, st.lists(st.integers(0, 400), max_size=8))
def test_parser_is_independent_of_chunking(
    replies: list[tuple[int, list[str]]], cuts: list[int]
) -> None:
    wire = _encode(replies)
    whole = ReplyParser().feed(wire)
    assert [r.code for r in whole] == [code for code, _ in replies]
    for got, (code, lines) in zip(whole, replies, strict=True):
        assert got == Reply.from_lines(code, lines)
    parser = ReplyParser()
    pieces: list[Reply] = []
    points = sorted({min(c, len(wire)) for c in cuts} | {0, len(wire)})
    for a, b in itertools.pairwise(points):
        pieces.extend(parser.feed(wire[a:b]))
    assert pieces == whole
    assert not parser.buffered


@given(st.lists(st.binary(max_size=40), max_size=6))
def test_parser_fuzz_only_raises_protocol_errors(chunks: list[bytes]) -> None:
    parser = ReplyParser()
    codes: list[int] = []
    try:
        for chunk in chunks:
            codes.extend(reply.code for reply in parser.feed(chunk))
    except SMTPProtocolError as exc:
        error: SMTPProtocolError | None = exc
    else:
        error = None
    assert all(200 <= code <= 599 for code in codes)
    assert error is None or error.reply.synthetic


# --- dot-stuffing ---------------------------------------------------------------------


def _unstuff(payload: bytes) -> bytes:
    """What a receiving server stores: the inverse of RFC 5321 4.5.2 transparency."""
    assert payload.endswith(b".\r\n")
    body = payload[: -len(b".\r\n")]
    if not body:
        return b""
    assert body.endswith(b"\r\n")
    lines = body[:-2].split(b"\r\n")
    return b"".join((ln[1:] if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)


def _reference_normalise(data: bytes) -> bytes:
    lines = re.split(rb"\r\n|\r|\n", data)
    if lines[-1] == b"":
        lines.pop()
    return b"".join(ln + b"\r\n" for ln in lines)


@pytest.mark.parametrize(
    ("data", "payload"),
    [
        (b"", b".\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"a", b"a\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b"a\r\n.\r\nb\r\n", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"..x\r\n.", b"...x\r\n..\r\n.\r\n"),
        (b"a\nb\n", b"a\r\nb\r\n.\r\n"),
        (b"a\rb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),
        (b"x\r\r\n", b"x\r\n\r\n.\r\n"),
        (b"x\r.\r\n", b"x\r\n..\r\n.\r\n"),
    ],
)
def test_dot_stuff_examples(data: bytes, payload: bytes) -> None:
    assert dot_stuff(data) == payload


_crlf_message = st.lists(
    st.binary(max_size=20).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    max_size=12,
).map(lambda lines: b"".join(ln + b"\r\n" for ln in lines))


@given(_crlf_message)
def test_dot_stuff_round_trips_crlf_messages(data: bytes) -> None:
    assert _unstuff(dot_stuff(data)) == data


@given(
    st.binary(max_size=200) | st.lists(st.sampled_from([b".", b"\r", b"\n", b"a"])).map(b"".join)
)
def test_dot_stuff_properties_on_any_bytes(data: bytes) -> None:
    payload = dot_stuff(data)
    assert payload.endswith(b".\r\n")
    body = payload[:-3]
    # Only the terminator can look like an end of data, and no bare CR or LF survives.
    assert b"\r\n.\r\n" not in b"\r\n" + body
    assert body.count(b"\r") == body.count(b"\n") == body.count(b"\r\n")
    assert not body or body.endswith(b"\r\n")
    assert _unstuff(payload) == _reference_normalise(data)


def test_dot_stuff_big_message_is_fast() -> None:
    import time

    data = (b"." + b"x" * 70 + b"\r\n") * 200_000  # 14 MB, every line dotted
    start = time.perf_counter()
    payload = dot_stuff(data)
    elapsed = time.perf_counter() - start
    assert len(payload) == len(data) + 200_000 + 3
    assert elapsed < 1.0


def test_is_8bit_and_smtputf8() -> None:
    assert not is_8bit(b"plain ascii\r\n")
    assert is_8bit("caf\u00e9".encode())
    assert not needs_smtputf8("a@example.com", "b@example.com")
    assert needs_smtputf8("a@example.com", "jos\u00e9@example.com")
    assert needs_smtputf8("user@b\u00fccher.example")


# --- EHLO ----------------------------------------------------------------------------


def test_parse_ehlo() -> None:
    reply = Reply.from_lines(
        250,
        [
            "mx.google.com at your service, [192.0.2.1]",
            "SIZE 157286400",
            "8BITMIME",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "pipelining",
            "AUTH=LOGIN",
            "AUTH PLAIN LOGIN XOAUTH2",
            "CHUNKING",
            "SMTPUTF8",
            "  ",
            "-bad keyword",
        ],
        "EHLO",
    )
    assert parse_ehlo(reply) == {
        "SIZE": "157286400",
        "8BITMIME": "",
        "STARTTLS": "",
        "ENHANCEDSTATUSCODES": "",
        "PIPELINING": "",
        "AUTH": "PLAIN LOGIN XOAUTH2",
        "CHUNKING": "",
        "SMTPUTF8": "",
    }


def test_parse_ehlo_greeting_only_and_old_auth() -> None:
    assert parse_ehlo(Reply(250, "mx.example")) == {}
    assert parse_ehlo(Reply(250, "mx.example\nAUTH=LOGIN PLAIN")) == {"AUTH": "LOGIN PLAIN"}


@settings(max_examples=50)
@given(st.text(max_size=200))
def test_parse_ehlo_never_crashes(text: str) -> None:
    for keyword in parse_ehlo(Reply(250, text)):
        assert keyword == keyword.upper()


# --- commands -------------------------------------------------------------------------


def test_commands() -> None:
    assert mail_command("") == b"MAIL FROM:<>\r\n"
    assert (
        mail_command("a@example.com", ["SIZE=5", "BODY=8BITMIME"])
        == b"MAIL FROM:<a@example.com> SIZE=5 BODY=8BITMIME\r\n"
    )
    assert rcpt_command("jos\u00e9@example.com") == "RCPT TO:<jos\u00e9@example.com>\r\n".encode()


@pytest.mark.parametrize("bad", ["a@b\r\nRCPT TO:<c@d>", "a\n@b", "a\x00@b", "a\x7f@b"])
def test_commands_refuse_injection(bad: str) -> None:
    assert not is_safe_address(bad)
    with pytest.raises(ValueError, match="control characters"):
        mail_command(bad)
    with pytest.raises(ValueError, match="control characters"):
        rcpt_command(bad)
    with pytest.raises(ValueError, match="control characters"):
        mail_command("a@b", [bad])


def test_parser_out_keeps_replies_completed_before_an_error() -> None:
    parser = ReplyParser()
    parser.expect("MAIL FROM")
    parser.expect("RCPT TO")
    out: list[Reply] = []
    with pytest.raises(SMTPProtocolError) as info:
        parser.feed(b"250 2.1.0 ok\r\nHTTP/1.1 400 Bad Request\r\n", out)
    assert [(r.code, r.command) for r in out] == [(250, "MAIL FROM")]
    assert info.value.command == "RCPT TO"
