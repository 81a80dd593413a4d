"""Endpoint secrets sealed at rest.

A webhook secret must be readable to sign with, so it cannot be stored hashed like an
API key; it is stored encrypted (AES-256-GCM) under a key derived (HKDF-SHA256) from the
node's secret — ``[domains] key_secret`` or the key file in the data directory, the same
on every node of a fleet — and bound to its endpoint's id, so a sealed value copied to
another endpoint does not open.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["SealedSecrets"]

_PREFIX = "sealed:v1:"


class SealedSecrets:
    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the secret that seals webhook secrets is empty")
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=32,
            salt=b"postline.webhooks",
            info=b"postline webhook secret sealing v1",
        )
        self._aead = AESGCM(hkdf.derive(secret.encode("utf-8")))

    def seal(self, plain: str, webhook_id: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plain.encode("utf-8"), webhook_id.encode("utf-8"))
        return _PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, sealed: str, webhook_id: str) -> str:
        if not sealed.startswith(_PREFIX):
            raise ValueError("not a sealed webhook secret")
        raw = base64.b64decode(sealed.removeprefix(_PREFIX))
        try:
            plain = self._aead.decrypt(raw[:12], raw[12:], webhook_id.encode("utf-8"))
        except InvalidTag:
            raise ValueError(
                "the webhook secret does not open with this node's secret "
                "([domains] key_secret must be the same on every node)"
            ) from None
        return plain.decode("utf-8")
