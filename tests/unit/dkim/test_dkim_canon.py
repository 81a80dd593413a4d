"""Relaxed canonicalization, body hashes and header parsing (postline.dkim.canon).

Checked against RFC 6376's own examples, against the signatures published in RFC 8463
Appendix A (made by another implementation: our canonicalization must reproduce the
hashes they sign), and against dkimpy's canonicalization on generated input.
"""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

from postline.dkim.canon import (
    EMPTY_BODY_HASH,
    body_hash,
    normalize_newlines,
    parse_headers,
    relaxed_body,
    relaxed_header,
    split_message,
)


def test_rfc6376_relaxed_example() -> None:
    # RFC 6376 §3.4.6
    head = b"A: X\r\nB : Y\t\r\n\tZ  \r\n"
    assert b"".join(relaxed_header(n, v) for n, v in parse_headers(head)) == b"a:X\r\nb:Y Z\r\n"
    assert relaxed_body(b" C \r\nD \t E\r\n\r\n\r\n") == b" C\r\nD E\r\n"


@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        (b"", b""),
        (b"\r\n", b""),
        (b"\r\n\r\n\r\n", b""),
        (b"  \r\n\t\r\n", b""),
        (b"abc", b"abc\r\n"),  # the transport adds the missing CRLF
        (b"abc \t ", b"abc\r\n"),
        (b"abc\r\n  ", b"abc\r\n"),
        (b"abc\r\n\r\n \r\n", b"abc\r\n"),
        (b"\r\nabc\r\n", b"\r\nabc\r\n"),  # leading empty lines stay
        (b"a\t\tb  c\r\n", b"a b c\r\n"),
        (b"  lead\r\n", b" lead\r\n"),
        (b"caf\xc3\xa9  au\tlait \r\n", b"caf\xc3\xa9 au lait\r\n"),  # 8-bit untouched
        (b"a\nb\n\n", b"a\r\nb\r\n"),  # bare LF, as sent: CRLF
        (b"a\rb\r\n", b"a\r\nb\r\n"),  # bare CR, as sent: CRLF
    ],
)
def test_relaxed_body(body: bytes, canonical: bytes) -> None:
    assert relaxed_body(body) == canonical


def test_body_hashes() -> None:
    assert body_hash(b"") == EMPTY_BODY_HASH
    assert body_hash(b"\r\n") == EMPTY_BODY_HASH
    assert base64.b64encode(hashlib.sha256(b"").digest()).decode() == EMPTY_BODY_HASH
    # RFC 8463 Appendix A (also RFC 6376 Appendix A's body)
    rfc = b"Hi.\r\n\r\nWe lost the game.  Are you hungry yet?\r\n\r\nJoe.\r\n"
    assert body_hash(rfc) == "2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8="
    assert body_hash(rfc.replace(b"\r\n", b"\n")) == body_hash(rfc)
    assert body_hash(rfc + b"\r\n\r\n") == body_hash(rfc)
    assert body_hash(rfc.replace(b"game.  Are", b"game. \t Are")) == body_hash(rfc)
    assert body_hash(rfc.replace(b"Joe.", b"Jim.")) != body_hash(rfc)


def test_long_lines_are_hashed_whole() -> None:
    line = b"x" * 5000 + b"   " + b"y" * 5000
    assert relaxed_body(line + b"\r\n") == b"x" * 5000 + b" " + b"y" * 5000 + b"\r\n"


def test_relaxed_header() -> None:
    assert relaxed_header(b"Subject", b"  Hello \t  world  ") == b"subject:Hello world\r\n"
    assert relaxed_header(b"SUBJECT ", b"x") == b"subject:x\r\n"
    assert relaxed_header(b"To", b" a@b.example,\r\n\tc@d.example\r\n ") == (
        b"to:a@b.example, c@d.example\r\n"
    )
    assert relaxed_header(b"X-Empty", b"") == b"x-empty:\r\n"
    utf8 = "Grüße aus Köln".encode()
    assert relaxed_header(b"Subject", b" " + utf8) == b"subject:" + utf8 + b"\r\n"


def test_parse_headers() -> None:
    head = (
        b"Received: from a\r\n\tby b\r\n"
        b"Subject : folded\r\n   twice\r\n\tthrice\r\n"
        b"not a field line\r\n\tits continuation\r\n"
        b"To: x@example.com\r\n"
        b"To: y@example.com\r\n"
        b"X-Utf8: \xc3\xa9t\xc3\xa9\r\n"
    )
    assert parse_headers(head) == [
        (b"Received", b" from a\r\n\tby b"),
        (b"Subject", b" folded\r\n   twice\r\n\tthrice"),
        (b"To", b" x@example.com"),
        (b"To", b" y@example.com"),
        (b"X-Utf8", b" \xc3\xa9t\xc3\xa9"),
    ]
    assert parse_headers(b"\tleading continuation\r\nA: b") == [(b"A", b" b")]


