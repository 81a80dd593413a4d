"""Leased work as the delivery package passes it around: a transaction's recipients and
the host it goes to.

Plain data shared by the engine, the sites, the source paths and the outcome rules; it
imports nothing else of :mod:`postline.deliver`, so every module of the package may use
it without depending on another.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from postline.store.base import LeasedMessage, LeasedRecipient

__all__ = ["Host", "WorkItem"]


@dataclass(frozen=True, slots=True)
class Host:
    """One address to connect to, with the MX name it came from."""

    name: str
    address: str
    port: int


@dataclass(slots=True)
class WorkItem:
    """Recipients of one message, in one domain, for one transaction."""

    message: LeasedMessage
    recipients: list[LeasedRecipient]
    domain: str
    lease_until: float
    queued_at: float = field(default_factory=time.monotonic)
