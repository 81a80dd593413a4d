"""The DKIM signer (postline.dkim.sign), verified with dkimpy's verifier.

dkimpy is an independent implementation: our canonicalization, header selection and
signature must agree with its verification, and anything a relay must not change
(body, signed fields, an added From) must make it fail.
"""

from __future__ import annotations

import re

import pytest

import dkim
from postline.dkim import (
    DEFAULT_HEADERS,
    DkimKey,
    MessageFormatError,
    Signer,
    body_hash,
    dkim_record,
    new_key,
    split_message,
)
from postline.dkim.errors import DkimError, KeyFormatError
from postline.dkim.keys import Algorithm
from postline.errors import ConfigError

NOW = 1_795_000_000

PLAIN = (
    b"From: Shop <orders@shop.example>\r\n"
    b"To: Ann <ann@example.com>\r\n"
    b"Subject: Your order\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <01M8A@shop.example>\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 7bit\r\n"
    b"\r\n"
    b"It shipped.\r\n"
)

MULTIPART = (
    b"From: Shop <orders@shop.example>\r\n"
    b"To: ann@example.com\r\n"
    b"Subject: Newsletter\r\n"
    b"Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    b"Message-ID: <01M8B@shop.example>\r\n"
    b"List-Unsubscribe: <https://shop.example/u/1>,\r\n <mailto:u-1@shop.example>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/alternative; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"\r\n"
    b"Hello   there\t \r\n"
    b"--b1\r\n"
    b"Content-Type: text/html; charset=utf-8\r\n"
    b"\r\n"
    b"<p>Hello there</p>\r\n"
    b"--b1--\r\n"
)

EIGHT_BIT = (
    b"From: Shop <orders@shop.example>\r\n"
    b"To: ann@example.com\r\n"
    b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n" + "Grüße aus Köln — ça va ?\r\n".encode() + b"x" * 990 + b"\r\n"
)

SMTPUTF8 = (
    "From: José <josé@shop.example>\r\n"
    "To: Jürgen <jürgen@bücher.example>\r\n"
    "Subject: Grüße, 你好\r\n"
    "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "Content-Transfer-Encoding: 8bit\r\n"
    "\r\n"
    "Grüße\r\n"
).encode()

SAMPLES = {"plain": PLAIN, "multipart": MULTIPART, "8bit": EIGHT_BIT, "smtputf8": SMTPUTF8}


@pytest.fixture(scope="module", params=["rsa-sha256", "ed25519-sha256"])
def key(request: pytest.FixtureRequest) -> DkimKey:
    algorithm: Algorithm = request.param
    return new_key("shop.example", algorithm, now=NOW)


def verifies(message: bytes, key: DkimKey) -> bool:
    """dkimpy's verdict on the first DKIM-Signature of ``message``, ``key`` in DNS."""
    record = dkim_record(key.domain, key.selector, key.public_key, key.algorithm)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        assert name.decode().rstrip(".") == record.name
        return record.value.encode()

    return bool(dkim.verify(message, dnsfunc=dnsfunc))


def tags(signature: bytes) -> dict[str, str]:
    value = signature.decode().split(":", 1)[1]
    out = {}
    for item in value.split(";"):
        name, _, tag_value = item.partition("=")
        out[name.strip()] = re.sub(r"\s+", "", tag_value)
    return out


@pytest.mark.parametrize("sample", SAMPLES)
def test_dkimpy_verifies(key: DkimKey, sample: str) -> None:
    message = SAMPLES[sample]
    signature = Signer(key).sign(message)
    assert verifies(signature + message, key)


def test_field_shape(key: DkimKey) -> None:
    signature = Signer(key).sign(MULTIPART, now=NOW)
    assert signature.startswith(b"DKIM-Signature: v=1; a=" + key.algorithm.encode())
    assert signature.endswith(b"\r\n") and signature.isascii()
    lines = signature[:-2].split(b"\r\n")
    assert all(len(line) <= 78 for line in lines)
    assert all(line.startswith(b"\t") for line in lines[1:])
    got = tags(signature)
    assert list(got) == ["v", "a", "c", "d", "s", "t", "h", "bh", "b"]
    assert got["c"] == "relaxed/relaxed"
    assert (got["d"], got["s"], got["t"]) == ("shop.example", key.selector, str(NOW))
    assert got["bh"] == body_hash(split_message(MULTIPART)[1])


def test_expiry(key: DkimKey) -> None:
    got = tags(Signer(key, expire_after=7 * 86400).sign(PLAIN, now=NOW))
    assert got["x"] == str(NOW + 7 * 86400)
    assert list(got)[5:7] == ["t", "x"]
    with pytest.raises(ConfigError, match="positive"):
        Signer(key, expire_after=0)


def test_expired_signature_fails(key: DkimKey) -> None:
    signature = Signer(key, expire_after=60).sign(PLAIN, now=NOW - 3600)
    assert not verifies(signature + PLAIN, key)


