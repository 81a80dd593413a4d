"""Rule matching, bucket keys and validation of [[throttle.rules]]."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from postline.errors import ConfigError
from postline.throttle.keys import backend_keys, limits_digest
from postline.throttle.rules import Limits, ThrottleRule, ThrottleRules, normalize_host

CONFIG = """
[throttle]
backend = "memory"    # belongs to the node configuration, ignored here

[[throttle.rules]]
name = "google"
mx = ["*.google.com", "*.googlemail.com"]
scope = "rule"
messages = 3000
period = "1m"
connections = 20
messages_per_connection = 100
recipients_per_transaction = 100

[[throttle.rules]]
name = "corp"
domains = ["*.corp.example", "corp.example"]
scope = "domain"
messages = 10
period = 1
burst = 5
throttle_replies = ['4\\.3\\.2 .*busy']
"""


def own(*tables: dict[str, Any]) -> ThrottleRules:
    return ThrottleRules.load(tables, include_defaults=False)


# --- matching --------------------------------------------------------------------------


def test_domain_globs_match_the_recipient_domain() -> None:
    rules = own({"name": "ex", "domains": ["*.example.org"], "messages": 1})
    assert rules.match("mail.example.org", []).rule.name == "ex"
    assert rules.match("a.b.example.org", []).rule.name == "ex"  # '*' spans dots
    assert rules.match("example.org", []).rule.name == "default"
    assert rules.match("example.org.evil.test", []).rule.name == "default"


def test_mx_globs_match_any_mx_host() -> None:
    rules = own({"name": "hosted", "mx": ["*.mx.provider.test"], "connections": 2})
    dest = rules.match("customer.test", ["backup.other.test", "in1.mx.provider.test"], "site")
    assert dest.rule.name == "hosted"
    assert rules.match("customer.test", ["mx.provider.test"], "site").rule.name == "default"
    # domain patterns do not look at MX hosts and the other way round
    assert rules.match("in1.mx.provider.test", [], "").rule.name == "default"


def test_first_match_wins() -> None:
    rules = own(
        {"name": "narrow", "domains": ["vip.example.org"], "messages": 100},
        {"name": "wide", "domains": ["*example.org"], "messages": 1},
    )
    assert rules.match("vip.example.org", []).rule.name == "narrow"
    assert rules.match("x.example.org", []).rule.name == "wide"
    reordered = own(
        {"name": "wide", "domains": ["*example.org"], "messages": 1},
        {"name": "narrow", "domains": ["vip.example.org"], "messages": 100},
    )
    assert reordered.match("vip.example.org", []).rule.name == "wide"


def test_user_rules_come_before_shipped_rules() -> None:
    rules = ThrottleRules.load([{"name": "mine", "domains": ["gmail.com"], "messages": 5}])
    assert [r.name for r in rules.rules][:2] == ["mine", "google"]
    assert rules.match("gmail.com", []).rule.name == "mine"
    assert rules.match("googlemail.com", []).rule.name == "google"


def test_a_user_rule_named_like_a_shipped_rule_replaces_it_in_place() -> None:
    shipped = ThrottleRules.load()
    rules = ThrottleRules.load(
        [
            {"name": "first", "domains": ["first.test"]},
            {"name": "yahoo", "domains": ["yahoo.com"], "messages": 7, "period": "1h"},
        ]
    )
    names = [r.name for r in rules.rules]
    assert names == ["first", *[r.name for r in shipped.rules]]
    dest = rules.match("yahoo.com", [])
    assert dest.rule.name == "yahoo"
    assert dest.limits == Limits(messages=7, period=3600.0)
    # the replacement's patterns are the user's, not the shipped ones
    assert rules.match("aol.com", []).rule.name == "default"


def test_catch_all_always_matches_last() -> None:
    rules = own()
    assert [r.name for r in rules.rules] == ["default"]
    dest = rules.match("nowhere.test", [], "mx.nowhere.test")
    assert dest.rule.name == "default"
    assert dest.rule.scope == "site"
    assert dest.limits.connections is not None


def test_a_user_default_rule_replaces_the_catch_all() -> None:
    rules = ThrottleRules.load([{"name": "default", "scope": "domain", "connections": 1}])
    assert rules.rules[-1].name == "default"
    assert len([r for r in rules.rules if r.name == "default"]) == 1
    dest = rules.match("small.test", ["mx.small.test"], "mx.small.test")
    assert dest.limits == Limits(connections=1)
    assert dest.key.startswith("default:domain=small.test:")


def test_a_static_route_gets_the_relay_rule_not_a_providers() -> None:
    rules = ThrottleRules.load([])  # the shipped provider rules included
    # gmail.com through a smarthost: the relay's limits, not Google's.
    dest = rules.match("gmail.com", ["smtp.relay.test"], "route:smtp.relay.test:587", relay=True)
    assert dest.rule.name == "relay"
    assert dest.rule.scope == "site"
    assert dest.limits.messages is None and dest.limits.connections == 20
    assert dest.provider == "relay:site=route:smtp.relay.test:587"
    assert rules.match("gmail.com", ["alt1.gmail-smtp-in.l.google.com"]).rule.name == "google"


def test_own_rules_come_before_the_relay_rule_and_replace_it_by_name() -> None:
    rules = ThrottleRules.load(
        [
            {"name": "one-route", "mx": ["smtp.relay.test"], "connections": 2},
            {"name": "relay", "connections": 7},
            {"name": "google", "domains": ["gmail.com"], "connections": 1},
        ]
    )
    assert rules.match("x.test", ["smtp.relay.test"], "r", relay=True).rule.name == "one-route"
    other = rules.match("gmail.com", ["other.relay.test"], "r2", relay=True)
    assert other.rule.name == "relay" and other.limits.connections == 7
    # A user rule replacing a provider's is a provider's rule: not for relays.
    assert rules.match("gmail.com", [], "mx").rule.name == "google"
    assert "relay" not in [r.name for r in rules.rules]


def test_scope_decides_the_key_shape() -> None:
    rules = own(
        {"name": "r", "domains": ["r*.test"], "scope": "rule", "messages": 1},
        {"name": "s", "domains": ["s*.test"], "scope": "site", "messages": 1},
        {"name": "d", "domains": ["d*.test"], "scope": "domain", "messages": 1},
    )
    r1, r2 = rules.match("r1.test", [], "site-a"), rules.match("r2.test", [], "site-b")
    assert r1.key == r2.key
    assert r1.key == f"r:{limits_digest(r1.limits)}"

    s1 = rules.match("s1.test", [], "Site-A")
    s2 = rules.match("s2.test", [], "site-a")
    s3 = rules.match("s1.test", [], "site-b")
    assert s1.key == s2.key == f"s:site=site-a:{limits_digest(s1.limits)}"
    assert s3.key != s1.key

    d1 = rules.match("d1.test", [], "same-site")
    d2 = rules.match("d2.test", [], "same-site")
    assert d1.key == f"d:domain=d1.test:{limits_digest(d1.limits)}"
    assert d1.key != d2.key


def test_site_scope_falls_back_to_the_domain_without_a_site() -> None:
    dest = own().match("Implicit.Test", [], "")
    assert dest.key.startswith("default:site=implicit.test:")


def test_source_gives_each_egress_its_own_bucket() -> None:
    rules = ThrottleRules.load()
    a = rules.match("gmail.com", [], source="192.0.2.1")
    b = rules.match("gmail.com", [], source="192.0.2.2")
    shared = rules.match("gmail.com", [])
    assert a.key.startswith("google@192.0.2.1:")
    assert len({a.key, b.key, shared.key}) == 3
    v6 = rules.match("gmail.com", [], source="2001:db8::1")
    assert v6.key.startswith("google@2001%3Adb8%3A%3A1:")


def test_matching_is_case_insensitive_and_ignores_a_trailing_dot() -> None:
    rules = own(
        {"name": "up", "domains": ["Example.ORG"], "messages": 1},
        {"name": "mx", "mx": ["*.MX.Test."], "messages": 1},
    )
    assert rules.match("EXAMPLE.org.", []).rule.name == "up"
    assert rules.match("x.test", ["A.mx.test."]).rule.name == "mx"
    assert rules.match("Example.org", []).key == rules.match("example.org", []).key


def test_idn_domains_match_in_either_form() -> None:
    rules = own(
        {"name": "u", "domains": ["bücher.de"], "scope": "domain", "messages": 1},
        {"name": "a", "domains": ["xn--mnchen-3ya.de"], "messages": 1},
        {"name": "w", "domains": ["*.bücher.example"], "messages": 1},
    )
    assert rules.rules[0].domains == ("xn--bcher-kva.de",)
    assert rules.match("xn--bcher-kva.de", []).rule.name == "u"
    assert rules.match("BÜCHER.de", []).rule.name == "u"
    assert rules.match("münchen.de", []).rule.name == "a"
    assert rules.match("mail.xn--bcher-kva.example", []).rule.name == "w"
    assert rules.match("bücher.de", []).key == rules.match("xn--bcher-kva.de", []).key
    assert normalize_host("Bücher.DE.") == "xn--bcher-kva.de"


def test_unconvertible_names_match_only_the_catch_all() -> None:
    rules = own({"name": "x", "domains": ["*"], "messages": 1})
    label = "ü" * 70  # too long for IDNA
    assert normalize_host(label + ".test") == label + ".test"
    assert rules.match("plain.test", []).rule.name == "x"


def test_changing_limits_changes_the_key() -> None:
    base = {"name": "g", "domains": ["g.test"], "messages": 100, "period": "1m"}
    keys = {
        own(base).match("g.test", []).key,
        own({**base, "messages": 101}).match("g.test", []).key,
        own({**base, "period": "2m"}).match("g.test", []).key,
        own({**base, "burst": 3}).match("g.test", []).key,
        own({**base, "connections": 2}).match("g.test", []).key,
        own({**base, "recipients_per_transaction": 9}).match("g.test", []).key,
    }
    assert len(keys) == 6
    # same limits, same key (in this process and, being a SHA-256 digest, in any other)
    assert own(base).match("g.test", []).key == own(dict(base)).match("g.test", []).key


def test_limits_digest_is_stable_across_versions() -> None:
    # Nodes of different versions share buckets on Redis; the canonical text must not drift.
    assert limits_digest(Limits(messages=100, period=60.0, connections=5)) == limits_digest(
        Limits(messages=100, period=60, connections=5)
    )
    canonical = (
        "messages=100;period=60.0;burst=None;connections=5;"
        "messages_per_connection=None;recipients_per_transaction=None"
    )
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:8]
    assert limits_digest(Limits(messages=100, period=60, connections=5)) == expected


def test_backend_keys_share_one_hash_tag() -> None:
    keys = backend_keys("default:site=mx.test:abcd1234")
    for name in (keys.rate, keys.adaptive, keys.leases):
        assert name.startswith("postline:throttle:{default:site=mx.test:abcd1234}:")
    assert len({keys.rate, keys.adaptive, keys.leases}) == 3


def test_from_toml_reads_the_documented_shape() -> None:
    rules = ThrottleRules.from_toml(CONFIG)
    google = rules.match("hosted.test", ["alt1.aspmx.l.google.com"])
    assert google.rule.name == "google"
    assert google.limits == Limits(
        messages=3000,
        period=60.0,
        connections=20,
        messages_per_connection=100,
        recipients_per_transaction=100,
    )
    assert google.limits.effective_burst == 50
    corp = rules.match("a.corp.example", [])
    assert corp.rule.scope == "domain"
    assert corp.limits == Limits(messages=10, period=1.0, burst=5)
    assert corp.rule.throttle_replies == ("4\\.3\\.2 .*busy",)


def test_from_toml_without_rules_gives_the_shipped_set() -> None:
    assert [r.name for r in ThrottleRules.from_toml("").rules] == [
        r.name for r in ThrottleRules.load().rules
    ]


def test_constructor_requires_a_catch_all_last() -> None:
    rule = ThrottleRule(name="x", domains=("x.test",), limits=Limits())
    with pytest.raises(ValueError, match="catch-all"):
        ThrottleRules([rule])
    with pytest.raises(ValueError, match="catch-all"):
        ThrottleRules([])
    rules = ThrottleRules([rule, ThrottleRule(name="default", limits=Limits())])
    assert rules.match("y.test", []).rule.name == "default"


def test_rule_scope_is_checked() -> None:
    with pytest.raises(ValueError, match="scope"):
        ThrottleRule(name="x", scope="global", limits=Limits())  # type: ignore[arg-type]


# --- Limits ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limits", "burst"),
    [
        (Limits(messages=3000, period=60), 50),
        (Limits(messages=100, period=3600), 1),
        (Limits(messages=10, period=1, burst=3), 3),
        (Limits(), 1),
    ],
)
def test_default_burst_is_one_seconds_worth(limits: Limits, burst: int) -> None:
    assert limits.effective_burst == burst


@pytest.mark.parametrize(
    "kwargs",
    [
        {"messages": 0},
        {"messages": 1.5},
        {"messages": True},
        {"period": 0},
        {"period": -1.0},
        {"period": float("inf")},
        {"burst": 0},
        {"connections": -2},
        {"messages_per_connection": 0},
        {"recipients_per_transaction": "5"},
    ],
)
def test_limits_refuse_nonsense(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Limits(**kwargs)


# --- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            {"name": "google", "mx": ["*.google.com"], "messages": 1, "period": "5 minutes"},
            "throttle rule 'google': period '5 minutes' is not a duration;"
            " use e.g. '30s', '5m', '1h'",
        ),
        (
            {"name": "g", "domains": ["g.test"], "messages": 1, "period": "0s"},
            "throttle rule 'g': period must be longer than zero, got '0s'",
        ),
        (
            {"name": "g", "domains": ["g.test"], "mesages": 1},
            "throttle rule 'g': unknown key 'mesages'; allowed keys: burst, connections,",
        ),
        ({"domains": ["g.test"]}, "throttle rule #1: 'name' is missing"),
        (
            {"name": "has space", "domains": ["g.test"]},
            "throttle rule 'has space': name 'has space'",
        ),
        ({"name": "a:b", "domains": ["g.test"]}, "must be 1-64 letters, digits"),
        (
            {"name": "g", "domains": ["g.test"], "messages": "3k"},
            "throttle rule 'g': messages must be a positive whole number, got '3k'",
        ),
        ({"name": "g", "domains": ["g.test"], "messages": 0}, "messages must be a positive whole"),
        (
            {"name": "g", "domains": ["g.test"], "connections": True},
            "connections must be a positive",
        ),
        (
            {"name": "g", "domains": ["g.test"], "burst": 2.5, "messages": 3},
            "burst must be a positive",
        ),
        (
            {"name": "g", "domains": ["g.test"], "scope": "global"},
            "throttle rule 'g': scope 'global' must be one of rule, site, domain",
        ),
        (
            {"name": "g", "domains": "gmail.com"},
            "throttle rule 'g': domains must be a list of strings, e.g. domains = [\"gmail.com\"]",
        ),
        ({"name": "g", "mx": [3]}, "throttle rule 'g': mx must be a list of strings"),
        ({"name": "g", "mx": ["mx .test"]}, "throttle rule 'g': mx pattern 'mx .test' is invalid"),
        ({"name": "g", "domains": ["a@b.test"]}, "domains pattern 'a@b.test' is invalid"),
        ({"name": "g", "domains": [""]}, "domains pattern '' is invalid"),
        ({"name": "g", "domains": ["bü*.de"]}, "cannot hold wildcards"),
        ({"name": "g"}, "throttle rule 'g': needs 'domains' or 'mx' patterns"),
        (
            {"name": "default", "domains": ["x.test"]},
            "the 'default' rule matches every destination",
        ),
        ({"name": "g", "domains": ["g.test"], "burst": 3}, "'burst' needs 'messages'"),
        ({"name": "g", "domains": ["g.test"], "period": "1m"}, "'period' needs 'messages'"),
        (
            {"name": "g", "domains": ["g.test"], "throttle_replies": ["(unclosed"]},
            "throttle rule 'g': throttle_replies pattern '(unclosed' is not a valid regular",
        ),
        ("just a string", "throttle rule #1: must be a table"),
    ],
)
def test_invalid_rules_are_refused_with_a_clear_message(table: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        ThrottleRules.load([table])
    assert message in str(info.value)


def test_the_relay_rule_takes_no_patterns() -> None:
    with pytest.raises(ConfigError, match="applies to every static route"):
        ThrottleRules.load([{"name": "relay", "mx": ["smtp.relay.test"]}])


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="throttle rule 'g' is defined twice"):
        ThrottleRules.load([{"name": "g", "domains": ["a.test"]}, {"name": "g", "mx": ["b.test"]}])


def test_rules_must_be_a_list_of_tables() -> None:
    with pytest.raises(ConfigError, match=r"throttle.rules must be a list of tables"):
        ThrottleRules.from_toml('[throttle]\nrules = "google"\n')
    with pytest.raises(ConfigError, match=r"throttle.rules must be a list of tables"):
        ThrottleRules.load({"name": "g"})  # type: ignore[arg-type]


def test_bad_global_reply_patterns_are_refused() -> None:
    with pytest.raises(ConfigError, match="throttle: throttle_replies pattern"):
        ThrottleRules.from_toml("[throttle]\nthrottle_replies = ['[']\n")


def test_invalid_toml_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="the TOML is invalid"):
        ThrottleRules.from_toml("[[throttle.rules]\nname = 'x'")
    with pytest.raises(ConfigError, match=r"throttle must be a table"):
        ThrottleRules.from_toml("throttle = 3")


def test_error_names_the_rule_by_position_when_unnamed() -> None:
    with pytest.raises(ConfigError, match="throttle rule #2: 'name' is missing"):
        ThrottleRules.load([{"name": "ok", "domains": ["a.test"]}, {"domains": ["b.test"]}])
