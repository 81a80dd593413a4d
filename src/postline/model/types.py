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
    REPUTATION_WARNING = "reputation_warning"
    """A tenant's bounce or complaint rate crossed a warning threshold."""
    REPUTATION_RECOVERED = "reputation_recovered"
    """A warned tenant's rates are back under the warning thresholds."""
    TENANT_PAUSED = "tenant_paused"
    """A tenant's sending was paused (a pause threshold, or an operator)."""
    TENANT_RESUMED = "tenant_resumed"
    """An operator resumed a paused (or warned) tenant."""
    UNSUBSCRIBED = "unsubscribed"
    """The recipient unsubscribed (List-Unsubscribe one-click POST or mailto)."""


def split_address(address: str) -> tuple[str, str]:
    """Split ``local@domain`` at the last ``@``; the domain is lower-cased.

    >>> split_address("Ann@Example.COM")
    ('Ann', 'example.com')
    """
    local, sep, domain = address.rpartition("@")
    if not sep or not local or not domain:
        raise ValueError(f"not an address: {address!r}")
    return local, domain.lower()
