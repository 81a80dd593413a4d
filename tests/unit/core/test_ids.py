"""Message ids: ULIDs in Crockford base32 that sort by time and give their time back."""

from __future__ import annotations

import os
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from postline.model import ids
from postline.model.ids import id_time, new_id, random_bytes


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
        mock.patch.object(ids, "random_bytes", return_value=rand),
    ):
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


def test_random_bytes_come_from_the_os_a_pool_at_a_time() -> None:
    with mock.patch.object(ids.os, "urandom", wraps=os.urandom) as urandom:
        ids._forget_pool()
        drawn = [random_bytes(10) for _ in range(1000)]
    assert all(len(b) == 10 for b in drawn) and len(set(drawn)) == 1000
    assert urandom.call_count == -(-1000 // (ids._POOL_SIZE // 10))  # whole draws a pool
    assert len(random_bytes(ids._POOL_SIZE + 1)) == ids._POOL_SIZE + 1


def test_a_forked_child_draws_other_bytes_than_its_parent() -> None:
    random_bytes(1)  # the pool is full when the process forks
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.write(write, random_bytes(16))
        os._exit(0)
    os.close(write)
    child = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert len(child) == 16 and child != random_bytes(16)
