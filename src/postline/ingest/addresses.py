"""Address validation for envelopes and headers (email-validator; IDN and SMTPUTF8 aware)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

__all__ = ["Address", "InvalidAddress", "parse_address"]


class InvalidAddress(ValueError):
    """The address is not a valid mailbox; the message says why."""


@dataclass(frozen=True, slots=True)
class Address:
    """A validated mailbox.

    ``address`` is the envelope form: the local part as given and the domain in ASCII
    (IDNA) form; ``domain`` is that ASCII domain, lower-cased — the queue partition key.
    ``smtputf8`` is True when the local part is not ASCII (the message then needs SMTPUTF8).
    """

    address: str
    domain: str
    smtputf8: bool


@lru_cache(maxsize=65536)
def parse_address(value: str) -> Address:
    """Validate one bare address (no display name); raises :class:`InvalidAddress`."""
    if not value or len(value) > 320:
        raise InvalidAddress(f"{value[:40]!r} is not an email address")
    if any(c in value for c in "\r\n\x00<>"):
        raise InvalidAddress(f"{value[:40]!r} contains characters not allowed in an address")
    try:
        info = validate_email(
            value,
            check_deliverability=False,
            allow_smtputf8=True,
            # The reserved .test TLD stays usable for staging against a simulator.
            test_environment=True,
        )
    except EmailNotValidError as exc:
        raise InvalidAddress(f"{value!r} is not a valid email address: {exc}") from exc
    domain = info.ascii_domain.lower()
    local = info.local_part
    return Address(address=f"{local}@{domain}", domain=domain, smtputf8=not local.isascii())
