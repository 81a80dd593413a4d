"""Simulator configuration: TOML, validation, the standard mix and its throttle hints."""

from __future__ import annotations

import pytest

from postline.errors import ConfigError
from postline.model.reply import Reply
from postline.sim import Behaviour, DomainSpec, MXHostSpec, Profile, SimConfig, behaviour_of
from postline.sim.config import plan_hosts
from postline.sim.standard import FIXED_DOMAINS
from postline.sim.styles import connection_reply, throttle_reply
from postline.throttle.rules import ThrottleRules

TOML = """
seed = 9
greylist_delay = 0.5
slow_delay = 0.1

[profiles.big]
throttle_style = "yahoo"
rate = 10
rate_period = 2
max_connections = 3

[[domains]]
name = "Big.Test"
provider = "bigco"
profile = "big"
mx = ["mx1.big.test", { host = "mx2.big.test", preference = 50 }]

[[domains]]
name = "small.test"
profile = { greylist = 3, max_size = 1000 }
mx = [{ host = "mx1.small.test", dead = true }, "mx2.small.test"]

[[domains]]
name = "gone.test"
kind = "nxdomain"

[[hints]]
name = "bigco"
domains = ["big.test"]
messages = 8
period = "2s"
"""


def test_from_toml_reads_profiles_domains_and_hints() -> None:
    cfg = SimConfig.from_toml(TOML)
    assert cfg.seed == 9
    assert (cfg.greylist_delay, cfg.slow_delay) == (0.5, 0.1)
    big = cfg.domain("big.test")
    assert big.name == "big.test"
    assert big.profile.throttle_style == "yahoo"
    assert big.profile.rate_period == 2.0
    assert [(m.host, m.preference) for m in big.mx] == [("mx1.big.test", 10), ("mx2.big.test", 50)]
    small = cfg.domain("small.test")
    assert small.profile.greylist == 3
    assert small.host_profile(small.mx[0]).dead is True
    assert small.host_profile(small.mx[0]).greylist == 3  # dead keeps the domain's knobs
    assert small.host_profile(small.mx[1]).dead is False
    assert cfg.domain("gone.test").kind == "nxdomain"
    assert cfg.throttle_hints() == [
        {"name": "bigco", "domains": ["big.test"], "messages": 8, "period": "2s"}
    ]
    zone = cfg.zone()
    assert zone.mx["big.test"] == [(10, "mx1.big.test"), (50, "mx2.big.test")]
    assert "gone.test" not in zone.mx and "gone.test" not in zone.a
    hosts = {h.name: h for h in cfg.hosts()}
    assert [h.address for h in cfg.hosts()] == [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
    ]
    assert hosts["mx1.big.test"].provider == "bigco"
    assert hosts["mx2.small.test"].provider == "small.test"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[[domains]]\nname = "example.org.uk"', "reserved"),
        ('[[domains]]\nname = "gmail.com"', "reserved"),
        ('[[domains]]\nname = "a.test"\nfoo = 1', "unknown key"),
        ('[[domains]]\nname = "a.test"\nprofile = { rate = 0 }', "rate"),
        ('[[domains]]\nname = "a.test"\nprofile = { throttle_style = "aol" }', "throttle_style"),
        ('[[domains]]\nname = "a.test"\nprofile = { drop_rate = 2 }', "drop_rate"),
        ('[[domains]]\nname = "a.test"\nprofile = "nope"', "no profile named"),
        ('[[domains]]\nname = "a.test"\nkind = "null_mx"\nmx = ["mx.a.test"]', "no MX"),
        ('[[domains]]\nname = "a.test"\n[[domains]]\nname = "A.test"', "twice"),
        ('first_address = "127.0.0.1"', "left to the node"),
        ('dns_host = "10.0.0.1"', "127.0.0.0/8"),
        ('first_address = "192.168.1.2"', "127.0.0.0/8"),
        ("smtp_port = 70000", "port"),
        ("colour = 1", "unknown simulator configuration key"),
        ("[[hints]]\nmessages = 1", "needs a name"),
        ("this is = not toml", "not valid TOML"),
    ],
)
def test_invalid_configurations_are_refused(text: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        SimConfig.from_toml(text)


def test_a_shared_host_needs_one_profile_and_one_provider() -> None:
    mx = (MXHostSpec("mx.shared.test"),)
    with pytest.raises(ConfigError, match="two different profiles"):
        plan_hosts(
            [
                DomainSpec("a.test", mx=mx),
                DomainSpec("b.test", mx=mx, profile=Profile(tarpit=1.0)),
            ]
        )
    with pytest.raises(ConfigError, match="one provider"):
        plan_hosts(
            [DomainSpec("a.test", mx=mx, provider="x"), DomainSpec("b.test", mx=mx, provider="y")]
        )
    shared = plan_hosts([DomainSpec("a.test", mx=mx), DomainSpec("b.test", mx=mx)])
    assert [(h.provider, h.domains) for h in shared] == [("a.test", ("a.test", "b.test"))]


def test_behaviour_by_local_part() -> None:
    assert behaviour_of("nouser-3") is Behaviour.UNKNOWN
    assert behaviour_of("OverQuota") is Behaviour.OVERQUOTA
    assert behaviour_of("full") is Behaviour.FULL
    assert behaviour_of("drop-in-data") is Behaviour.DROP
    assert behaviour_of("ann") is None
    assert behaviour_of("x-unknown") is None  # prefixes only


def test_standard_mix() -> None:
    cfg = SimConfig.standard()
    names = [d.name for d in cfg.domains]
    assert len(names) == 50 == len(set(names))
    assert set(FIXED_DOMAINS) <= set(names)
    assert all(n.endswith(".test") for n in names)
    hosts = {h.name: h for h in cfg.hosts()}
    google = hosts["gmail-smtp-in.l.google.test"]
    assert google.provider == "google"
    assert {"gmail.test", "acme.test", "hooli.test"} <= set(google.domains)
    assert len(google.domains) == 6
    assert hosts["mx1.deadprimary.test"].profile.dead
    kinds = {d.name: d.kind for d in cfg.domains}
    assert kinds["nullmx.test"] == "null_mx"
    assert kinds["nxdomain.test"] == "nxdomain"
    assert kinds["implicit.test"] == "implicit"
    greylisting = [d.profile.greylist for d in cfg.domains if d.profile.greylist]
    assert sorted(greylisting) == [2.0, 3.0, 5.0]
    assert sum(1 for d in cfg.domains if d.profile.tarpit) == 1
    assert sum(1 for d in cfg.domains if d.profile.block) == 1
    small_rates = [d.name for d in cfg.domains if d.profile.rate and d.profile.rate <= 5]
    assert small_rates == ["ratelimited.test"]
    assert len(SimConfig.standard(domains=30).domains) == 30
    assert len(SimConfig.standard(domains=5).domains) == len(FIXED_DOMAINS)
    assert SimConfig.standard(seed=4).seed == 4


def test_throttle_hints_fit_the_node_rules_and_sit_below_most_sim_limits() -> None:
    cfg = SimConfig.standard()
    hints = {h["name"]: h for h in cfg.throttle_hints()}
    rules = ThrottleRules.load(list(hints.values()))
    profiles = {h.provider: h.profile for h in cfg.hosts()}
    below = []
    for name in ("google", "microsoft", "yahoo", "apple"):
        hint, profile = hints[name], profiles[name]
        assert hint["period"] == "1s" and profile.rate_period == 1.0
        # GCRA lets burst + rate through in any one-second window.
        worst = hint["burst"] + hint["messages"]
        assert profile.rate is not None and profile.max_connections is not None
        if worst <= profile.rate:
            below.append(name)
            assert hint["connections"] < profile.max_connections
        # Every domain of the provider falls under the provider's rule (MX rollup).
        for spec in cfg.domains:
            hosts = [m.host for m in spec.mx]
            if hosts and {h.provider for h in cfg.hosts() if h.name in hosts} == {name}:
                assert rules.match(spec.name, hosts).rule.name == name, spec.name
    assert below == ["google", "microsoft", "apple"]
    assert hints["yahoo"]["messages"] > profiles["yahoo"].rate  # type: ignore[operator]
    assert rules.match("northwind.test", ["mx.northwind.test"]).rule.name == "default"


@pytest.mark.parametrize("style", ["google", "microsoft", "yahoo", "apple", "generic"])
def test_node_recognises_every_throttling_reply(style: str) -> None:
    rules = ThrottleRules.load([])
    dest = rules.match("shop.test", ["mx.shop.test"])
    for text in (
        throttle_reply(style, "127.0.0.1", "mx.shop.test"),  # type: ignore[arg-type]
        connection_reply(style, "127.0.0.1", "mx.shop.test"),  # type: ignore[arg-type]
    ):
        lines = text.split("\r\n")
        reply = Reply.from_lines(int(lines[0][:3]), [ln[4:] for ln in lines])
        assert rules.is_throttling(dest, reply), text
    greylisted = Reply.from_lines(451, ["4.7.1 Greylisted, please try again in 3 seconds"])
    assert not rules.is_throttling(dest, greylisted)
