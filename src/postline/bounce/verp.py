"""Signed VERP return paths: ``b-<token>@<bounce domain>`` names one recipient row.

The token of format version ``1`` is, in lower-case Crockford base32 (no ``i``, ``l``,
``o``, ``u``)::

    1 <message id: 26> <recipient index: 1-13, no leading zero> <MAC: 16>

The MAC is HMAC-SHA256 over a domain-separation prefix, the version, the message id and
the index, truncated to 80 bits. Binding both id and index means neither can be swapped,
and the fixed alphabet survives MTAs that lower-case local parts or mangle ``+`` and
``=``. The whole local part is at most 58 characters (the limit is 64).

:func:`decode` is the check the inbound server runs on every ``RCPT TO``: a length and
pattern test rejects anything that is not a token before any HMAC is computed, and the
MAC is compared in constant time. Several secrets may be given to rotate keys: tokens
made with any of them decode.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

__all__ = [
    "MAX_INDEX",
    "PREFIX",
    "VERSION",
    "decode",
    "encode",
    "return_path",
]

PREFIX = "b-"
VERSION = "1"
MAX_INDEX = 2**63 - 1  # a signed 64-bit column holds every index

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_MAC_CHARS = 16  # 80 bits
_MAC_BYTES = _MAC_CHARS * 5 // 8
_ID_CHARS = 26
_MAX_LOCAL = 64
_MAX_ADDRESS = _MAX_LOCAL + 1 + 255
_C = "[0-9a-hjkmnp-tv-z]"
# A ULID's first character is at most 7 (128 bits); the index has no leading zero.
_TOKEN = re.compile(
    rf"b-{VERSION}([0-7]{_C}{{25}})(0|[1-9a-hjkmnp-tv-z]{_C}{{0,12}})({_C}{{{_MAC_CHARS}}})"
)
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", re.IGNORECASE)
_MIN_LOCAL = len(PREFIX) + len(VERSION) + _ID_CHARS + 1 + _MAC_CHARS
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def _b32(value: int, width: int = 0) -> str:
    out = []
    while value:
        out.append(_ALPHABET[value & 31])
        value >>= 5
    text = "".join(reversed(out)) or "0"
    return text.rjust(width, "0")


def _mac(key: bytes, message_id: str, idx: int) -> str:
    data = f"postline-verp\x00{VERSION}\x00{message_id}\x00{idx}".encode("ascii")
    digest = hmac.digest(key, data, hashlib.sha256)[:_MAC_BYTES]
    return _b32(int.from_bytes(digest, "big"), _MAC_CHARS)


def _keys(secret: bytes | Sequence[bytes]) -> tuple[bytes, ...]:
    keys = (secret,) if isinstance(secret, bytes | bytearray | memoryview) else tuple(secret)
    if not keys or any(not isinstance(k, bytes | bytearray | memoryview) or not k for k in keys):
        raise ValueError("VERP secrets must be one or more non-empty byte strings")
    return tuple(bytes(k) for k in keys)


def encode(message_id: str, idx: int, secret: bytes) -> str:
    """The token (the local part after ``b-``) for recipient ``idx`` of ``message_id``.

    Raises ``ValueError`` for an id that is not a ULID, an index outside
    ``0..MAX_INDEX`` or an empty secret.
    """
    (key,) = _keys(secret)
    if not isinstance(message_id, str) or not _ULID.fullmatch(message_id):
        raise ValueError(f"not a ULID message id: {message_id!r}")
    if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx <= MAX_INDEX:
        raise ValueError(f"recipient index out of range: {idx!r}")
    mid = message_id.upper()
    return f"{VERSION}{mid.lower()}{_b32(idx)}{_mac(key, mid, idx)}"


def return_path(message_id: str, idx: int, secret: bytes, domain: str) -> str:
    """The envelope sender ``b-<token>@<domain>`` for recipient ``idx`` of ``message_id``."""
    domain = domain.rstrip(".")
    if not _DOMAIN.fullmatch(domain) or ".." in domain:
        raise ValueError(f"not a bounce domain: {domain!r}")
    return f"{PREFIX}{encode(message_id, idx, secret)}@{domain.lower()}"


def decode(local_part_or_address: str, secret: bytes | Sequence[bytes]) -> tuple[str, int] | None:
    """``(message id, recipient index)`` from ``b-<token>`` or ``b-<token>@domain``.

    Letter case does not matter; the domain is not checked (the inbound server accepts
    only its bounce domains). Anything forged, mangled, truncated, made with an unknown
    secret or not a VERP address gives None. Raises ``ValueError`` only when no usable
    secret is given (a configuration error).
    """
    keys = _keys(secret)
    value = local_part_or_address
    if not isinstance(value, str) or len(value) > _MAX_ADDRESS:
        return None
    local = value.rpartition("@")[0] if "@" in value else value
    if not _MIN_LOCAL <= len(local) <= _MAX_LOCAL:
        return None
    m = _TOKEN.fullmatch(local.lower())
    if m is None:
        return None
    mid, index_text, given = m.group(1).upper(), m.group(2), m.group(3)
    idx = 0
    for c in index_text:
        idx = idx * 32 + _VALUE[c]
    if idx > MAX_INDEX:
        return None
    found = False
    for key in keys:
        # Every key is tried, so the time taken does not tell which one matched.
        found |= hmac.compare_digest(_mac(key, mid, idx), given)
    return (mid, idx) if found else None
