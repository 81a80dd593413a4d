"""RFC 8058 one-click unsubscribe: signed links and their effect.

A token names one recipient row, ``(message id, recipient index)``. Its format matches
the VERP token of :mod:`postline.bounce.verp` (lower-case Crockford base32, no ``i``,
``l``, ``o``, ``u``)::

    1 <message id: 26> <recipient index: 1-13, no leading zero> <MAC: 16>

but its MAC is HMAC-SHA256 over another domain-separation prefix
(``postline-unsubscribe``), truncated to 80 bits: a VERP token is never a valid
unsubscribe token and an unsubscribe token is never a valid return path, although both
are signed with the node's VERP secrets (``[bounce] secret``, ``previous_secrets``, or
``data_dir/verp.key``). The alphabet is URL-safe and survives MTAs that change the case
of local parts, so one token serves both forms of the ``List-Unsubscribe`` header:

* ``https://<public url>/u/<token>`` — the one-click POST of RFC 8058 (the API route
  ``/u/{token}``);
* ``mailto:u-<token>@<bounce domain>?subject=unsubscribe`` — RFC 2369 mail to the
  inbound server (``u-`` plus the token is at most 58 characters).

:func:`headers` is what the delivery engine adds per recipient; it is pure and costs one
HMAC. :class:`Unsubscriber` applies an unsubscribe (the API route and the feedback
processor share it): the address goes on its tenant's suppression list (``unsubscribe``)
and an ``unsubscribed`` event is recorded on the recipient, once.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from postline.bounce.tokens import MAX_INDEX, MAX_TOKEN, VERSION, RowToken, secret_keys
from postline.metrics import Metrics
from postline.model import EventType
from postline.store.base import EventQuery, NewEvent, Store, Suppression

__all__ = [
    "MAX_INDEX",
    "PATH",
    "POST_HEADER",
    "PREFIX",
    "VERSION",
    "Unsubscribed",
    "Unsubscriber",
    "decode",
    "decode_address",
    "encode",
    "headers",
    "mailto",
    "url",
]

PREFIX = "u-"
"""Local-part prefix of the mailto form: ``u-<token>@<bounce domain>``."""
PATH = "/u/"
"""Path of the one-click URL under the public URL: ``<public url>/u/<token>``."""
_TOKENS = RowToken("postline-unsubscribe", "unsubscribe")
_MAX_ADDRESS = len(PREFIX) + MAX_TOKEN + 1 + 255
_DOMAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
POST_HEADER = ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")
# Suppressions the recipient asked for themselves: an unsubscribe leaves them as they are.
_KEEP_REASONS = frozenset({"unsubscribe", "complaint"})


def encode(message_id: str, idx: int, secret: bytes | Sequence[bytes]) -> str:
    """The token for recipient ``idx`` of ``message_id``, signed with ``secret`` (or the
    first of several secrets).

    Raises ``ValueError`` for an id that is not a ULID, an index outside
    ``0..MAX_INDEX`` or an empty secret.
    """
    return _TOKENS.encode(message_id, idx, secret)


def decode(token: str, secrets: bytes | Sequence[bytes]) -> tuple[str, int] | None:
    """``(message id, recipient index)`` from a token (the part after ``/u/``).

    Letter case does not matter. Anything forged, mangled, truncated, made with an
    unknown secret, a VERP token or not a token at all gives None; the MAC is compared
    in constant time against every secret. Raises ``ValueError`` only when no usable
    secret is given (a configuration error).
    """
    return _TOKENS.decode(token, secrets)


def decode_address(
    local_part_or_address: str, secrets: bytes | Sequence[bytes]
) -> tuple[str, int] | None:
    """Like :func:`decode`, for the mailto form ``u-<token>`` or ``u-<token>@domain``.

    The domain is not checked (the inbound server accepts only its bounce domain);
    anything without the ``u-`` prefix gives None.
    """
    keys = secret_keys(secrets, "unsubscribe")
    value = local_part_or_address
    if not isinstance(value, str) or len(value) > _MAX_ADDRESS:
        return None
    local = value.rpartition("@")[0] if "@" in value else value
    if local[: len(PREFIX)].lower() != PREFIX:
        return None
    return decode(local[len(PREFIX) :], keys)


def url(token: str, public_url: str) -> str:
    """The one-click URL of ``token``: ``<public_url>/u/<token>``."""
    return f"{public_url.rstrip('/')}{PATH}{token}"


def mailto(token: str, bounce_domain: str) -> str:
    """The mailto URI of ``token``: ``mailto:u-<token>@<domain>?subject=unsubscribe``."""
    domain = bounce_domain.rstrip(".")
    if not _DOMAIN.fullmatch(domain) or ".." in domain:
        raise ValueError(f"not a bounce domain: {bounce_domain!r}")
    return f"mailto:{PREFIX}{token}@{domain.lower()}?subject=unsubscribe"


def headers(
    message_id: str,
    idx: int,
    *,
    secrets: bytes | Sequence[bytes],
    public_url: str,
    bounce_domain: str,
) -> list[tuple[str, str]]:
    """The ``List-Unsubscribe`` headers for recipient ``idx`` of ``message_id``.

    With a public URL and a bounce domain::

        List-Unsubscribe: <https://mail.example.com/u/TOKEN>,
            <mailto:u-TOKEN@bounce.example.com?subject=unsubscribe>
        List-Unsubscribe-Post: List-Unsubscribe=One-Click

    (shown folded; each value is returned on one line, without CR or LF). Without a
    public URL only the mailto URI is given and there is no ``List-Unsubscribe-Post``
    (RFC 8058 one-click needs an HTTP URI); without a bounce domain only the URL; with
    neither, no header. The token is signed with the first of ``secrets``. Raises
    ``ValueError`` like :func:`encode`, or for a malformed bounce domain.
    """
    if not public_url and not bounce_domain:
        return []
    token = encode(message_id, idx, secrets)
    uris = []
    if public_url:
        uris.append(f"<{url(token, public_url)}>")
    if bounce_domain:
        uris.append(f"<{mailto(token, bounce_domain)}>")
    out = [("List-Unsubscribe", ", ".join(uris))]
    if public_url:
        out.append(POST_HEADER)
    return out


@dataclass(frozen=True, slots=True)
class Unsubscribed:
    """What an unsubscribe found and did."""

    tenant_id: str
    message_id: str
    idx: int
    address: str
    suppressed: bool
    """A suppression entry was written (False: the address was already unsubscribed, or
    suppressed for good after a complaint)."""
    recorded: bool
    """An ``unsubscribed`` event was recorded (False: a repeat of an earlier one)."""

    @property
    def new(self) -> bool:
        return self.suppressed or self.recorded


class Unsubscriber:
    """Verifies tokens and applies unsubscribes; one per node, shared by the API route
    and the feedback processor.

    Applying is idempotent: the address gets a lasting ``unsubscribe`` suppression of
    the message's tenant unless it already has one (or a lasting ``complaint`` one);
    any other entry (a bounce, a manual entry, one that lapses) is replaced. An
    ``unsubscribed`` event is recorded when the suppression was written, or when the
    recipient row has none yet. Unsubscribes of one node run one at a time, so two
    requests for one link at once record one event.
    """

    def __init__(
        self,
        store: Store,
        *,
        secrets: Sequence[bytes],
        node_id: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.secrets = secret_keys(secrets, "unsubscribe")
        self.node_id = node_id
        self.metrics = metrics
        self._lock = asyncio.Lock()

    def verify(self, token: str) -> bool:
        """Whether ``token`` is correctly signed."""
        return decode(token, self.secrets) is not None

    async def apply_token(self, token: str, *, source: str) -> bool | None:
        """Apply the unsubscribe ``token`` names: None when the token is not valid or
        names no stored recipient; else whether anything was written."""
        ref = decode(token, self.secrets)
        if ref is None:
            return None
        done = await self.apply(ref[0], ref[1], source=source)
        return None if done is None else done.new

    async def apply(
        self,
        message_id: str,
        idx: int,
        *,
        source: str,
        detail: str = "",
        data: dict[str, Any] | None = None,
    ) -> Unsubscribed | None:
        """Unsubscribe recipient ``idx`` of ``message_id`` (any tenant); None when there is
        no such recipient. ``source`` (``one-click``, ``mailto``) goes in the suppression
        entry and the event; ``data`` adds to the event's data."""
        view = await self.store.get_message(None, message_id)
        if view is None:
            return None
        rcpt = next((r for r in view.recipients if r.idx == idx), None)
        if rcpt is None:
            return None
        tenant_id = view.tenant_id
        address = rcpt.address.lower()
        async with self._lock:
            now = time.time()
            current = (await self.store.suppressed(tenant_id, [address], now=now)).get(address)
            keep = (
                current is not None
                and current.tenant_id == tenant_id
                and current.expires_at is None
                and current.reason in _KEEP_REASONS
            )
            if not keep:
                await self.store.add_suppressions(
                    [
                        Suppression(
                            tenant_id=tenant_id,
                            address=address,
                            reason="unsubscribe",
                            created_at=now,
                            source=source,
                            detail=detail or f"List-Unsubscribe ({source})",
                            message_id=view.id,
                        )
                    ]
                )
                if self.metrics is not None:
                    self.metrics.suppressions.labels("unsubscribe").inc()
            record = not keep or not await self._recorded(tenant_id, view.id, idx)
            if record:
                await self.store.append_events(
                    [
                        NewEvent(
                            at=now,
                            tenant_id=tenant_id,
                            type=EventType.UNSUBSCRIBED,
                            message_id=view.id,
                            recipient_idx=idx,
                            recipient=rcpt.address,
                            data={"source": source, "suppressed": not keep, **(data or {})},
                        )
                    ],
                    node_id=self.node_id,
                )
        return Unsubscribed(tenant_id, view.id, idx, rcpt.address, not keep, record)

    async def _recorded(self, tenant_id: str, message_id: str, idx: int) -> bool:
        after = 0
        while True:
            page = await self.store.events(
                EventQuery(
                    tenant_id=tenant_id,
                    after=after,
                    limit=500,
                    types=(EventType.UNSUBSCRIBED.value,),
                    message_id=message_id,
                )
            )
            if any(e.recipient_idx == idx for e in page):
                return True
            if len(page) < 500:
                return False
            after = page[-1].id
