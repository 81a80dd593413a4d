"""Signed dashboard sessions and their CSRF tokens (no server-side state).

A session cookie is ``<payload>.<signature>``: the payload (base64url JSON) names the
admin the operator signed in as (the token's kind and id, never the token), when the
session ends and a random nonce; the signature is an HMAC-SHA256 under the node's session
secret, so any worker of any node sharing the key file accepts it. Every request checks
the signature, the expiry and that the admin token is still live (a revoked token ends
its sessions at once). The CSRF token of a session is an HMAC of its nonce: a page
carries it in each form, and every state-changing request must send it back.

Before sign-in, the login form is protected the same way by a short-lived nonce cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass

__all__ = ["LOGIN_TTL", "Session", "SessionCodec"]

LOGIN_TTL = 3600.0
"""How long a login form may be submitted after it was shown."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    kind: str
    """The admin's kind: ``admin_token`` or ``config_token``."""
    id: str
    """The admin token's id (what the audit log names)."""
    expires_at: float
    nonce: str


class SessionCodec:
    """Makes and checks session cookies and CSRF tokens under one secret."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the session secret needs at least 16 bytes")
        self._key = hashlib.sha256(b"postline-dashboard-v1\0" + secret).digest()

    def _mac(self, purpose: str, text: str) -> str:
        return _b64(hmac.new(self._key, f"{purpose}\0{text}".encode(), hashlib.sha256).digest())

    def issue(self, kind: str, actor_id: str, ttl: float, *, now: float | None = None) -> str:
        """A new session cookie value for the admin ``(kind, actor_id)``."""
        at = time.time() if now is None else now
        body = {"k": kind, "i": actor_id, "e": round(at + ttl, 3), "n": _b64(os.urandom(16))}
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        return f"{payload}.{self._mac('session', payload)}"

    def read(self, value: str, *, now: float | None = None) -> Session | None:
        """The session of a cookie value: None when forged, malformed or expired."""
        payload, _, mac = value.partition(".")
        if not payload or not mac or len(value) > 1024:
            return None
        if not hmac.compare_digest(mac, self._mac("session", payload)):
            return None
        try:
            body = json.loads(_unb64(payload))
            session = Session(str(body["k"]), str(body["i"]), float(body["e"]), str(body["n"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires_at <= (time.time() if now is None else now):
            return None
        return session

    def csrf(self, session: Session) -> str:
        """The CSRF token of a session."""
        return self._mac("csrf", session.nonce)

    def check_csrf(self, session: Session, token: str) -> bool:
        return bool(token) and hmac.compare_digest(token, self.csrf(session))

    def login_nonce(self) -> str:
        """A fresh nonce for a login form (sent as a cookie)."""
        return _b64(os.urandom(16))

    def login_csrf(self, nonce: str) -> str:
        """The token the login form carries for its nonce cookie."""
        return self._mac("login", nonce)

    def check_login(self, nonce: str, token: str) -> bool:
        return bool(nonce) and bool(token) and hmac.compare_digest(token, self.login_csrf(nonce))