def test_signed_fields_and_oversigning(key: DkimKey) -> None:
    message = (
        b"Received: from relay\r\n"
        b"From: a@shop.example\r\n"
        b"To: b@example.com\r\n"
        b"X-Other: 1\r\n"
        b"to: c@example.com\r\n"
        b"Subject: hi\r\n"
        b"List-Unsubscribe: <mailto:u@shop.example>\r\n"
        b"X-Postline-ID: 01M8.0\r\n"
        b"\r\nbody\r\n"
    )
    listed = tags(Signer(key).sign(message))["h"].split(":")
    assert listed == [
        "From",
        "From",
        "Subject",
        "Subject",
        "To",
        "To",
        "List-Unsubscribe",
        "List-Unsubscribe",
        "X-Postline-ID",
    ]
    assert verifies(Signer(key).sign(message) + message, key)


def test_default_header_list() -> None:
    lower = [name.lower() for name in DEFAULT_HEADERS]
    assert lower[0] == "from" and len(set(lower)) == len(lower)
    for name in ("reply-to", "cc", "feedback-id", "list-id", "x-postline-id", "references"):
        assert name in lower
    assert "received" not in lower and "return-path" not in lower


def test_custom_header_list_always_signs_from(key: DkimKey) -> None:
    signature = Signer(key, headers=["Subject"], oversign=()).sign(PLAIN)
    assert tags(signature)["h"] == "From:Subject"
    assert verifies(signature + PLAIN, key)
    with pytest.raises(ConfigError, match="bad header"):
        Signer(key, headers=["Bad Name"])


def test_precomputed_body_hash_gives_the_same_signature(key: DkimKey) -> None:
    bh = body_hash(split_message(MULTIPART)[1])
    signer = Signer(key)
    assert signer.sign(MULTIPART, body_hash=bh, now=NOW) == signer.sign(MULTIPART, now=NOW)
    lf = MULTIPART.replace(b"\r\n", b"\n")
    assert signer.sign(lf, body_hash=bh, now=NOW) == signer.sign(MULTIPART, now=NOW)
    for bad in ("", "abc", bh[:-1] + "A", bh + " "):
        with pytest.raises(DkimError, match="not a body hash"):
            signer.sign(MULTIPART, body_hash=bad)


def test_one_body_many_recipients(key: DkimKey) -> None:
    stored = MULTIPART.replace(b"To: ann@example.com\r\n", b"")
    bh = body_hash(split_message(stored)[1])
    signer = Signer(key)
    for index, rcpt in enumerate(["ann@example.com", "bob@example.net", "cy@example.org"]):
        copy = f"To: {rcpt}\r\nX-Postline-ID: 01M8B.{index}\r\n".encode() + stored
        signature = signer.sign(copy, body_hash=bh)
        assert "X-Postline-ID" in tags(signature)["h"]
        assert verifies(signature + copy, key)


@pytest.mark.parametrize(
    "relay",
    [
        lambda m: b"Received: from mx by relay; Fri, 27 Nov 2026\r\n" + m,
        lambda m: b"Return-Path: <b-1@bounce.example>\r\n" + m,
        lambda m: m.replace(b"Subject: Newsletter", b"Subject:   Newsletter  "),
        lambda m: m.replace(b"Subject: Newsletter", b"Subject:\r\n\tNewsletter"),
        lambda m: m.replace(b"Hello   there", b"Hello there"),
        lambda m: m + b"\r\n\r\n",
        lambda m: m.replace(b"\r\n", b"\n"),  # a receiver storing LF: verifiers normalise
    ],
    ids=["received", "return-path", "spaces", "refolded", "body-spaces", "blank-lines", "lf"],
)
def test_survives_relaying(key: DkimKey, relay: object) -> None:
    signed = Signer(key).sign(MULTIPART) + MULTIPART
    assert callable(relay)
    assert verifies(relay(signed), key)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda m: m.replace(b"Hello there</p>", b"Hello there!</p>"),
        lambda m: m.replace(b"Subject: Newsletter", b"Subject: Newsletter!"),
        lambda m: m.replace(b"From: Shop", b"From: Shoq"),
        lambda m: m.replace(b"From: Shop", b"From: evil@attacker.example\r\nFrom: Shop"),
        lambda m: m.replace(b"\r\n\r\n--b1", b"\r\nFrom: evil@attacker.example\r\n\r\n--b1", 1),
        lambda m: m.replace(b"From: Shop", b"Subject: Act now\r\nFrom: Shop"),
        lambda m: m.replace(b"MIME-Version", b"List-Unsubscribe: <https://evil.example>\r\nMIME"),
        lambda m: m.replace(b"--b1--\r\n", b"--b1--\r\nappended\r\n"),
    ],
    ids=[
        "body",
        "subject",
        "from",
        "added-from-above",
        "added-from-below",
        "added-subject",
        "added-unsubscribe",
        "appended-body",
    ],
)
def test_tampering_fails(key: DkimKey, tamper: object) -> None:
    signed = Signer(key).sign(MULTIPART) + MULTIPART
    assert verifies(signed, key)
    assert callable(tamper)
    changed = tamper(signed)
    assert changed != signed
    assert not verifies(changed, key)


