"""What a bounce verdict means for the address: suppress it, count it, or neither."""

from __future__ import annotations

__all__ = ["SENDER_SIDE", "SUPPRESSING_CATEGORIES", "counts_as_soft", "suppresses"]

SUPPRESSING_CATEGORIES = frozenset({"invalid_recipient", "bad_domain", "inactive_mailbox"})
"""Hard bounces that say the address itself is dead (not the sender's reputation or the
message): those put the address on the tenant's suppression list."""

SENDER_SIDE = frozenset(
    {
        "spam_block",
        "spam_content",
        "policy",
        "auth_failure",
        "rate_limited",
        "relay_denied",
        "message_too_large",
        "virus",
        "protocol",
        "auto_reply",
        "complaint",
    }
)
"""Failures about the sender or the message, not the address: they never count towards
suppressing a recipient."""


def suppresses(category: str, hard: bool) -> bool:
    """Whether a final failure puts the address on the suppression list at once."""
    return hard and category in SUPPRESSING_CATEGORIES


def counts_as_soft(category: str, hard: bool) -> bool:
    """Whether a final failure counts towards the soft-bounce run of its address."""
    return not hard and category not in SENDER_SIDE
