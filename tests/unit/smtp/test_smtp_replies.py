"""The named reply table: every name agrees with its code and enhanced code."""

from __future__ import annotations

import re

import pytest

from postline.smtp import replies
from postline.smtp.replies import as_reply

_NAME = re.compile(r"S(\d{3})_[A-Z0-9_]+")
_LINE = re.compile(r"(\d{3}) (?:([245])\.(\d{1,3})\.(\d{1,3}) )?(.*)")

NAMES = [n for n in replies.__all__ if n.startswith("S")]


def test_table_is_not_empty_and_exported() -> None:
    defined = {n for n in dir(replies) if _NAME.fullmatch(n)}
    assert defined == set(NAMES)
    assert len(NAMES) >= 30


@pytest.mark.parametrize("name", NAMES)
def test_name_matches_code_and_enhanced_class(name: str) -> None:
    value = getattr(replies, name)
    assert isinstance(value, str)
    assert "\r" not in value
    assert "\n" not in value
    name_match = _NAME.fullmatch(name)
    line_match = _LINE.fullmatch(value)
    assert name_match is not None, name
    assert line_match is not None, value
    code = line_match.group(1)
    assert code == name_match.group(1)
    assert 200 <= int(code) <= 599
    klass = line_match.group(2)
    if code.startswith("3"):
        assert klass is None, "intermediate replies carry no enhanced code"
    else:
        assert klass == code[0], f"{name}: enhanced class must match the code"
        reply = as_reply(value, "X")
        assert reply.enhanced == f"{klass}.{line_match.group(3)}.{line_match.group(4)}"
        assert reply.code == int(code)
        assert reply.text
        assert reply.command == "X"


def test_required_texts() -> None:
    assert replies.S530_AUTH_REQUIRED == "530 5.7.0 Authentication required"
    assert replies.S535_AUTH_FAILED == "535 5.7.8 Authentication credentials invalid"
    assert replies.S550_RELAY_DENIED == "550 5.7.1 Relaying denied"
    assert replies.S552_TOO_BIG == "552 5.3.4 Message size exceeds fixed maximum message size"
    assert (
        replies.S538_ENCRYPTION_REQUIRED
        == "538 5.7.11 Encryption required for requested authentication mechanism"
    )
