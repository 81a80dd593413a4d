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
_PLAIN = re.compile(rf"({_ATEXT}(?:\.{_ATEXT})*)@([^@\[][^@]*)")
"""A local part of RFC 5322 dot-atom text (ASCII: the local parts email-validator keeps as
given), one @ and a domain that is not a literal."""
_FORBIDDEN = re.compile(r"[\r\n\x00<>]")
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
def _domain(domain: str) -> tuple[str, int] | None:
    """The ASCII form (lower-cased) of a domain as email-validator checks it, and the
    longest of its three forms in UTF-8 octets (as given, internationalised, ASCII: the
    address is checked in each); None when email-validator refuses the domain. Its
    domain check does not depend on the local part, so any valid one stands in for it."""
    try:
        info = validate_email(
            f"a@{domain}", check_deliverability=False, allow_smtputf8=True, test_environment=True
        )
    except EmailNotValidError:
        return None
    longest = max(len(domain.encode()), len(info.domain.encode()), len(info.ascii_domain))
    return info.ascii_domain.lower(), longest


def _fast(value: str) -> Address | None:
    """An ASCII ``local@domain`` with a dot-atom local part, as email-validator would
    return it; None for any other input (and for any it would refuse)."""
    plain = _PLAIN.fullmatch(value)
    if plain is None or not value.isascii():
        return None
    local, domain_part = plain.groups()
    if local.lower() in _FOLDED_NAMES:
        return None
    forms = _domain(domain_part)
    if forms is None:
        return None
    ascii_domain, longest = forms
    if len(local) + 1 + longest > _MAX_LENGTH:
        return None
    return Address(address=f"{local}@{ascii_domain}", domain=ascii_domain, smtputf8=False)


@lru_cache(maxsize=65536)
def parse_address(value: str) -> Address:
    """Validate one bare address (no display name); raises :class:`InvalidAddress`."""
    if not value or len(value) > 320:
        raise InvalidAddress(f"{value[:40]!r} is not an email address")
    if _FORBIDDEN.search(value):
        raise InvalidAddress(f"{value[:40]!r} contains characters not allowed in an address")
    return _fast(value) or _checked(value)
