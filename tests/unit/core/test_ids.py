"""Message ids: ULIDs in Crockford base32 that sort by time and give their time back."""

from __future__ import annotations

from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from postline.model import ids
from postline.model.ids import id_time, new_id


def _digits(value: int) -> str:
    """The 26 base32 digits of a 130-bit number, most significant first, one at a time."""
    out = []
    for _ in range(26):
        out.append(ids._ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


@given(ms=st.integers(0, 2**48 - 1), rand=st.binary(min_size=10, max_size=10))
def test_new_id_is_the_ulid_of_time_and_randomness(ms: int, rand: bytes) -> None:
    with (
        mock.patch.object(ids.time, "time", return_value=ms / 1000),
        mock.patch.object(ids.os, "urandom", return_value=rand),
    ):
        ids._forget_pool()  # the next id draws a new supply: these ten bytes
        made = new_id()
    expected_ms = int((ms / 1000) * 1000)
    assert made == _digits((expected_ms << 80) | int.from_bytes(rand, "big"))
    assert id_time(made) == expected_ms / 1000


def test_ids_sort_by_time_and_differ() -> None:
    made = [new_id() for _ in range(1000)]
    assert len(set(made)) == 1000
    assert all(len(i) == 26 and set(i) <= set(ids._ALPHABET) for i in made)
    with mock.patch.object(ids.time, "time", return_value=2_000_000_000.0):
        later = new_id()
    assert later > max(made)
