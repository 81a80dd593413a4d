"""Signed VERP return paths: ``b-<token>@<bounce domain>`` names one recipient row.

The token of format version ``1`` is, in lower-case Crockford base32 (no ``i``, ``l``,
``o``, ``u``)::

    1 <message id: 26> <recipient index: 1-13, no leading zero> <MAC: 16>

The MAC is HMAC-SHA256 over a domain-separation prefix, the version, the message id and
the index, truncated to 80 bits. Binding both id and index means neither can be swapped,
and the fixed alphabet survives MTAs that lower-case local parts or mangle ``+`` and
``=``. The whole local part is at most 58 characters (the limit is 64).

:func:`decode` is the check the inbound server runs on every ``RCPT TO``: a length and
pattern test rejects anything that is not a token before any HMAC is computed, and the
MAC is compared in constant time. Several secrets may be given to rotate keys: tokens
made with any of them decode.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from postline.bounce.tokens import MAX_INDEX, MAX_TOKEN, MIN_TOKEN, VERSION, RowToken, secret_keys

__all__ = [
    "MAX_INDEX",
    "PREFIX",
    "VERSION",
    "decode",
    "encode",
    "return_path",
]

PREFIX = "b-"
_TOKENS = RowToken("postline-verp", "VERP")
_MAX_LOCAL = 64
_MAX_ADDRESS = _MAX_LOCAL + 1 + 255
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def encode(message_id: str, idx: int, secret: bytes) -> str:
    """The token (the local part after ``b-``) for recipient ``idx`` of ``message_id``.

    Raises ``ValueError`` for an id that is not a ULID, an index outside
    ``0..MAX_INDEX`` or an empty secret.
    """
    (key,) = secret_keys(secret, "VERP")
    return _TOKENS.encode(message_id, idx, key)


def return_path(message_id: str, idx: int, secret: bytes, domain: str) -> str:
    """The envelope sender ``b-<token>@<domain>`` for recipient ``idx`` of ``message_id``."""
    domain = domain.rstrip(".")
    if not _DOMAIN.fullmatch(domain) or ".." in domain:
        raise ValueError(f"not a bounce domain: {domain!r}")
    return f"{PREFIX}{encode(message_id, idx, secret)}@{domain.lower()}"


def decode(local_part_or_address: str, secret: bytes | Sequence[bytes]) -> tuple[str, int] | None:
    """``(message id, recipient index)`` from ``b-<token>`` or ``b-<token>@domain``.

    Letter case does not matter; the domain is not checked (the inbound server accepts
    only its bounce domains). Anything forged, mangled, truncated, made with an unknown
    secret or not a VERP address gives None. Raises ``ValueError`` only when no usable
    secret is given (a configuration error).
    """
    secret_keys(secret, "VERP")
    value = local_part_or_address
    if not isinstance(value, str) or len(value) > _MAX_ADDRESS:
        return None
    local = value.rpartition("@")[0] if "@" in value else value
    if not len(PREFIX) + MIN_TOKEN <= len(local) <= min(_MAX_LOCAL, len(PREFIX) + MAX_TOKEN):
        return None
    if local[: len(PREFIX)].lower() != PREFIX:
        return None
    return _TOKENS.decode(local[len(PREFIX) :], secret)
