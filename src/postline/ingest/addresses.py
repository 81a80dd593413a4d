"""Address validation for envelopes and headers (email-validator; IDN and SMTPUTF8 aware).

Almost every address is plain ASCII: a dot-atom local part and a domain that many other
addresses share. Those take a fast path that gives exactly what email-validator gives
(the domain checked by email-validator itself, once per domain; the local part by the
same dot-atom rule); anything else, and every address either path refuses, goes through
email-validator whole, so errors read the same.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

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


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_DOT_ATOM = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")
"""RFC 5322 dot-atom text in ASCII: the local parts email-validator keeps as given."""
_FOLDED_NAMES = frozenset(name.lower() for name in CASE_INSENSITIVE_MAILBOX_NAMES)
"""Local parts email-validator lower-cases (RFC 2142 role names): left to it."""
_MAX_LENGTH = 254
"""email-validator's limit on the whole address, in UTF-8 octets (RFC 3696 errata)."""


def _checked(value: str) -> Address:
    """``value`` through email-validator whole; raises :class:`InvalidAddress`."""
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


@lru_cache(maxsize=16384)
def _domain(domain: str) -> tuple[str, str] | None:
    """(ASCII form lower-cased, internationalised form) of a domain as email-validator
    checks it, or None when it refuses the domain. Its domain check does not depend on
    the local part, so any valid one stands in for it."""
    try:
        info = validate_email(
            f"a@{domain}", check_deliverability=False, allow_smtputf8=True, test_environment=True
        )
    except EmailNotValidError:
        return None
    return info.ascii_domain.lower(), info.domain


def _fast(value: str) -> Address | None:
    """An ASCII ``local@domain`` with a dot-atom local part, as email-validator would
    return it; None for any other input (and for any it would refuse)."""
    if not value.isascii() or value.count("@") != 1:
        return None
    local, _, domain_part = value.partition("@")
    if _DOT_ATOM.fullmatch(local) is None or local.lower() in _FOLDED_NAMES:
        return None
    if not domain_part or domain_part[0] == "[":
        return None
    forms = _domain(domain_part)
    if forms is None:
        return None
    ascii_domain, domain = forms
    # email-validator's length checks: as given, normalised, with the ASCII domain.
    if (
        len(value) > _MAX_LENGTH
        or len(local) + 1 + len(domain.encode()) > _MAX_LENGTH
        or len(local) + 1 + len(ascii_domain) > _MAX_LENGTH
    ):
        return None
    return Address(address=f"{local}@{ascii_domain}", domain=ascii_domain, smtputf8=False)


@lru_cache(maxsize=65536)
def parse_address(value: str) -> Address:
    """Validate one bare address (no display name); raises :class:`InvalidAddress`."""
    if not value or len(value) > 320:
        raise InvalidAddress(f"{value[:40]!r} is not an email address")
    if any(c in value for c in "\r\n\x00<>"):
        raise InvalidAddress(f"{value[:40]!r} contains characters not allowed in an address")
    return _fast(value) or _checked(value)