def test_duplicate_fields_are_signed_bottom_up(key: DkimKey) -> None:
    message = (
        b"From: a@shop.example\r\nTo: first@example.com\r\nTo: second@example.com\r\n\r\nbody\r\n"
    )
    signed = Signer(key).sign(message) + message
    assert verifies(signed, key)
    swapped = signed.replace(
        b"To: first@example.com\r\nTo: second@example.com",
        b"To: second@example.com\r\nTo: first@example.com",
    )
    assert not verifies(swapped, key)


def test_lf_only_input_is_signed_as_sent(key: DkimKey) -> None:
    lf = PLAIN.replace(b"\r\n", b"\n")
    signer = Signer(key)
    assert signer.sign(lf, now=NOW) == signer.sign(PLAIN, now=NOW)
    assert verifies(signer.sign(lf) + PLAIN, key)


@pytest.mark.parametrize(
    "body",
    [b"", b"\r\n", b"no final newline", b"trailing space at the end  ", b"y" * 5000 + b"\r\n"],
    ids=["empty", "crlf", "no-crlf", "no-crlf-space", "long-line"],
)
def test_bodies(key: DkimKey, body: bytes) -> None:
    message = b"From: a@shop.example\r\nSubject: s\r\n\r\n" + body
    signature = Signer(key).sign(message)
    if body in (b"", b"\r\n"):
        assert tags(signature)["bh"] == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
    # over SMTP a body always ends with CRLF (postline.smtp.wire.dot_stuff adds it)
    wire = message if message.endswith(b"\r\n") else message + b"\r\n"
    assert verifies(signature + wire, key)


def test_header_only_message(key: DkimKey) -> None:
    message = b"From: a@shop.example\r\nSubject: s\r\n"
    assert verifies(Signer(key).sign(message) + message, key)


def test_message_without_from_is_refused(key: DkimKey) -> None:
    with pytest.raises(MessageFormatError, match="no From"):
        Signer(key).sign(b"To: a@example.com\r\n\r\nbody\r\n")
    with pytest.raises(MessageFormatError):
        Signer(key).sign(b"\r\nFrom: in the body\r\n")


def test_key_must_match_its_algorithm(key: DkimKey) -> None:
    other: Algorithm = "ed25519-sha256" if key.algorithm == "rsa-sha256" else "rsa-sha256"
    with pytest.raises(KeyFormatError, match="not for"):
        Signer(DkimKey(key.domain, key.selector, other, key.private_pem))


def test_oversigning_is_what_stops_an_added_subject(key: DkimKey) -> None:
    def add_subject(signed: bytes) -> bytes:  # above the signed one: not the one verified
        return signed.replace(b"From: Shop", b"Subject: Act now\r\nFrom: Shop")

    plain = Signer(key, oversign=()).sign(MULTIPART) + MULTIPART
    assert verifies(add_subject(plain), key)  # shown to the reader, yet "verified"
    oversigned = Signer(key).sign(MULTIPART) + MULTIPART
    assert not verifies(add_subject(oversigned), key)


def test_rsa_and_ed25519_signatures_side_by_side() -> None:
    rsa_key = new_key("shop.example", "rsa-sha256", now=NOW)
    ed_key = new_key("shop.example", "ed25519-sha256", now=NOW)
    once = Signer(ed_key).sign(PLAIN) + PLAIN
    second = Signer(rsa_key).sign(once)
    assert "DKIM-Signature" not in tags(second)["h"]
    twice = second + once
    records = {
        key.record_name: dkim_record(key.domain, key.selector, key.public_key, key.algorithm)
        for key in (rsa_key, ed_key)
    }

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return records[name.decode().rstrip(".")].value.encode()

    verifier = dkim.DKIM(twice)
    assert verifier.verify(idx=0, dnsfunc=dnsfunc)
    assert verifier.verify(idx=1, dnsfunc=dnsfunc)


def test_internationalised_domain() -> None:
    key = new_key("bücher.example", "ed25519-sha256", now=NOW)
    message = "From: Jürgen <jürgen@bücher.example>\r\nSubject: x\r\n\r\nhi\r\n".encode()
    signature = Signer(key).sign(message)
    assert tags(signature)["d"] == "xn--bcher-kva.example"
    assert verifies(signature + message, key)


def test_package_exports() -> None:
    import postline.dkim

    for name in postline.dkim.__all__:
        assert hasattr(postline.dkim, name), name
