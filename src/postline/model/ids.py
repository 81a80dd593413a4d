"""Identifiers: time-ordered, node-independent message ids and derived recipient ids."""

from __future__ import annotations

import os
import threading
import time

__all__ = ["id_time", "new_id", "random_bytes", "recipient_id", "split_recipient_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]  # 10 bits -> two characters
_SHIFTS = range(120, -1, -10)


# Random bits are read from the kernel 10 KiB at a time (1,024 ids): one getrandom() call
# costs tens of microseconds in some VMs, and it lets go of the GIL, which the event loop
# may then wait milliseconds to get back from the store's writer thread. A forked process
# starts with a fresh supply.
_POOL_SIZE = 10 * 1024
_pool = b""
_pool_at = 0
_lock = threading.Lock()


def _forget_pool() -> None:
    global _pool, _pool_at, _lock
    _pool, _pool_at, _lock = b"", 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the operating system's CSPRNG (``os.urandom``), from the pool."""
    global _pool, _pool_at
    if n > _POOL_SIZE:
        return os.urandom(n)
    with _lock:  # threads (the store's writer) take ids too
        at = _pool_at
        if at + n > len(_pool):
            _pool, at = os.urandom(_POOL_SIZE), 0
        _pool_at = at + n
        return _pool[at : at + n]


def new_id() -> str:
    """A 26-character ULID: 48 bits of milliseconds, 80 random bits; sorts by time."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(random_bytes(10), "big")
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _SHIFTS])


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
