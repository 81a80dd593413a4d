"""Signed tokens that name one recipient row: ``(message id, recipient index)``.

Format version ``1``, in lower-case Crockford base32 (no ``i``, ``l``, ``o``, ``u``)::

    1 <message id: 26> <recipient index: 1-13, no leading zero> <MAC: 16>

The MAC is HMAC-SHA256 over a *label* (domain separation: a token made for one use is
never valid for another), the version, the message id and the index, truncated to 80
bits. Binding both id and index means neither can be swapped; the fixed alphabet survives
MTAs that lower-case local parts or mangle ``+`` and ``=``, and is URL-safe. A token is at
most 56 characters. :mod:`postline.bounce.verp` (return paths) and
``postline.feedback.unsubscribe`` (one-click links) are the two uses.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

__all__ = ["MAX_INDEX", "MAX_TOKEN", "MIN_TOKEN", "VERSION", "RowToken", "secret_keys"]

VERSION = "1"
MAX_INDEX = 2**63 - 1  # a signed 64-bit column holds every index

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_VALUE = {c: i for i, c in enumerate(_ALPHABET)}
_MAC_CHARS = 16  # 80 bits
_MAC_BYTES = _MAC_CHARS * 5 // 8
_ID_CHARS = 26
MIN_TOKEN = len(VERSION) + _ID_CHARS + 1 + _MAC_CHARS
MAX_TOKEN = len(VERSION) + _ID_CHARS + 13 + _MAC_CHARS
_C = "[0-9a-hjkmnp-tv-z]"
# A ULID's first character is at most 7 (128 bits); the index has no leading zero.
_TOKEN = re.compile(
    rf"{VERSION}([0-7]{_C}{{25}})(0|[1-9a-hjkmnp-tv-z]{_C}{{0,12}})({_C}{{{_MAC_CHARS}}})"
)
_ULID = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", re.IGNORECASE)


def _b32(value: int, width: int = 0) -> str:
    out = []
    while value:
        out.append(_ALPHABET[value & 31])
        value >>= 5
    text = "".join(reversed(out)) or "0"
    return text.rjust(width, "0")


def secret_keys(secret: bytes | Sequence[bytes], what: str = "token") -> tuple[bytes, ...]:
    """One or more secrets as a tuple of non-empty byte strings (ValueError otherwise)."""
    keys = (secret,) if isinstance(secret, bytes | bytearray | memoryview) else tuple(secret)
    if not keys or any(not isinstance(k, bytes | bytearray | memoryview) or not k for k in keys):
        raise ValueError(f"{what} secrets must be one or more non-empty byte strings")
    return tuple(bytes(k) for k in keys)


class RowToken:
    """Tokens of one use, told apart from other uses by ``label``."""

    def __init__(self, label: str, what: str = "token") -> None:
        self._label = f"{label}\x00{VERSION}\x00".encode("ascii")
        self.what = what

    def _mac(self, key: bytes, message_id: str, idx: int) -> str:
        data = self._label + f"{message_id}\x00{idx}".encode("ascii")
        digest = hmac.digest(key, data, hashlib.sha256)[:_MAC_BYTES]
        return _b32(int.from_bytes(digest, "big"), _MAC_CHARS)

    def encode(self, message_id: str, idx: int, secret: bytes | Sequence[bytes]) -> str:
        """The token of recipient ``idx`` of ``message_id``, signed with ``secret`` (the
        first one of several). ValueError for an id that is not a ULID, an index outside
        ``0..MAX_INDEX`` or no usable secret."""
        key = secret_keys(secret, self.what)[0]
        if not isinstance(message_id, str) or not _ULID.fullmatch(message_id):
            raise ValueError(f"not a ULID message id: {message_id!r}")
        if isinstance(idx, bool) or not isinstance(idx, int) or not 0 <= idx <= MAX_INDEX:
            raise ValueError(f"recipient index out of range: {idx!r}")
        mid = message_id.upper()
        return f"{VERSION}{mid.lower()}{_b32(idx)}{self._mac(key, mid, idx)}"

    def decode(self, token: str, secrets: bytes | Sequence[bytes]) -> tuple[str, int] | None:
        """``(message id, recipient index)``, or None for anything forged, mangled,
        truncated, signed with an unknown secret or for another use. Letter case does not
        matter; the MAC is compared in constant time against every secret."""
        keys = secret_keys(secrets, self.what)
        if not isinstance(token, str) or not MIN_TOKEN <= len(token) <= MAX_TOKEN:
            return None
        m = _TOKEN.fullmatch(token.lower())
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
            found |= hmac.compare_digest(self._mac(key, mid, idx), given)
        return (mid, idx) if found else None
