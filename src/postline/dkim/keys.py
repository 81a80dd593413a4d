"""DKIM keys: generation, PEM, the DNS ``p=`` value, selectors, and sealing at rest.

A sender domain gets an RSA key (2048 bits by default; 1024, 3072 and 4096 are allowed)
or an Ed25519 key (RFC 8463), generated with ``cryptography``. Private keys travel as
PKCS#8 PEM bytes; :func:`load_private_key` also reads the traditional PKCS#1 RSA form.

The public half is what the domain publishes in its ``<selector>._domainkey`` TXT record:
:func:`public_key_value` gives the ``p=`` value — base64 of the DER SubjectPublicKeyInfo
for RSA (what every verifier accepts), base64 of the raw 32-byte key for Ed25519
(RFC 8463 §4.2).

Private keys are stored sealed, never in clear: :func:`seal` encrypts the PEM with
AES-256-GCM under a master key derived from the node's configured secret by
:func:`master_key` (HKDF-SHA256), with a fresh random 96-bit nonce per seal. A sealed key
is ``b"PLDK" + version byte + nonce + ciphertext and tag``; the magic and version are
authenticated, so a future format can be told apart and a changed byte is caught. An
optional ``context`` (e.g. ``b"shop.example/pl202611r"``) is authenticated too, so a
sealed key copied to another domain's row does not open.

Selectors (:func:`selector_for`) name a key by month and algorithm: ``pl<yyyymm>r`` for
RSA and ``pl<yyyymm>e`` for Ed25519 (``pl202611r``). A rotation publishes next month's
selector beside the current one, so a domain can be signed with both algorithms and
rotated monthly without name clashes; another ``prefix`` gives a second key in one month.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias, get_args

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from postline.dkim._names import domain_name, selector_name
from postline.dkim.errors import KeyFormatError, SealError
from postline.errors import ConfigError

__all__ = [
    "ALGORITHMS",
    "RSA_KEY_SIZES",
    "Algorithm",
    "DkimKey",
    "PrivateKey",
    "algorithm_of",
    "generate_private_key",
    "key_type",
    "load_private_key",
    "master_key",
    "new_key",
    "public_key_value",
    "seal",
    "selector_for",
    "unseal",
]

Algorithm: TypeAlias = Literal["rsa-sha256", "ed25519-sha256"]
"""A DKIM signing algorithm (the ``a=`` tag)."""

ALGORITHMS: Final[tuple[Algorithm, ...]] = get_args(Algorithm)

PrivateKey: TypeAlias = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

RSA_KEY_SIZES: Final = (1024, 2048, 3072, 4096)
"""RSA sizes :func:`generate_private_key` makes; 2048 is the default (RFC 8301 §3.2)."""

_RSA_MIN_BITS = 1024  # RFC 8301 §3.2: verifiers reject smaller keys
_SEAL_MAGIC: Final = b"PLDK"
_SEAL_VERSION: Final = 1
_SEAL_HEADER: Final = _SEAL_MAGIC + bytes([_SEAL_VERSION])
_NONCE_SIZE: Final = 12
_TAG_SIZE: Final = 16
_HKDF_SALT: Final = b"postline.dkim"
_HKDF_INFO: Final = b"postline dkim private key sealing v1"


@dataclass(frozen=True)
class DkimKey:
    """A signing key of one sender domain: ``d=``, ``s=``, ``a=`` and the private PEM.

    ``domain`` is stored in its ASCII form (IDNA A-labels, lower case) and ``selector``
    in lower case; a bad domain, selector or algorithm raises :class:`KeyFormatError`.
    Whether the PEM is a key of ``algorithm`` is checked when a signer loads it. The
    private key is left out of ``repr()`` so it never reaches a log line.
    """

    domain: str
    selector: str
    algorithm: Algorithm
    private_pem: bytes = field(repr=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "domain", domain_name(self.domain))
            object.__setattr__(self, "selector", selector_name(self.selector))
        except ValueError as exc:
            raise KeyFormatError(str(exc)) from None
        if self.algorithm not in ALGORITHMS:
            raise KeyFormatError(
                f"unsupported DKIM algorithm {self.algorithm!r}: use one of {ALGORITHMS}"
            )

    @property
    def public_key(self) -> str:
        """The ``p=`` value of this key's DNS record."""
        return public_key_value(self.private_pem)

    @property
    def record_name(self) -> str:
        """``<selector>._domainkey.<domain>``, where the public key is published."""
        return f"{self.selector}._domainkey.{self.domain}"


def key_type(algorithm: Algorithm) -> Literal["rsa", "ed25519"]:
    """The ``k=`` tag of the DNS record for keys of ``algorithm``."""
    if algorithm == "rsa-sha256":
        return "rsa"
    if algorithm == "ed25519-sha256":
        return "ed25519"
    raise KeyFormatError(f"unsupported DKIM algorithm {algorithm!r}: use one of {ALGORITHMS}")


