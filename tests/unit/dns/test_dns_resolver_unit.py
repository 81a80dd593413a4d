"""Resolver pieces that need no sockets: names, config, result type, cache and single flight."""

from __future__ import annotations

import asyncio

import pytest

import postline.dns
from postline.dns import MXHost, MXResult, Resolver
from postline.dns.resolver import _Memo, _to_name, parse_nameserver
from postline.errors import ConfigError


def test_exports() -> None:
    assert sorted(postline.dns.__all__) == sorted(
        ["DNSTemporaryError", "MXHost", "MXResult", "MXStatus", "Resolver"]
    )
    for name in postline.dns.__all__:
        assert hasattr(postline.dns, name)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        (" 10.0.0.1:53 ", ("10.0.0.1", 53)),
        ("[::1]:5300", ("::1", 5300)),
        ("[::1]", ("::1", 53)),
        ("::1", ("::1", 53)),
    ],
)
def testparse_nameserver(spec: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(spec) == expected


@pytest.mark.parametrize(
    "spec", ["dns.example", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x", "[::1]x", ""]
)
def testparse_nameserver_rejects(spec: str) -> None:
    with pytest.raises(ConfigError):
        parse_nameserver(spec)


def test_resolver_reports_its_nameservers() -> None:
    resolver = Resolver(["127.0.0.1:5353", "[::1]:53"])
    assert resolver.nameservers == ["127.0.0.1:5353", "[::1]:53"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"attempts": 0},
        {"min_ttl": 10, "max_ttl": 5},
        {"negative_ttl": -1},
        {"max_entries": 0},
    ],
)
def test_resolver_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Resolver(["127.0.0.1"], **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("BÜCHER.example", "xn--bcher-kva.example"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ],
)
def test_names_are_idna_encoded_and_lower_cased(text: str, key: str) -> None:
    name, got = _to_name(text)
    assert got == key
    assert name.is_absolute()
    assert name.to_text() == key + "."


@pytest.mark.parametrize("text", ["", ".", "a..b", "x" * 64 + ".example"])
def test_bad_names_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        _to_name(text)


def test_site_is_sorted_and_order_independent() -> None:
    a = MXHost(10, "mx2.example", ("127.0.0.2",))
    b = MXHost(10, "mx1.example", ("127.0.0.1",))
    one = MXResult("example", "ok", (a, b))
    two = MXResult("example", "ok", (b, a))
    assert one.site == two.site == "mx1.example,mx2.example"
    assert MXResult("example", "nxdomain").site == ""


@pytest.mark.parametrize(
    ("status", "permanent"),
    [("ok", False), ("temp_fail", False), ("null_mx", True), ("nxdomain", True), ("no_mail", True)],
)
def test_permanent(status: str, permanent: bool) -> None:
    assert MXResult("example", status).permanent is permanent  # type: ignore[arg-type]


async def test_invalid_domain_needs_no_dns() -> None:
    # The nameserver does not exist; these answers come before any query.
    resolver = Resolver(["127.0.0.1:9"], timeout=0.2)
    bad = await resolver.mx("a..b")
    assert bad.status == "nxdomain"
    assert "invalid domain name" in bad.detail
    literal = await resolver.mx("[192.0.2.1]")
    assert literal.status == "no_mail"
    assert await resolver.addresses("192.0.2.7") == ("192.0.2.7",)
    assert await resolver.addresses("[::1]") == ("::1",)
    assert resolver.stats["queries"] == 0


class Counter:
    """A computation that counts its runs and can be held until released."""

    def __init__(self, ttl: float) -> None:
        self.runs = 0
        self.ttl = ttl
        self.release = asyncio.Event()

    async def __call__(self) -> tuple[str, float]:
        self.runs += 1
        await self.release.wait()
        return f"value-{self.runs}", self.ttl


def new_memo(max_entries: int = 100) -> tuple[_Memo[str], dict[str, int]]:
    stats = {"hits": 0, "misses": 0, "shared": 0, "queries": 0}
    return _Memo(max_entries, stats), stats


async def test_memo_single_flight_and_hit() -> None:
    memo, stats = new_memo()
    compute = Counter(ttl=60)
    tasks = [asyncio.create_task(memo.get("k", compute)) for _ in range(20)]
    await asyncio.sleep(0)
    compute.release.set()
    results = await asyncio.gather(*tasks)
    assert {value for value, _ in results} == {"value-1"}
    assert compute.runs == 1
    assert stats == {"hits": 0, "misses": 1, "shared": 19, "queries": 0}
    value, remaining = await memo.get("k", compute)
    assert value == "value-1"
    assert 0 < remaining <= 60
    assert stats["hits"] == 1


async def test_memo_expires() -> None:
    memo, _ = new_memo()
    compute = Counter(ttl=0.05)
    compute.release.set()
    assert (await memo.get("k", compute))[0] == "value-1"
    await asyncio.sleep(0.08)
    assert (await memo.get("k", compute))[0] == "value-2"


async def test_memo_zero_ttl_is_not_cached() -> None:
    memo, _ = new_memo()
    compute = Counter(ttl=0)
    compute.release.set()
    await memo.get("k", compute)
    await memo.get("k", compute)
    assert compute.runs == 2


async def test_memo_drops_oldest_when_full() -> None:
    memo, _ = new_memo(max_entries=2)
    compute = Counter(ttl=60)
    compute.release.set()
    for key in ("a", "b", "c"):
        await memo.get(key, compute)
    assert len(memo) == 2
    assert (await memo.get("b", compute))[0] == "value-2"  # still cached
    assert (await memo.get("a", compute))[0] == "value-4"  # dropped, computed again


async def test_memo_cancelled_waiter_does_not_cancel_the_lookup() -> None:
    memo, _ = new_memo()
    compute = Counter(ttl=60)
    first = asyncio.create_task(memo.get("k", compute))
    second = asyncio.create_task(memo.get("k", compute))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    compute.release.set()
    assert (await second)[0] == "value-1"
    assert first.cancelled()
    assert compute.runs == 1


async def test_memo_clear_during_flight_keeps_stale_value_out() -> None:
    memo, _ = new_memo()
    compute = Counter(ttl=60)
    task = asyncio.create_task(memo.get("k", compute))
    await asyncio.sleep(0)
    memo.clear()
    compute.release.set()
    assert (await task)[0] == "value-1"
    assert len(memo) == 0


async def test_memo_error_reaches_every_waiter() -> None:
    memo, _ = new_memo()
    gate = asyncio.Event()

    async def broken() -> tuple[str, float]:
        await gate.wait()
        raise RuntimeError("boom")

    tasks = [asyncio.create_task(memo.get("k", broken)) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    assert len(memo) == 0


async def test_memo_aclose_cancels_lookups_in_flight() -> None:
    memo, _ = new_memo()
    compute = Counter(ttl=60)
    task = asyncio.create_task(memo.get("k", compute))
    await asyncio.sleep(0)
    await memo.aclose()
    with pytest.raises(asyncio.CancelledError):
        await task
