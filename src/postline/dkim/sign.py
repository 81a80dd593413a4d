"""DKIM signing (RFC 6376) with ``c=relaxed/relaxed``, RSA-SHA256 or Ed25519-SHA256.

:class:`Signer` turns a message into the ``DKIM-Signature`` header field to prepend to
it. The canonicalization and hashes are this package's own (:mod:`postline.dkim.canon`);
the private-key operation is OpenSSL's, through ``cryptography`` — RSA-2048 costs a
fraction of a millisecond there, against several in dkimpy's pure-Python RSA.

Signing once per distinct body: a body sent to many recipients is hashed once with
:func:`body_hash`, and each recipient's copy (the stored message with a few headers of
its own in front) is signed with ``sign(copy, body_hash=...)``, which then hashes only
the header fields. RSA PKCS#1 v1.5 and Ed25519 signatures are deterministic, so the
result is the same as hashing the body again.

Which header fields are signed (:data:`DEFAULT_HEADERS`): those a receiver shows or
acts on and relays leave alone. Each one present is signed as many times as it occurs,
taken from the bottom up (RFC 6376 §5.4.2). Names in :data:`DEFAULT_OVERSIGN` that are
present are listed once more than they occur ("oversigning", §8.15): the extra entry
stands for a field that does not exist, so a second From, Subject or List-Unsubscribe
added in transit breaks the signature instead of being shown unsigned. Trace fields
(Received, Return-Path) and others that relays add or rewrite are never signed.

Tags written: ``v a c d s t [x] h bh b`` — no ``i=`` (it defaults to ``@d``) and no
``l=`` (a body length limit lets anyone append content). The field is folded to lines of
at most 78 characters, ends with CRLF, and is pure ASCII.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Sequence
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from postline.dkim import canon
from postline.dkim.canon import body_hash, split_message
from postline.dkim.errors import DkimError, KeyFormatError, MessageFormatError
from postline.dkim.keys import DkimKey, PrivateKey, algorithm_of, load_private_key
from postline.errors import ConfigError

__all__ = [
    "DEFAULT_HEADERS",
    "DEFAULT_OVERSIGN",
    "DkimKey",
    "Signer",
    "body_hash",
    "split_message",
]

DEFAULT_HEADERS: Final[tuple[str, ...]] = (
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "To",
    "Cc",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "List-Id",
    "Feedback-ID",
    "X-Postline-ID",
)
"""Header fields signed when present, in the order they are listed in ``h=``."""

DEFAULT_OVERSIGN: Final[tuple[str, ...]] = (
    "From",
    "Subject",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)
"""Fields listed once more than they occur, so that none can be added after signing."""

_WIDTH: Final = 78  # RFC 5322 §2.1.1: lines SHOULD be no longer than 78 characters
_NAME: Final = "DKIM-Signature"
_BODY_HASH: Final = re.compile(r"[A-Za-z0-9+/]{43}=")  # base64 of a SHA-256 digest


class _Folder:
    """Builds a folded header field piece by piece, breaking lines where FWS may go."""

    def __init__(self, start: str) -> None:
        self.parts = [start]
        self.column = len(start)

    def add(self, text: str, *, space: bool = True) -> None:
        """Append ``text`` after a space (``space``) or directly, or on a new line."""
        width = len(text) + space
        if self.column + width > _WIDTH and self.column > 1:
            self.parts.append("\r\n\t")
            self.column = 1
        elif space:
            self.parts.append(" ")
            self.column += 1
        self.parts.append(text)
        self.column += len(text)

    def add_base64(self, value: str, suffix: str = "") -> None:
        """Append ``value`` directly, broken over lines as needed (FWS may go anywhere
        in a base64 string, RFC 6376 §3.5)."""
        text = value + suffix
        while text:
            room = _WIDTH - self.column
            if room < 8:
                self.parts.append("\r\n\t")
                self.column = 1
                room = _WIDTH - 1
            chunk, text = text[:room], text[room:]
            self.parts.append(chunk)
            self.column += len(chunk)

    def copy(self) -> _Folder:
        other = _Folder.__new__(_Folder)
        other.parts = self.parts.copy()
        other.column = self.column
        return other

    def text(self) -> str:
        return "".join(self.parts)


class Signer:
    """Signs messages with one :class:`DkimKey`.

    ``headers`` are the field names signed when present (case-insensitive; From is
    always signed); names in ``oversign`` are listed once more than they occur. With
    ``expire_after`` (seconds), signatures carry ``x=`` that much after ``t=``.
    Creating a signer parses the private key; keep one per key and reuse it.
    """

    def __init__(
        self,
        key: DkimKey,
        *,
        headers: Sequence[str] = DEFAULT_HEADERS,
        oversign: Sequence[str] = DEFAULT_OVERSIGN,
        expire_after: float | None = None,
    ) -> None:
        private = load_private_key(key.private_pem)
        if algorithm_of(private) != key.algorithm:
            raise KeyFormatError(
                f"the private key of {key.record_name} is a key for {algorithm_of(private)}, "
                f"not for {key.algorithm}"
            )
        if expire_after is not None and expire_after <= 0:
            raise ConfigError("DKIM signature expiry (expire_after) must be positive")
        names: list[str] = []
        seen: set[bytes] = set()
        for name in ("From", *headers):
            lower = name.strip().lower().encode("ascii")
            if not lower or b":" in lower or any(c <= 32 or c > 126 for c in lower):
                raise ConfigError(f"bad header field name {name!r} in the DKIM header list")
            if lower not in seen:
                seen.add(lower)
                names.append(name.strip())
        self._key = key
        self._private: PrivateKey = private
        self._names = [(name, name.lower().encode("ascii")) for name in names]
        self._oversign = frozenset(name.strip().lower().encode("ascii") for name in oversign)
        self._expire_after = expire_after
        # The start of every signature field is the same: fold it once.
        self._start = _Folder(f"{_NAME}:")
        for tag in ("v=1;", f"a={key.algorithm};", "c=relaxed/relaxed;", f"d={key.domain};"):
            self._start.add(tag)
        self._start.add(f"s={key.selector};")

    @property
    def key(self) -> DkimKey:
        return self._key

    def sign(
        self, message: bytes, *, body_hash: str | None = None, now: float | None = None
    ) -> bytes:
        """The ``DKIM-Signature: ...\\r\\n`` field to prepend to ``message``.

        ``message`` is the whole RFC 5322 message (CRLF line endings; bare LF or CR
        ones are normalised, see :mod:`postline.dkim.canon`). ``body_hash``, from
        :func:`body_hash` of this message's body, saves hashing the body again. ``now``
        (Unix time) is the ``t=`` value; default: the current time. Raises
        :class:`MessageFormatError` when the message has no From field.
        """
        if body_hash is not None and not _BODY_HASH.fullmatch(body_hash):
            raise DkimError(f"not a body hash from body_hash(): {body_hash!r}")
        # Only the header block is read when the body hash is given: no copy of the body.
        head_end, body_start = canon._locate(message)
        if canon._has_bare_newline(message[:head_end]):
            message = canon.normalize_newlines(message)
            head_end, body_start = canon._locate(message)
        fields = canon.parse_headers(message[:head_end])
        by_name: dict[bytes, list[tuple[bytes, bytes]]] = {}
        for field in fields:
            by_name.setdefault(field[0].lower(), []).append(field)
        if b"from" not in by_name:
            raise MessageFormatError(
                "the message has no From header field; DKIM signs From, so it must have one"
            )

        listed: list[str] = []
        hashed: list[bytes] = []
        for name, lower in self._names:
            present = by_name.get(lower)
            if not present:
                continue
            # Bottom-up selection: the n-th listing of a name signs its n-th last field.
            for field_name, value in reversed(present):
                listed.append(name)
                hashed.append(canon.relaxed_header(field_name, value))
            if lower in self._oversign:
                listed.append(name)
        bh = body_hash if body_hash is not None else canon.body_hash(message[body_start:])

        stamp = int(time.time() if now is None else now)
        folder = self._start.copy()
        folder.add(f"t={stamp};")
        if self._expire_after is not None:
            folder.add(f"x={stamp + max(1, round(self._expire_after))};")
        # FWS may go before each colon of h= (RFC 6376 §3.5), so lines break there.
        pieces = [f"h={listed[0]}", *(f":{name}" for name in listed[1:])]
        pieces[-1] += ";"
        folder.add(pieces[0])
        for piece in pieces[1:]:
            folder.add(piece, space=False)
        folder.add("bh=")
        folder.add_base64(bh, ";")
        folder.add("b=")
        unsigned = folder.text()

        # The signature field itself is hashed last, with an empty b= and no CRLF.
        value = unsigned[len(_NAME) + 1 :].encode("ascii")
        hashed.append(canon.relaxed_header(_NAME.encode("ascii"), value)[:-2])
        data = b"".join(hashed)
        if isinstance(self._private, rsa.RSAPrivateKey):
            signature = self._private.sign(data, padding.PKCS1v15(), hashes.SHA256())
        else:
            signature = self._private.sign(hashlib.sha256(data).digest())
        folder.add_base64(base64.b64encode(signature).decode("ascii"))
        return folder.text().encode("ascii") + b"\r\n"
