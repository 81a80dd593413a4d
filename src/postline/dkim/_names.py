"""Domain names and selectors as DKIM and DNS records write them.

A ``d=`` domain and every DNS name postline asks a customer to publish use the ASCII
form of the name: IDNA A-labels (``xn--bcher-kva.example``), lower case, no trailing dot
(RFC 6376 §3.5, RFC 8616). A selector is one or more labels of letters, digits, hyphens
and underscores.
"""

from __future__ import annotations

import re

import dns.exception
import dns.name

__all__ = ["domain_name", "selector_name"]

_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\Z")
_MAX_NAME = 253


def _labels(name: str) -> bool:
    return len(name) <= _MAX_NAME and all(_LABEL.match(label) for label in name.split("."))


def domain_name(text: str) -> str:
    """``text`` as an ASCII, lower-case domain name without the trailing dot.

    Raises ``ValueError`` when it is not a usable domain name.
    """
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("empty domain name")
    if not name.isascii():
        try:
            name = dns.name.from_unicode(name).to_text(omit_final_dot=True)
        except (dns.exception.DNSException, UnicodeError) as exc:
            raise ValueError(f"bad domain name {text!r}: {exc}") from None
    name = name.lower()
    if "." not in name or not _labels(name):
        raise ValueError(f"bad domain name {text!r}")
    return name


def selector_name(text: str) -> str:
    """``text`` as a selector (lower case); raises ``ValueError`` when it is not one."""
    name = text.strip().lower()
    if not name or not _labels(name):
        raise ValueError(f"bad selector {text!r}: labels of letters, digits, '-' and '_'")
    return name
