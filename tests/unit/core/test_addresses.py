"""Address validation: the fast path for plain addresses answers exactly as
email-validator does, and every refusal carries email-validator's own reason."""

from __future__ import annotations

from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from postline.ingest import addresses
from postline.ingest.addresses import Address, InvalidAddress, parse_address


def _reference(value: str) -> Address | str:
    """What parse_address answers with email-validator alone (no fast path): the
    address, or the refusal's text."""
    try:
        with mock.patch.object(addresses, "_fast", return_value=None):
            return parse_address.__wrapped__(value)
    except InvalidAddress as exc:
        return str(exc)


def _answer(value: str) -> Address | str:
    parse_address.cache_clear()
    try:
        return parse_address(value)
    except InvalidAddress as exc:
        return str(exc)


EDGES = [
    "ann@example.test",
    "Ann.Lee+tag@Example.TEST",
    "postmaster@example.test",
    "Abuse@example.test",
    "a..b@example.test",
    ".a@example.test",
    "a.@example.test",
    "a@example",
    "a@-example.test",
    "a@example-.test",
    "a@example.test.",
    "a@.example.test",
    "a@example..test",
    "a@ex_ample.test",
    "a@xn--bcher-kva.test",
    "a@xn--abc.test",
    "a@localhost",
    "a@example.invalid",
    "a@example.local",
    "a@example.com",
    "a@[192.0.2.1]",
    "a@b@example.test",
    '"a b"@example.test',
    "a b@example.test",
    "a@",
    "@example.test",
    "a@exa mple.test",
    "a@bücher.test",
    "zoë@example.test",
    "a@example.123",
    "x" * 64 + "@example.test",
    "x" * 65 + "@example.test",
    "x" * 240 + "@example.test",
    "x" * 241 + "@example.test",
    "a@" + ".".join(["x" * 63] * 4),
    "a@" + "x" * 64 + ".test",
    "!#$%&'*+/=?^_`{|}~-@example.test",
]


@pytest.mark.parametrize("value", EDGES)
def test_edge_cases_answer_as_email_validator(value: str) -> None:
    assert _answer(value) == _reference(value)


def test_plain_addresses_take_the_fast_path() -> None:
    assert addresses._fast("Ann.Lee+tag@Example.TEST") == Address(
        "Ann.Lee+tag@example.test", "example.test", False
    )
    # Left to email-validator: role names it lower-cases, non-ASCII, quoting, literals.
    for value in ("Postmaster@example.test", "zoë@example.test", '"a"@x.test', "a@[192.0.2.1]"):
        assert addresses._fast(value) is None


LOCAL = st.text(alphabet="aZ09.+-_!#'`{}|~\"\\ @ë", min_size=0, max_size=12)
LABEL = st.sampled_from(
    ["example", "test", "xn--bcher-kva", "xn--abc", "localhost", "local", "invalid", "com",
     "a-b", "-a", "a-", "a_b", "123", "Ex", "bücher", "", "x" * 63, "x" * 64]
)  # fmt: skip
DOMAIN = st.lists(LABEL, min_size=1, max_size=5).map(".".join)


@settings(max_examples=600, deadline=None)
@given(local=LOCAL, domain=DOMAIN, tail=st.sampled_from(["", ".", "@x.test", "]"]))
@example(local="a", domain="example.test", tail="")
def test_generated_addresses_answer_as_email_validator(local: str, domain: str, tail: str) -> None:
    value = f"{local}@{domain}{tail}"
    assert _answer(value) == _reference(value)
