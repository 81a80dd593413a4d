"""Signed dashboard sessions and CSRF tokens: forged, tampered, expired and foreign
values are refused."""

from __future__ import annotations

from postline.dashboard.session import SessionCodec

KEY = b"k" * 32


def test_a_session_round_trips_until_it_expires() -> None:
    codec = SessionCodec(KEY)
    value = codec.issue("admin_token", "01ABC", 60, now=1000.0)
    session = codec.read(value, now=1059.0)
    assert session is not None
    assert (session.kind, session.id, session.expires_at) == ("admin_token", "01ABC", 1060.0)
    assert codec.read(value, now=1060.0) is None


def test_forged_and_tampered_values_are_refused() -> None:
    codec = SessionCodec(KEY)
    value = codec.issue("admin_token", "01ABC", 60, now=1000.0)
    payload, _, mac = value.partition(".")

    def flip(text: str, at: int) -> str:
        return text[:at] + ("B" if text[at] == "A" else "A") + text[at + 1 :]

    assert codec.read(payload + "." + flip(mac, 0), now=1000.0) is None
    assert codec.read(flip(payload, len(payload) // 2) + "." + mac, now=1000.0) is None
    assert codec.read("", now=1000.0) is None and codec.read("no-dot", now=1000.0) is None
    # Another node's key (another key file) signs sessions this one refuses.
    assert SessionCodec(b"o" * 32).read(value, now=1000.0) is None


def test_csrf_tokens_belong_to_one_session_and_the_login_form_to_its_nonce() -> None:
    codec = SessionCodec(KEY)
    one = codec.read(codec.issue("admin_token", "a", 60, now=0.0), now=0.0)
    two = codec.read(codec.issue("admin_token", "a", 60, now=0.0), now=0.0)
    assert one is not None and two is not None
    assert codec.check_csrf(one, codec.csrf(one))
    assert not codec.check_csrf(one, codec.csrf(two)) and not codec.check_csrf(one, "")
    nonce = codec.login_nonce()
    assert codec.check_login(nonce, codec.login_csrf(nonce))
    assert not codec.check_login(codec.login_nonce(), codec.login_csrf(nonce))
    assert not codec.check_login("", codec.login_csrf(""))
