"""Signed VERP tokens: round trip, case folding, forgery and key rotation."""

from __future__ import annotations

import pytest

from postline.bounce import verp

MID = "01JD4Z6Q9G8K3M5N7P2R4T6V8X"
KEY = b"k" * 32


def test_round_trip_names_message_and_index() -> None:
    for idx in (0, 1, 31, 32, 1000, verp.MAX_INDEX):
        addr = verp.return_path(MID, idx, KEY, "bounce.example.com")
        local, _, domain = addr.partition("@")
        assert domain == "bounce.example.com"
        assert local.startswith("b-") and len(local) <= 64
        assert verp.decode(addr, KEY) == (MID, idx)
        assert verp.decode(local, KEY) == (MID, idx)


def test_case_folding_is_harmless() -> None:
    addr = verp.return_path(MID, 7, KEY, "b.example")
    assert verp.decode(addr.upper(), KEY) == (MID, 7)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1] + ("0" if s[-1] != "0" else "1"),  # MAC changed
        lambda s: s[:5] + ("1" if s[5] != "1" else "2") + s[6:],  # id changed
        lambda s: s[:-17] + "2" + s[-16:],  # index changed
        lambda s: s[:-2],  # truncated
        lambda s: s + "a",  # extended
        lambda s: "x" + s[1:],  # wrong prefix
    ],
)
def test_forged_or_mangled_tokens_are_refused(mangle) -> None:  # type: ignore[no-untyped-def]
    local = verp.return_path(MID, 5, KEY, "b.example").partition("@")[0]
    assert verp.decode(mangle(local), KEY) is None


def test_other_secret_is_refused_and_rotation_accepts_old_tokens() -> None:
    addr = verp.return_path(MID, 3, b"old-secret", "b.example")
    assert verp.decode(addr, KEY) is None
    assert verp.decode(addr, [KEY, b"old-secret"]) == (MID, 3)


def test_garbage_is_none_and_bad_arguments_raise() -> None:
    for junk in ("", "postmaster", "b-", "b-1" + "z" * 60, "a" * 400, "b-1ü" * 10):
        assert verp.decode(junk, KEY) is None
    with pytest.raises(ValueError):
        verp.encode("not-a-ulid", 1, KEY)
    with pytest.raises(ValueError):
        verp.encode(MID, -1, KEY)
    with pytest.raises(ValueError):
        verp.decode("b-x", b"")
    with pytest.raises(ValueError):
        verp.return_path(MID, 1, KEY, "bad domain")
