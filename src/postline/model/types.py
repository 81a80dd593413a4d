"""Enumerations and small helpers for messages, recipients and events."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["EventType", "RecipientState", "split_address"]


class RecipientState(StrEnum):
    """Where one recipient of one message stands.

    ``queued`` covers both fresh and deferred recipients (``attempts`` tells them apart);
    the other states are final.
    """

    QUEUED = "queued"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"
    """Never queued: the address is on the tenant's (or the global) suppression list."""

    @property
    def final(self) -> bool:
        return self is not RecipientState.QUEUED


class EventType(StrEnum):
    """The kinds of entries in the append-only event log."""

    ACCEPTED = "accepted"
    DELIVERED = "delivered"
    DEFERRED = "deferred"
    BOUNCED = "bounced"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    SUPPRESSED = "suppressed"
    COMPLAINED = "complained"
    AUTO_REPLY = "auto_reply"


def split_address(address: str) -> tuple[str, str]:
    """Split ``local@domain`` at the last ``@``; the domain is lower-cased.

    >>> split_address("Ann@Example.COM")
    ('Ann', 'example.com')
    """
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise ValueError(f"not an address: {address!r}")
    return local, domain.lower()