@pytest.mark.parametrize(
    ("message", "head", "body"),
    [
        (b"A: 1\r\nB: 2\r\n\r\nbody\r\n", b"A: 1\r\nB: 2\r\n", b"body\r\n"),
        (b"A: 1\r\n\r\n", b"A: 1\r\n", b""),
        (b"A: 1\r\n", b"A: 1\r\n", b""),
        (b"A: 1", b"A: 1", b""),
        (b"\r\nbody only\r\n", b"", b"body only\r\n"),
        (b"A: 1\r\n\r\n\r\nx\r\n\r\n", b"A: 1\r\n", b"\r\nx\r\n\r\n"),
        (b"A: 1\nB: 2\n\nbody\n", b"A: 1\r\nB: 2\r\n", b"body\r\n"),
    ],
)
def test_split_message(message: bytes, head: bytes, body: bytes) -> None:
    assert split_message(message) == (head, body)


def test_normalize_newlines() -> None:
    assert normalize_newlines(b"a\r\nb\r\n") == b"a\r\nb\r\n"
    assert normalize_newlines(b"a\nb\rc\r\n\n") == b"a\r\nb\r\nc\r\n\r\n"


# -- RFC 8463 Appendix A.3: signatures made by another implementation --------------

_RFC8463 = (
    b"DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=brisbane; t=1528637909; h=from : to :\r\n"
    b" subject : date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus\r\n"
    b" Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==\r\n"
    b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;\r\n"
    b" d=football.example.com; i=@football.example.com;\r\n"
    b" q=dns/txt; s=test; t=1528637909; h=from : to : subject :\r\n"
    b" date : message-id : from : subject : date;\r\n"
    b" bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;\r\n"
    b" b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3\r\n"
    b" DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz\r\n"
    b" dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=\r\n"
    b"From: Joe SixPack <joe@football.example.com>\r\n"
    b"To: Suzie Q <suzie@shopping.example.net>\r\n"
    b"Subject: Is dinner ready?\r\n"
    b"Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)\r\n"
    b"Message-ID: <20030712040037.46341.5F8J@football.example.com>\r\n"
    b"\r\n"
    b"Hi.\r\n"
    b"\r\n"
    b"We lost the game.  Are you hungry yet?\r\n"
    b"\r\n"
    b"Joe.\r\n"
)
_RFC8463_ED25519 = "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
_RFC8463_RSA = (
    "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY"
    "/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVY"
    "LzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
)


def _signed_data(message: bytes, index: int) -> tuple[bytes, bytes, bytes]:
    """(data the index-th signature signs, its b= bytes, its bh=), with our canon."""
    head, body = split_message(message)
    fields = parse_headers(head)
    signatures = [f for f in fields if f[0].lower() == b"dkim-signature"]
    name, value = signatures[index]
    tags = {
        k.strip(): re.sub(rb"\s+", b"", v)
        for k, _, v in (t.partition(b"=") for t in value.split(b";") if t.strip())
    }
    used: dict[bytes, int] = {}
    data = b""
    for wanted in (h.strip().lower() for h in tags[b"h"].split(b":")):
        matching = [f for f in fields if f[0].lower() == wanted]
        taken = used.get(wanted, 0)
        used[wanted] = taken + 1
        if taken < len(matching):
            data += relaxed_header(*matching[-1 - taken])
    blank = re.sub(rb"(^|;)(\s*b\s*=)[^;]*", rb"\1\2", value)
    data += relaxed_header(name, blank)[:-2]
    assert body_hash(body).encode() == tags[b"bh"]
    return data, base64.b64decode(tags[b"b"]), tags[b"bh"]


def test_rfc8463_ed25519_signature_verifies_over_our_canonical_form() -> None:
    data, signature, _ = _signed_data(_RFC8463, 0)
    key = ed25519.Ed25519PublicKey.from_public_bytes(base64.b64decode(_RFC8463_ED25519))
    key.verify(signature, hashlib.sha256(data).digest())


def test_rfc8463_rsa_signature_verifies_over_our_canonical_form() -> None:
    data, signature, _ = _signed_data(_RFC8463, 1)
    key = serialization.load_der_public_key(base64.b64decode(_RFC8463_RSA))
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())


# -- the same results as dkimpy on generated input -----------------------------------

_LINE = st.text(alphabet=" \t\r\nab.é", max_size=30).map(lambda s: s.encode())


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=8))
def test_body_matches_dkimpy(lines: list[bytes]) -> None:
    body = normalize_newlines(b"".join(lines))
    wire = body if not body or body.endswith(b"\r\n") else body + b"\r\n"
    assert relaxed_body(body) == Relaxed.canonicalize_body(wire)


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="AZaz-", min_size=1, max_size=8).map(lambda s: s.encode()),
    st.lists(st.text(alphabet=" \tab:é", max_size=12), max_size=4),
)
def test_header_matches_dkimpy(name: bytes, pieces: list[str]) -> None:
    value = b"\r\n\t".join(p.encode() for p in pieces)
    ((lname, lvalue),) = Relaxed.canonicalize_headers([(name, value)])
    assert relaxed_header(name, value) == lname + b":" + lvalue
