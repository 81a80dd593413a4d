"""What is added to a stored message when it is sent: per-recipient headers and DKIM.

The store keeps one body per message however many recipients it has. At send time (one
recipient per transaction when the headers are per recipient) the engine calls the
:class:`Finalizer`, which prepends

* ``List-Unsubscribe`` / ``List-Unsubscribe-Post`` (RFC 8058) naming this recipient, for
  messages of the configured streams (``marketing`` by default) that do not carry a
  ``List-Unsubscribe`` of their own (a sender that runs its own unsubscribe keeps it,
  and a message never has two);
* a ``DKIM-Signature`` by the tenant's verified domain the From address aligns with,
  covering those headers too (RFC 8058 §4 asks for it).

The body hash and the From domain are computed once per message (LRU caches), so a
message sent to many recipients costs one body hash and, per recipient, one header
hash and one signature.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from typing import Generic, Protocol, TypeVar

from postline.dkim import body_hash, split_message

__all__ = ["Finalizer"]

V = TypeVar("V")

_FROM = re.compile(rb"^From:[^\r\n]*(?:\r\n[ \t][^\r\n]*)*", re.IGNORECASE | re.MULTILINE)
_OWN_UNSUBSCRIBE = re.compile(rb"^List-Unsubscribe:", re.IGNORECASE | re.MULTILINE)
_DOMAIN = re.compile(rb"@([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)\s*>?\s*(?:,|$|\()")


class _Message(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def body(self) -> bytes: ...
    @property
    def source(self) -> str: ...
    @property
    def stream(self) -> str: ...


class _Recipient(Protocol):
    @property
    def idx(self) -> int: ...


class _Item(Protocol):
    @property
    def message(self) -> _Message: ...
    @property
    def recipients(self) -> Sequence[_Recipient]: ...


class _Signer(Protocol):
    def sign(self, message: bytes, *, body_hash: str | None = None) -> bytes: ...


class _Lru(Generic[V]):
    def __init__(self, size: int) -> None:
        self.size = size
        self.data: OrderedDict[str, V] = OrderedDict()

    def get(self, key: str) -> V | None:
        value = self.data.get(key)
        if value is not None:
            self.data.move_to_end(key)
        return value

    def put(self, key: str, value: V) -> None:
        self.data[key] = value
        if len(self.data) > self.size:
            self.data.popitem(last=False)


def from_domain(message: bytes) -> str:
    """The domain of the (first) From address of a message's header block, lower case."""
    head, _ = split_message(message)
    m = _FROM.search(head)
    if m is None:
        return ""
    value = m.group(0).replace(b"\r\n", b"")
    found = _DOMAIN.search(value)
    return found.group(1).decode("ascii").lower() if found else ""


class Finalizer:
    def __init__(
        self,
        *,
        signer_for: Callable[[str, str], _Signer | None] | None,
        signs_for: Callable[[str], bool] = lambda tenant_id: True,
        unsubscribe: Callable[[str, int], list[tuple[str, str]]] | None,
        unsubscribe_streams: Collection[str],
        cache_size: int = 4096,
    ) -> None:
        self.signer_for = signer_for
        self.signs_for = signs_for
        self.unsubscribe = unsubscribe
        self.unsubscribe_streams = frozenset(unsubscribe_streams)
        self._body_hashes: _Lru[str] = _Lru(cache_size)
        self._from: _Lru[str] = _Lru(cache_size)
        self._own_unsubscribe: _Lru[bool] = _Lru(cache_size)

    def per_recipient(self, stream: str) -> bool:
        """Whether mail of ``stream`` gets headers naming its recipient (so one recipient
        per transaction)."""
        return self.unsubscribe is not None and stream in self.unsubscribe_streams

    def _has_own_unsubscribe(self, message_id: str, body: bytes) -> bool:
        known = self._own_unsubscribe.get(message_id)
        if known is None:
            head, _ = split_message(body)
            known = _OWN_UNSUBSCRIBE.search(head) is not None
            self._own_unsubscribe.put(message_id, known)
        return known

    def __call__(self, item: _Item) -> bytes:
        m = item.message
        message = m.body
        if (
            self.unsubscribe is not None
            and m.stream in self.unsubscribe_streams
            and m.source != "dsn"
            and len(item.recipients) == 1
        ):
            own = self._has_own_unsubscribe(m.id, m.body)
            extra = None if own else self.unsubscribe(m.id, item.recipients[0].idx)
            if extra:
                head = "".join(f"{name}: {value}\r\n" for name, value in extra)
                message = head.encode("ascii") + message
        if self.signer_for is None or not self.signs_for(m.tenant_id):
            return message
        domain = self._from.get(m.id)
        if domain is None:
            domain = from_domain(m.body)
            self._from.put(m.id, domain)
        signer = self.signer_for(m.tenant_id, domain) if domain else None
        if signer is None:
            return message
        bh = self._body_hashes.get(m.id)
        if bh is None:
            bh = body_hash(split_message(m.body)[1])
            self._body_hashes.put(m.id, bh)
        return signer.sign(message, body_hash=bh) + message
