"""The submission server's chunked DATA reader: the end is found however the bytes arrive."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postline.smtp.server import PostlineSMTP


async def read(data: bytes, limit: int, cuts: list[int]) -> tuple[bytes | None, bytes]:
    reader = asyncio.StreamReader(limit=1001)
    pieces = []
    last = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}):
        pieces.append(data[last:cut])
        last = cut
    pieces.append(data[last:])

    async def feed() -> None:
        for piece in pieces:
            reader.feed_data(piece)
            await asyncio.sleep(0)
        reader.feed_data(b"QUIT\r\n")

    feeder = asyncio.create_task(feed())
    server = SimpleNamespace(data_size_limit=limit)
    body = await PostlineSMTP._read_data(server, reader)  # type: ignore[arg-type]
    await feeder
    rest = await reader.readuntil(b"\r\n")
    return body, rest


@pytest.mark.parametrize(
    ("wire", "body"),
    [
        (b".\r\n", b""),
        (b"a\r\n.\r\n", b"a\r\n"),
        (b"ends.\r\nwith dots.\r\n.\r\n", b"ends.\r\nwith dots.\r\n"),
        (b"..stuffed\r\n.\r\n", b"..stuffed\r\n"),
        (b"bare\n.\nnot the end\r\n.\r\n", b"bare\n.\nnot the end\r\n"),
    ],
)
async def test_end_of_data(wire: bytes, body: bytes) -> None:
    got, rest = await read(wire, 0, [])
    assert got == body
    assert rest == b"QUIT\r\n"


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.sampled_from([b"x" * 70, b"y.", b".", b"..", b"", b"z" * 999]), max_size=40),
    cuts=st.lists(st.integers(min_value=1, max_value=60_000), max_size=8),
    limit=st.sampled_from([0, 100, 2000, 50_000]),
)
def test_any_split_finds_the_end_and_enforces_the_limit(
    lines: list[bytes], cuts: list[int], limit: int
) -> None:
    stuffed = b"".join((b"." + ln if ln.startswith(b".") else ln) + b"\r\n" for ln in lines)
    body, rest = asyncio.run(read(stuffed + b".\r\n", limit, cuts))
    assert rest == b"QUIT\r\n"  # the next command is intact: the end was found exactly
    if limit and len(stuffed) > limit:
        assert body is None
    else:
        assert body == stuffed
