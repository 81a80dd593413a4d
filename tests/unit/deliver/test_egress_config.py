"""[[delivery.sources]], [[delivery.pools]], [delivery.streams], [[delivery.warmup]]:
validation, and what a configuration means for the choice of pool and source."""

from __future__ import annotations

import random
from datetime import date

import pytest

from postline.config import Config, load_config
from postline.deliver.egress import IMPLICIT, Egress, pick
from postline.errors import ConfigError

SOURCES = """
[[delivery.sources]]
name = "a"
address = "192.0.2.10"
ehlo = "a.mail.example"
weight = 3
[[delivery.sources]]
name = "b"
address = "192.0.2.11"
warmup = "default"
warmup_start = 2026-11-01
"""


def _config(text: str) -> Config:
    return load_config(text=text, environ={})


def test_no_sources_is_one_implicit_source_from_the_delivery_table() -> None:
    cfg = _config('[delivery]\nsource_address = "192.0.2.5"\nhelo_hostname = "mx.example"\n')
    egress = Egress(cfg)
    assert not egress.explicit
    (only,) = egress.sources
    assert (only.name, only.address, only.ehlo, only.plan) == (
        IMPLICIT,
        "192.0.2.5",
        "mx.example",
        None,
    )
    assert egress.pool_for("t1", "marketing").sources == (only,)
    assert Egress(_config("")).sources[0].address is None


def test_sources_without_pools_share_one_default_pool() -> None:
    cfg = _config(SOURCES)
    egress = Egress(cfg)
    assert egress.explicit
    a, b = egress.sources
    assert (a.ehlo, a.weight, a.plan) == ("a.mail.example", 3, None)
    assert b.ehlo == cfg.hostname  # defaults to the node's EHLO name
    assert b.plan is not None and b.plan.name == "default" and b.plan.days == 45
    assert b.warmup_start == date(2026, 11, 1)
    pool = egress.pool_for("t1", "anything")
    assert pool.name == "default"
    assert pool.sources == (a, b)


POOLS = (
    SOURCES
    + """
[[delivery.sources]]
name = "c"
address = "2001:db8::1"
[[delivery.pools]]
name = "tx"
sources = ["a"]
[[delivery.pools]]
name = "bulk"
sources = ["b", "a"]
[[delivery.pools]]
name = "acme"
sources = ["c"]
tenant = "acme"
[[delivery.pools]]
name = "acme-bulk"
sources = ["c", "b"]
tenant = "acme"
[delivery.streams]
marketing = "bulk"
newsletter = "acme-bulk"
"*" = "tx"
"""
)


def test_streams_and_dedicated_pools() -> None:
    egress = Egress(_config(POOLS))
    assert egress.needs_tenant_names
    assert egress.pool_for("t1", "transactional").name == "tx"
    assert egress.pool_for("t1", "marketing").name == "bulk"
    # a stream mapped to another tenant's pool falls back to '*'
    assert egress.pool_for("t1", "newsletter").name == "tx"
    # the dedicated pool wins, by tenant name or id; its stream picks among its pools
    assert egress.pool_for("id-9", "marketing", "acme").name == "acme"
    assert egress.pool_for("acme", "transactional").name == "acme"
    assert egress.pool_for("id-9", "newsletter", "acme").name == "acme-bulk"
    a, b, c = egress.sources
    assert (a.pools, b.pools, c.pools) == (
        ("tx", "bulk"),
        ("bulk", "acme-bulk"),
        ("acme", "acme-bulk"),
    )
    assert egress.sources[2].address == "2001:db8::1"


_W = '[[delivery.warmup]]\nname = "w"\n'
_CAPS = '[[delivery.warmup.caps]]\nprovider = "*"\nday_caps = [{}]\n'

