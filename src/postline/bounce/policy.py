"""What a bounce verdict means for the address: hard or soft, suppress it, count it.

:data:`HARD_TABLE` is the hard/soft policy (docs/bounce-categories.md prints the same
table, and a test keeps the two equal); :func:`is_hard` applies it and is the only place
that decides whether a failure is hard.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "DEFAULT_READING",
    "HARD_TABLE",
    "SENDER_SIDE",
    "SUPPRESSING_CATEGORIES",
    "Reading",
    "counts_as_soft",
    "is_hard",
    "suppresses",
]

Reading = Literal["address", "generic", "never"]
"""How a verdict's wording bears on the address:

* ``address`` — the wording or the status says the address (mailbox or domain) does not
  exist: "user unknown", "no such user", "recipient not found", X.1.1, NXDOMAIN, null MX;
* ``generic`` — a refusal of the recipient that does not say why ("recipient rejected",
  "550 Rejected"): only the phase (RCPT TO) or an X.1.x address status proves the address;
* ``never`` — anything else, and a refusal whose own text says a filter or a policy
  refused this sender or message ("rejected by the recipient's filter", "not accepting
  mail from you")."""

# reading → (5xx at RCPT TO, 5xx at another or unknown phase, 4xx or a sender that gave
# up after temporary errors). A permanent failure is a 5xx reply, or a DSN with
# ``Action: failed`` and a 5.x.x status.
HARD_TABLE: dict[Reading, tuple[bool, bool, bool]] = {
    "address": (True, True, False),
    "generic": (True, False, False),
    "never": (False, False, False),
}

DEFAULT_READING: dict[str, Reading] = {
    "invalid_recipient": "address",
    "bad_domain": "address",
}
"""The reading of a category's rules unless a rule says otherwise (every category not
listed: ``never``)."""

# X.1.x address statuses other than X.1.0 (other), X.1.7 and X.1.8 (the sender).
_ADDRESS_STATUS = re.compile(r"^[45]\.1\.(?!0$|7$|8$)\d{1,3}$")


def is_hard(
    reading: Reading,
    *,
    permanent: bool,
    temporary_code: bool,
    command: str | None,
    status: str | None,
    unknown_every_try: bool = False,
) -> bool:
    """Whether a failure read as ``reading`` makes the address undeliverable.

    ``permanent``: the failure is final (a 5xx reply, or a DSN ``failed`` action);
    ``temporary_code``: the reply code or status is 4xx / 4.x.x (a sender that gave up
    after temporary errors proved nothing); ``command``: the SMTP command the refusal
    answered, when known; ``unknown_every_try``: a final report with status 4.1.1 and
    address wording — the receiver refused the address as unknown at every try.
    """
    if not permanent:
        return False
    at_rcpt, elsewhere, temporary = HARD_TABLE[reading]
    if temporary_code:
        return temporary or (unknown_every_try and reading == "address")
    if command == "RCPT TO":
        return at_rcpt
    if elsewhere:
        return True
    # A precise address status proves the address as well as the phase would.
    return at_rcpt and bool(status and _ADDRESS_STATUS.match(status))


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
