"""The shipped defaults.toml: it loads, and the big providers match as documented."""

from __future__ import annotations

import re
import tomllib
from importlib import resources

import pytest

from postline.throttle.rules import ThrottleRules


@pytest.fixture(scope="module")
def shipped() -> ThrottleRules:
    return ThrottleRules.load()


@pytest.mark.parametrize(
    ("domain", "mx_hosts", "rule"),
    [
        ("gmail.com", [], "google"),
        ("googlemail.com", [], "google"),
        ("workspace-customer.test", ["aspmx.l.google.com", "alt1.aspmx.l.google.com"], "google"),
        ("legacy-customer.test", ["aspmx2.googlemail.com"], "google"),
        ("outlook.com", [], "microsoft"),
        ("hotmail.co.uk", [], "microsoft"),
        ("live.com", [], "microsoft"),
        ("msn.com", [], "microsoft"),
        ("tenant.test", ["tenant-test.mail.protection.outlook.com"], "microsoft"),
        ("consumer.test", ["outlook-com.olc.protection.outlook.com"], "microsoft"),
        ("yahoo.com", [], "yahoo"),
        ("yahoo.co.jp", [], "yahoo"),
        ("aol.com", [], "yahoo"),
        ("ymail.com", [], "yahoo"),
        ("hosted-by-yahoo.test", ["mta5.am0.yahoodns.net"], "yahoo"),
        ("icloud.com", [], "apple"),
        ("me.com", [], "apple"),
        ("mac.com", [], "apple"),
        ("apple-hosted.test", ["mx01.mail.icloud.com"], "apple"),
        ("unknown.test", ["mx.unknown.test"], "default"),
        ("google.com.evil.test", ["google.com.evil.test"], "default"),
    ],
)
def test_shipped_rules_match(
    shipped: ThrottleRules, domain: str, mx_hosts: list[str], rule: str
) -> None:
    assert shipped.match(domain, mx_hosts, mx_hosts[0] if mx_hosts else "").rule.name == rule


def test_mx_rollup_shares_one_bucket(shipped: ThrottleRules) -> None:
    gmail = shipped.match("gmail.com", ["gmail-smtp-in.l.google.com"], "gmail-site")
    hosted = shipped.match("hosted.test", ["aspmx.l.google.com"], "hosted-site")
    assert gmail.key == hosted.key


def test_unknown_destinations_get_one_bucket_per_site(shipped: ThrottleRules) -> None:
    a = shipped.match("a.test", ["mx.shared-host.test"], "mx.shared-host.test")
    b = shipped.match("b.test", ["mx.shared-host.test"], "mx.shared-host.test")
    c = shipped.match("c.test", ["mx.c.test"], "mx.c.test")
    assert a.rule.scope == "site"
    assert a.key == b.key != c.key


def test_shipped_limits_are_conservative_and_complete(shipped: ThrottleRules) -> None:
    default = shipped.rules[-1]
    assert default.name == "default"
    assert default.catch_all
    for rule in shipped.rules:
        limits = rule.limits
        assert limits.messages is not None
        assert limits.connections is not None
        assert limits.messages_per_connection is not None
        assert limits.recipients_per_transaction is not None
        assert 1 <= limits.connections <= 20
        assert limits.recipients_per_transaction <= 100
        assert limits.effective_burst <= 50
    assert default.limits.connections is not None
    assert default.limits.connections <= 5
    for rule in shipped.rules[:-1]:
        assert rule.limits.connections is not None
        assert rule.limits.connections >= default.limits.connections


def test_defaults_toml_is_package_data_with_valid_reply_patterns() -> None:
    text = resources.files("postline.throttle").joinpath("defaults.toml").read_text("utf-8")
    data = tomllib.loads(text)
    assert set(data) == {"throttle_replies", "not_throttle_replies", "rules"}
    for pattern in [*data["throttle_replies"], *data["not_throttle_replies"]]:
        re.compile(pattern)
