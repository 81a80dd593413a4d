"""Relaxed canonicalization (RFC 6376 §3.4.2, §3.4.4), body hashes and header parsing.

postline signs with ``c=relaxed/relaxed``: the form that survives what relays do to a
message (re-folding headers, changing whitespace, adding trailing blank lines). This
module is the whole of it, on bytes — header values may be UTF-8 (SMTPUTF8, RFC 6532)
and are never decoded.

Line endings: DKIM hashes the message as it travels, with CRLF line endings. A message
with bare LF or bare CR line endings is normalised the way postline's SMTP client sends
it (:func:`postline.smtp.wire.dot_stuff`: each bare LF and each bare CR becomes CRLF),
so what is signed is what the receiver gets; :func:`normalize_newlines` does it. For the
same reason a non-empty body that does not end in CRLF is hashed with the CRLF the
transport adds (the last line's trailing whitespace is then ignored like any other
line's).

Body hashes are meant to be computed once per stored body (:func:`body_hash`) and
reused for every recipient of that body; only the header hash and the signature are per
message.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

__all__ = [
    "EMPTY_BODY_HASH",
    "body_hash",
    "normalize_newlines",
    "parse_headers",
    "relaxed_body",
    "relaxed_header",
    "split_message",
]

_LINE_END: Final = re.compile(rb"\r\n|\r|\n")

EMPTY_BODY_HASH: Final = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
"""``bh=`` of an empty body under relaxed canonicalization (SHA-256 of nothing)."""


def _has_bare_newline(data: bytes) -> bool:
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


def _collapse_spaces(data: bytes) -> bytes:
    """``data`` with each run of spaces made one space.

    Repeated replacement halves every run each time: faster than a regular expression
    on text where runs are short, and still logarithmic in the longest run.
    """
    while b"  " in data:
        data = data.replace(b"  ", b" ")
    return data


def normalize_newlines(data: bytes) -> bytes:
    """``data`` with every bare LF and bare CR turned into CRLF (returned as is if none)."""
    if _has_bare_newline(data):
        return _LINE_END.sub(b"\r\n", data)
    return data


def _locate(message: bytes) -> tuple[int, int]:
    """Where the header block of a CRLF message ends (after its last CRLF) and where
    the body starts."""
    if message.startswith(b"\r\n"):
        return 0, 2
    end = message.find(b"\r\n\r\n")
    if end < 0:
        return len(message), len(message)
    return end + 2, end + 4


def _split(message: bytes) -> tuple[bytes, bytes]:
    """Header block and body of a message with CRLF line endings (no normalisation)."""
    head_end, body_start = _locate(message)
    return message[:head_end], message[body_start:]


def split_message(message: bytes) -> tuple[bytes, bytes]:
    """The header block (each field with its CRLF) and the body of ``message``.

    The empty line between them belongs to neither. Line endings are normalised first
    (see the module docstring). A message without an empty line is all header.
    """
    return _split(normalize_newlines(message))


def parse_headers(header_block: bytes) -> list[tuple[bytes, bytes]]:
    """The fields of a header block in order, as ``(name, value)`` byte strings.

    ``name`` is as written (without whitespace before the colon); ``value`` is
    everything after the colon, folding CRLFs included, without the final CRLF. Lines
    that are neither a field nor its continuation are skipped with their continuations.
    """
    fields: list[tuple[bytes, bytes]] = []
    current = False
    for line in header_block.split(b"\r\n"):
        if not line:
            continue
        if line[0] in b" \t":
            if current:
                name, value = fields[-1]
                fields[-1] = (name, value + b"\r\n" + line)
            continue
        colon = line.find(b":")
        name = line[:colon].rstrip(b" \t") if colon > 0 else b""
        current = bool(name)
        if current:
            fields.append((name, line[colon + 1 :]))
    return fields


def relaxed_header(name: bytes, value: bytes) -> bytes:
    """One header field in relaxed form, with its CRLF: ``name:value\\r\\n``.

    The name is lower-cased; the value is unfolded, each run of spaces and tabs becomes
    one space, and whitespace at both ends is dropped (RFC 6376 §3.4.2).
    """
    if b"\r\n" in value:
        value = value.replace(b"\r\n", b"")
    if b"\t" in value:
        value = value.replace(b"\t", b" ")
    if b"  " in value:
        value = _collapse_spaces(value)
    return name.rstrip(b" \t").lower() + b":" + value.strip(b" ") + b"\r\n"


def relaxed_body(body: bytes) -> bytes:
    """``body`` in relaxed form (RFC 6376 §3.4.4).

    Whitespace at the end of each line is dropped and other runs of spaces and tabs
    become one space; empty lines at the end are dropped; a non-empty result ends with
    exactly one CRLF, an empty body stays empty.
    """
    body = normalize_newlines(body)
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    if b"  " in body:
        body = _collapse_spaces(body)
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    # The last line may lack its CRLF (the transport adds it); its trailing space goes too.
    body = body.rstrip(b" ").rstrip(b"\r\n")
    return body + b"\r\n" if body else b""


def body_hash(body: bytes) -> str:
    """The ``bh=`` value of ``body``: base64 of SHA-256 over its relaxed form."""
    return base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode("ascii")