def generate_private_key(algorithm: Algorithm = "rsa-sha256", *, bits: int = 2048) -> bytes:
    """A new private key of ``algorithm`` as PKCS#8 PEM; ``bits`` is for RSA only."""
    key: PrivateKey
    if algorithm == "rsa-sha256":
        if bits not in RSA_KEY_SIZES:
            raise KeyFormatError(f"RSA key size {bits} not allowed: use one of {RSA_KEY_SIZES}")
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    elif algorithm == "ed25519-sha256":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise KeyFormatError(f"unsupported DKIM algorithm {algorithm!r}: use one of {ALGORITHMS}")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_key(
    domain: str,
    algorithm: Algorithm = "rsa-sha256",
    *,
    bits: int = 2048,
    selector: str | None = None,
    now: float | None = None,
) -> DkimKey:
    """A freshly generated key for ``domain``; the selector defaults to
    :func:`selector_for` (``algorithm``, ``now``)."""
    pem = generate_private_key(algorithm, bits=bits)
    return DkimKey(domain, selector or selector_for(algorithm, now), algorithm, pem)


def load_private_key(pem: bytes) -> PrivateKey:
    """The private key in ``pem`` (PKCS#8, or PKCS#1 for RSA), unencrypted.

    Raises :class:`KeyFormatError` for anything but an RSA key of at least 1024 bits or
    an Ed25519 key.
    """
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"cannot read the DKIM private key: {exc}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _RSA_MIN_BITS:
            raise KeyFormatError(
                f"RSA key of {key.key_size} bits is too small: receivers reject DKIM keys "
                f"under {_RSA_MIN_BITS} bits (RFC 8301)"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise KeyFormatError(
        f"unsupported DKIM key type {type(key).__name__}: DKIM keys are RSA or Ed25519"
    )


def algorithm_of(key: PrivateKey) -> Algorithm:
    """The DKIM algorithm that signs with ``key``."""
    return "rsa-sha256" if isinstance(key, rsa.RSAPrivateKey) else "ed25519-sha256"


def public_key_value(private_pem: bytes) -> str:
    """The ``p=`` value (base64) publishing the public half of ``private_pem``."""
    key = load_private_key(private_pem)
    if isinstance(key, rsa.RSAPrivateKey):
        der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        der = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
    return base64.b64encode(der).decode("ascii")


def selector_for(
    algorithm: Algorithm = "rsa-sha256", now: float | None = None, *, prefix: str = "pl"
) -> str:
    """The selector of a key made at ``now`` (UTC; default: the current time).

    ``<prefix><yyyymm>r`` for RSA, ``<prefix><yyyymm>e`` for Ed25519: ``pl202611r``.
    """
    suffix = "r" if key_type(algorithm) == "rsa" else "e"
    month = time.strftime("%Y%m", time.gmtime(time.time() if now is None else now))
    try:
        return selector_name(f"{prefix}{month}{suffix}")
    except ValueError as exc:
        raise KeyFormatError(str(exc)) from None


def master_key(secret: str) -> bytes:
    """The 32-byte AES-256 key that seals DKIM private keys, derived from ``secret``.

    HKDF-SHA256 with a fixed salt and purpose label: the same secret gives the same key
    on every node of a fleet. ``secret`` should be long and random (32+ characters);
    an empty one is a :class:`postline.errors.ConfigError`.
    """
    if not secret:
        raise ConfigError("the secret that seals DKIM keys is empty: set a long random string")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=_HKDF_SALT, info=_HKDF_INFO)
    return hkdf.derive(secret.encode("utf-8"))


def _aead(master_key: bytes) -> AESGCM:
    if len(master_key) != 32:
        raise SealError(
            f"the master key must be 32 bytes (AES-256), not {len(master_key)}: "
            "make it with master_key(secret)"
        )
    return AESGCM(master_key)


def seal(private_pem: bytes, master_key: bytes, *, context: bytes = b"") -> bytes:
    """``private_pem`` encrypted with AES-256-GCM under ``master_key``, for storage.

    Each call uses a new random nonce, so sealing the same key twice gives different
    bytes. ``context``, when given, must be given again to :func:`unseal`.
    """
    nonce = os.urandom(_NONCE_SIZE)
    sealed = _aead(master_key).encrypt(nonce, private_pem, _SEAL_HEADER + context)
    return _SEAL_HEADER + nonce + sealed


def unseal(sealed: bytes, master_key: bytes, *, context: bytes = b"") -> bytes:
    """The private PEM sealed by :func:`seal`.

    Raises :class:`SealError` when ``sealed`` is not a sealed key of a known version,
    when ``master_key`` (or ``context``) is not the one it was sealed with, or when the
    bytes were changed.
    """
    aead = _aead(master_key)
    if not sealed.startswith(_SEAL_MAGIC):
        raise SealError("not a sealed DKIM key (no PLDK prefix)")
    if sealed[: len(_SEAL_HEADER)] != _SEAL_HEADER:
        version = sealed[len(_SEAL_MAGIC)] if len(sealed) > len(_SEAL_MAGIC) else None
        raise SealError(f"sealed DKIM key of unknown format version {version}")
    body = sealed[len(_SEAL_HEADER) :]
    if len(body) < _NONCE_SIZE + _TAG_SIZE:
        raise SealError("sealed DKIM key is truncated")
    nonce, ciphertext = body[:_NONCE_SIZE], body[_NONCE_SIZE:]
    try:
        return aead.decrypt(nonce, ciphertext, _SEAL_HEADER + context)
    except InvalidTag:
        raise SealError(
            "cannot open the sealed DKIM key: the master key (the configured secret) is "
            "not the one it was sealed with, or the sealed bytes were changed"
        ) from None