INVALID = [
    (
        SOURCES + '[[delivery.sources]]\nname = "a"\naddress = "192.0.2.12"\n',
        "source 'a' is defined twice",
    ),
    (
        SOURCES + '[[delivery.sources]]\nname = "z"\naddress = "192.0.2.10"\n',
        "sources 'a' and 'z' have the same address 192.0.2.10",
    ),
    ('[[delivery.sources]]\nname = "a"\naddress = "mail.example"\n', "is not an IP address"),
    ('[[delivery.sources]]\nname = "a b"\naddress = "192.0.2.1"\n', "delivery.sources.0.name"),
    ('[[delivery.sources]]\nname = "a"\naddress = "192.0.2.1"\nweight = 0\n', "weight"),
    (
        SOURCES + '[[delivery.pools]]\nname = "p"\nsources = ["a", "nope"]\n',
        "pool 'p' lists unknown source 'nope'; defined sources: a, b",
    ),
    (
        SOURCES + '[[delivery.pools]]\nname = "default"\nsources = ["a"]\n'
        '[[delivery.pools]]\nname = "default"\nsources = ["b"]\n',
        "pool 'default' is defined twice",
    ),
    (SOURCES + '[[delivery.pools]]\nname = "p"\nsources = []\n', "delivery.pools.0.sources"),
    (
        SOURCES + '[[delivery.pools]]\nname = "default"\nsources = ["a", "a"]\n',
        "lists a source twice",
    ),
    ('[[delivery.pools]]\nname = "p"\nsources = ["a"]\n', "need [[delivery.sources]]"),
    (
        SOURCES + '[delivery.streams]\nmarketing = "bulk"\n',
        "stream 'marketing' goes to unknown pool 'bulk'",
    ),
    ('[delivery.streams]\nmarketing = "bulk"\n', "unknown pool 'bulk'; pools: default"),
    (
        SOURCES + '[[delivery.pools]]\nname = "tx"\nsources = ["a"]\n',
        "streams without an entry of their own go to pool 'default', which is not defined",
    ),
    (
        SOURCES + '[[delivery.pools]]\nname = "tx"\nsources = ["a"]\ntenant = "acme"\n'
        '[delivery.streams]\n"*" = "tx"\n',
        "dedicated to tenant 'acme'",
    ),
    (
        SOURCES + '[delivery.streams]\n"Bad Stream" = "default"\n',
        "stream name 'Bad Stream' is invalid",
    ),
    (
        '[[delivery.sources]]\nname = "a"\naddress = "192.0.2.1"\nwarmup = "slow"\n'
        "warmup_start = 2026-11-01\n",
        "source 'a' follows unknown warm-up schedule 'slow'; known: default",
    ),
    (
        '[[delivery.sources]]\nname = "a"\naddress = "192.0.2.1"\nwarmup = "default"\n',
        "no warmup_start",
    ),
    (
        '[[delivery.sources]]\nname = "a"\naddress = "192.0.2.1"\nwarmup_start = 2026-11-01\n',
        "no warmup schedule",
    ),
    (_W + _CAPS.format(1) + _W + _CAPS.format(1), "warm-up schedule 'w' is defined twice"),
    (_W + _CAPS.format(0), "caps must be whole numbers of at least 1"),
    (_W + _CAPS.format(1) + _CAPS.format(2), "provider '*' has caps twice"),
    (_W + 'overflow = "drop"\n' + _CAPS.format(1), "overflow"),
    ("[delivery.blocks]\nsuspend_after = 0\n", "delivery.blocks.suspend_after"),
]


@pytest.mark.parametrize(("text", "message"), INVALID)
def test_invalid_egress_configuration_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(text)
    assert message in str(info.value)


def test_a_schedule_named_default_replaces_the_shipped_plan() -> None:
    cfg = _config(
        SOURCES + '[[delivery.warmup]]\nname = "default"\ndays = 3\noverflow = "wait"\n'
        '[[delivery.warmup.caps]]\nprovider = "*"\nday_caps = [7]\n'
    )
    plan = Egress(cfg).sources[1].plan
    assert plan is not None
    assert (plan.days, plan.overflow) == (3, "wait")


def test_pick_follows_the_weights_and_prefers_room() -> None:
    egress = Egress(_config(SOURCES + '[[delivery.sources]]\nname = "c"\naddress = "192.0.2.12"\n'))
    a, b, c = egress.sources  # weights 3, 1, 1
    rng = random.Random(1)
    counts = {"a": 0, "b": 0, "c": 0}
    for _ in range(5000):
        chosen = pick(egress.sources, lambda s: True, rng)
        assert chosen is not None
        counts[chosen.name] += 1
    assert 2850 <= counts["a"] <= 3150
    assert 850 <= counts["b"] <= 1150
    # unusable sources are never drawn; without a usable one there is no choice
    assert {pick(egress.sources, lambda s: s is not a, rng) for _ in range(50)} == {b, c}
    assert pick(egress.sources, lambda s: False, rng) is None
    # sources with room first; when none has room, any usable one
    room = {"a": False, "b": True, "c": False}
    assert {pick(egress.sources, lambda s: True, rng, room=room) for _ in range(20)} == {b}
    none = dict.fromkeys("abc", False)
    assert len({pick(egress.sources, lambda s: True, rng, room=none) for _ in range(200)}) == 3
