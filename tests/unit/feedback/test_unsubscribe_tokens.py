"""List-Unsubscribe tokens and headers: round trip, forgery, rotation, domain separation
from VERP, and the https / mailto variants."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from postline.bounce import verp
from postline.config import load_config
from postline.errors import ConfigError
from postline.feedback import unsubscribe

MID = "01JD4Z6Q9G8K3M5N7P2R4T6V8X"
KEY = b"k" * 32
URL = "https://mail.example.com"
BOUNCE = "bounce.example.com"


def test_round_trip_names_message_and_index() -> None:
    for idx in (0, 1, 31, 32, 1000, unsubscribe.MAX_INDEX):
        token = unsubscribe.encode(MID, idx, KEY)
        assert token == token.lower() and token.isalnum()
        assert len(unsubscribe.PREFIX + token) <= 58
        assert unsubscribe.decode(token, KEY) == (MID, idx)
        assert unsubscribe.decode_address(f"u-{token}@{BOUNCE}", KEY) == (MID, idx)
        assert unsubscribe.decode_address(f"u-{token}", KEY) == (MID, idx)


def test_lower_case_ids_are_the_same_message() -> None:
    assert unsubscribe.encode(MID.lower(), 4, KEY) == unsubscribe.encode(MID, 4, KEY)


def test_letter_case_does_not_matter() -> None:
    token = unsubscribe.encode(MID, 7, KEY)
    assert unsubscribe.decode(token.upper(), KEY) == (MID, 7)
    assert unsubscribe.decode_address(f"U-{token.upper()}@{BOUNCE.upper()}", KEY) == (MID, 7)


Mangle = Callable[[str], str]


@pytest.mark.parametrize(
    "mangle",
    [
        lambda s: s[:-1] + ("0" if s[-1] != "0" else "1"),  # MAC changed
        lambda s: s[:5] + ("1" if s[5] != "1" else "2") + s[6:],  # id changed
        lambda s: s[:-17] + "2" + s[-16:],  # index changed
        lambda s: s[:-2],  # truncated
        lambda s: s + "a",  # extended
        lambda s: "2" + s[1:],  # another version
        lambda s: s.replace("0", "o"),  # a letter outside the alphabet
    ],
)
def test_forged_or_mangled_tokens_are_refused(mangle: Mangle) -> None:
    token = unsubscribe.encode(MID, 5, KEY)
    assert mangle(token) != token
    assert unsubscribe.decode(mangle(token), KEY) is None
    assert unsubscribe.decode_address(f"u-{mangle(token)}@{BOUNCE}", KEY) is None


def test_a_verp_token_is_no_unsubscribe_token_and_vice_versa() -> None:
    verp_local = verp.return_path(MID, 3, KEY, BOUNCE).partition("@")[0]
    verp_token = verp_local.removeprefix("b-")
    assert unsubscribe.decode(verp_token, KEY) is None
    assert unsubscribe.decode_address("u-" + verp_token, KEY) is None
    token = unsubscribe.encode(MID, 3, KEY)
    # Same shape, other MAC: neither side accepts the other's signature.
    assert len(token) == len(verp_token) and token != verp_token
    assert verp.decode("b-" + token, KEY) is None


def test_the_mailto_form_needs_its_prefix() -> None:
    token = unsubscribe.encode(MID, 2, KEY)
    assert unsubscribe.decode_address(f"{token}@{BOUNCE}", KEY) is None
    assert unsubscribe.decode_address(f"b-{token}@{BOUNCE}", KEY) is None
    assert unsubscribe.decode(f"u-{token}", KEY) is None


def test_rotation_accepts_tokens_of_every_secret_and_signs_with_the_first() -> None:
    old = unsubscribe.encode(MID, 9, b"old-secret")
    assert unsubscribe.decode(old, KEY) is None
    assert unsubscribe.decode(old, [KEY, b"old-secret"]) == (MID, 9)
    assert unsubscribe.encode(MID, 9, [KEY, b"old-secret"]) == unsubscribe.encode(MID, 9, KEY)


def test_garbage_is_none_and_bad_arguments_raise() -> None:
    for junk in ("", "u-", "1" + "z" * 60, "a" * 400, "1ü" * 30, "../../etc", "u-" + "0" * 45):
        assert unsubscribe.decode(junk, KEY) is None
        assert unsubscribe.decode_address(junk, KEY) is None
    with pytest.raises(ValueError):
        unsubscribe.encode("not-a-ulid", 1, KEY)
    with pytest.raises(ValueError):
        unsubscribe.encode(MID, -1, KEY)
    with pytest.raises(ValueError):
        unsubscribe.encode(MID, True, KEY)
    with pytest.raises(ValueError):
        unsubscribe.decode("1x", b"")
    with pytest.raises(ValueError):
        unsubscribe.decode("1x", [])
    with pytest.raises(ValueError):
        unsubscribe.headers(MID, 1, secrets=KEY, public_url="", bounce_domain="bad domain")


def test_headers_with_a_public_url_and_a_bounce_domain() -> None:
    out = unsubscribe.headers(MID, 4, secrets=[KEY], public_url=URL + "/", bounce_domain=BOUNCE)
    token = unsubscribe.encode(MID, 4, KEY)
    assert out == [
        (
            "List-Unsubscribe",
            f"<https://mail.example.com/u/{token}>, "
            f"<mailto:u-{token}@bounce.example.com?subject=unsubscribe>",
        ),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]
    for name, value in out:
        assert "\r" not in value and "\n" not in value and len(name) + 2 + len(value) < 998


def test_headers_with_a_path_prefix_keep_it() -> None:
    ((_, value), _post) = unsubscribe.headers(
        MID, 0, secrets=KEY, public_url="https://example.com/mail", bounce_domain=""
    )
    token = unsubscribe.encode(MID, 0, KEY)
    assert value == f"<https://example.com/mail/u/{token}>"


def test_headers_without_a_public_url_give_only_the_mailto_and_no_post() -> None:
    out = unsubscribe.headers(MID, 1, secrets=KEY, public_url="", bounce_domain="Bounce.Example.")
    token = unsubscribe.encode(MID, 1, KEY)
    assert out == [
        ("List-Unsubscribe", f"<mailto:u-{token}@bounce.example?subject=unsubscribe>"),
    ]


def test_headers_without_a_bounce_domain_give_only_the_url() -> None:
    out = unsubscribe.headers(MID, 1, secrets=KEY, public_url=URL, bounce_domain="")
    token = unsubscribe.encode(MID, 1, KEY)
    assert out == [
        ("List-Unsubscribe", f"<{URL}/u/{token}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]


def test_headers_with_neither_are_empty() -> None:
    assert unsubscribe.headers(MID, 1, secrets=KEY, public_url="", bounce_domain="") == []


def test_headers_are_cheap_enough_for_every_recipient() -> None:
    t0 = time.perf_counter()
    for idx in range(2000):
        unsubscribe.headers(MID, idx, secrets=KEY, public_url=URL, bounce_domain=BOUNCE)
    assert (time.perf_counter() - t0) / 2000 < 0.001


def test_public_url_is_checked_and_loses_its_trailing_slash() -> None:
    config = load_config(text='[api]\npublic_url = "https://mail.example.com/"\n', environ={})
    assert config.api.public_url == "https://mail.example.com"
    assert load_config(text="", environ={}).api.public_url == ""
    for bad in ("mail.example.com", "ftp://x.example", "https://", "https://a.example/?x=1"):
        with pytest.raises(ConfigError, match="public_url"):
            load_config(text=f'[api]\npublic_url = "{bad}"\n', environ={})
