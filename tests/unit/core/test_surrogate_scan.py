"""The batch-wide look for unpaired surrogates: when it says a JSON text cannot hold one,
no string decoded from it does."""

from __future__ import annotations

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from postline.ingest.schema import may_hold_surrogates

SURROGATE = re.compile("[\ud800-\udfff]")
# Code points near the surrogates and the ASCII that JSON escapes, surrogates included.
CHARS = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x7F),
    st.characters(min_codepoint=0xD700, max_codepoint=0xE0FF, categories=None),
    st.sampled_from(["\\", "u", "d", "D", "8", "\U0001f600"]),
)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@given(texts=st.lists(st.text(alphabet=CHARS, max_size=8), max_size=4), ascii_only=st.booleans())
def test_a_text_said_clean_decodes_without_surrogates(texts: list[str], ascii_only: bool) -> None:
    doc = {"messages": [{"text": t, t: "v"} for t in texts]}
    raw = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
    decoded = json.loads(raw)
    if not may_hold_surrogates(raw):
        assert not any(SURROGATE.search(s) for s in _strings(decoded))


def test_escapes_and_bytes_of_surrogates_are_seen() -> None:
    assert not may_hold_surrogates(b'{"text": "plain \\\\ text \\u00e9"}')
    assert may_hold_surrogates(b'{"text": "\\ud800"}')
    assert may_hold_surrogates(b'{"text": "\\uDFFF"}')
    assert may_hold_surrogates(b'{"text": "\xed\xa0\x80"}')
    assert may_hold_surrogates(b'{"text": "caf\xc3\xa9"}')  # not ASCII: looked at item by item
