"""Identifiers: time-ordered, node-independent message ids and derived recipient ids."""

from __future__ import annotations

import os
import time

__all__ = ["id_time", "new_id", "recipient_id", "split_recipient_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


def new_id() -> str:
    """A 26-character ULID: 48 bits of milliseconds, 80 random bits; sorts by time."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


def id_time(value: str) -> float | None:
    """When an id made by :func:`new_id` was made (Unix seconds); None for another string."""
    if len(value) != 26:
        return None
    number = 0
    for char in value.upper():
        digit = _ALPHABET.find(char)
        if digit < 0:
            return None
        number = number * 32 + digit
    return (number >> 80) / 1000


def recipient_id(message_id: str, index: int) -> str:
    """The public id of recipient ``index`` of a message: ``<message id>.<index>``."""
    return f"{message_id}.{index}"


def split_recipient_id(rid: str) -> tuple[str, int]:
    """Inverse of :func:`recipient_id`; raises ``ValueError`` on a malformed id."""
    message_id, sep, index = rid.rpartition(".")
    if not sep or not message_id or not index.isdigit():
        raise ValueError(f"not a recipient id: {rid!r}")
    return message_id, int(index)
