"""Throttle rules: which limits apply to a destination, and which bucket it shares.

A rule matches a destination by glob patterns on the recipient domain (``domains``) or on
the host names of its mail exchangers (``mx``); the first matching rule wins. User rules
come first, then the shipped provider rules of ``defaults.toml``, then the catch-all rule
``default``, which matches everything. ``scope`` says which destinations share ONE bucket:

- ``"rule"``: every destination the rule matches (MX rollup: all Google-hosted domains
  share Google's limits);
- ``"site"``: each MX site (the set of mail exchangers, named by the caller);
- ``"domain"``: each recipient domain.

The configuration interface (stable; documented in the node configuration reference)::

    [[throttle.rules]]
    name = "google"
    mx = ["*.google.com", "*.googlemail.com"]
    scope = "rule"
    messages = 3000
    period = "1m"
    connections = 20
    messages_per_connection = 100
    recipients_per_transaction = 100

Other keys: ``domains`` (list of globs), ``burst`` (messages sent at once from an idle
bucket), ``throttle_replies`` (extra regexes marking a reply as "slow down"). A rule named
like a shipped rule replaces it in place; the rule named ``default`` replaces the
catch-all's limits and must not have patterns. Patterns are case-insensitive and compare
IDNA (``xn--``) forms, so ``bücher.de`` and ``xn--bcher-kva.de`` are the same domain.
Globs use ``fnmatch`` syntax where ``*`` also spans dots: ``*.google.com`` matches
``alt1.aspmx.l.google.com`` but not ``google.com`` itself.

Everything here is pure: matching does no I/O, and loading validates every key with a
``ConfigError`` that names the rule and the key.
"""

from __future__ import annotations

import encodings.idna
import fnmatch
import functools
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from postline.errors import ConfigError
from postline.model.reply import Reply
from postline.throttle import adaptive
from postline.throttle._shipped import shipped_data
from postline.throttle.keys import destination_key, provider_id
from postline.units import DURATION_HINT, parse_duration

__all__ = [
    "CATCH_ALL",
    "RELAY",
    "SCOPES",
    "Destination",
    "Limits",
    "Scope",
    "ThrottleRule",
    "ThrottleRules",
    "normalize_host",
]

Scope = Literal["rule", "site", "domain"]
SCOPES: tuple[Scope, ...] = ("rule", "site", "domain")

#: Name of the catch-all rule, which always matches last.
CATCH_ALL = "default"
#: Name of the rule of static routes (``[[delivery.routes]]``: a relay, not a mailbox
#: provider), which only the user's own rules come before.
RELAY = "relay"
_PATTERNLESS = (CATCH_ALL, RELAY)

_RULE_KEYS = frozenset(
    {
        "name",
        "domains",
        "mx",
        "scope",
        "messages",
        "period",
        "burst",
        "connections",
        "messages_per_connection",
        "recipients_per_transaction",
        "throttle_replies",
    }
)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_GLOB = re.compile(r"[a-z0-9*?\[\]!_.-]+")


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of one bucket. ``None`` means "no limit" for every field.

    ``messages`` per ``period`` seconds is the sustained rate, enforced by GCRA. ``burst``
    is how many messages an idle bucket grants at once; when it is not given it is one
    second's worth of the rate, at least 1 (``3000`` per minute → 50; ``100`` per hour → 1).
    ``connections`` caps concurrent sessions; ``messages_per_connection`` and
    ``recipients_per_transaction`` are for the delivery engine's connection pool.
    """

    messages: int | None = None
    period: float = 1.0
    burst: int | None = None
    connections: int | None = None
    messages_per_connection: int | None = None
    recipients_per_transaction: int | None = None

    def __post_init__(self) -> None:
        if self.messages is not None and not _positive_int(self.messages):
            raise ValueError(f"messages must be a positive whole number, got {self.messages!r}")
        if (
            isinstance(self.period, bool)
            or not isinstance(self.period, int | float)
            or not math.isfinite(self.period)
            or self.period <= 0
        ):
            raise ValueError(f"period must be a positive number of seconds, got {self.period!r}")
        for name in ("burst", "connections", "messages_per_connection"):
            value = getattr(self, name)
            if value is not None and not _positive_int(value):
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        rpt = self.recipients_per_transaction
        if rpt is not None and not _positive_int(rpt):
            raise ValueError(
                f"recipients_per_transaction must be a positive whole number, got {rpt!r}"
            )

    @property
    def rate(self) -> float | None:
        """Messages per second, or ``None`` when the rate is unlimited."""
        return None if self.messages is None else self.messages / self.period

    @property
    def effective_burst(self) -> int:
        """``burst``, or one second's worth of the rate (at least 1) when not given."""
        if self.burst is not None:
            return self.burst
        rate = self.rate
        return 1 if rate is None else max(1, math.floor(rate))


@dataclass(frozen=True, slots=True, kw_only=True)
class ThrottleRule:
    """One rule: patterns that select destinations, a bucket scope and the limits.

    ``domains`` and ``mx`` are glob patterns (see the module docstring); a rule with
    neither is a catch-all. ``throttle_replies`` are extra regexes that mark a reply from
    a destination of this rule as "slow down".
    """

    name: str
    domains: tuple[str, ...] = ()
    mx: tuple[str, ...] = ()
    scope: Scope = "rule"
    limits: Limits
    throttle_replies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {self.scope!r}")

    @property
    def catch_all(self) -> bool:
        """True when the rule has no patterns and so matches every destination."""
        return not self.domains and not self.mx


@dataclass(frozen=True, slots=True)
class Destination:
    """The result of matching: the rule, the bucket key and the limits to enforce."""

    rule: ThrottleRule
    key: str
    limits: Limits
    provider: str = ""
    """The destination without source or limits (``keys.provider_id``): ``google`` for a
    rule-wide bucket, ``default:site=mx1.example.net`` for one MX site. Warm-up caps and
    provider blocks are counted per source against this."""


def normalize_host(name: str) -> str:
    """Lower-case ``name``, drop a trailing dot and turn non-ASCII labels into ``xn--`` form.

    Labels that cannot be converted are kept lower-cased (they then match no ASCII pattern).

    >>> normalize_host("Bücher.DE.")
    'xn--bcher-kva.de'
    """
    host = name.strip().rstrip(".").lower()
    if host.isascii():
        return host
    labels = []
    for label in host.split("."):
        if label.isascii():
            labels.append(label)
            continue
        try:
            labels.append(encodings.idna.ToASCII(label).decode("ascii"))
        except UnicodeError:
            labels.append(label)
    return ".".join(labels)


def _normalize_glob(pattern: str) -> str:
    """``normalize_host`` for a glob; raise ``ValueError`` for what can never match."""
    host = pattern.strip().rstrip(".").lower()
    labels = []
    for label in host.split("."):
        if not label.isascii():
            if any(c in label for c in "*?[]!"):
                raise ValueError("a label with non-ASCII letters cannot hold wildcards")
            try:
                label = encodings.idna.ToASCII(label).decode("ascii")
            except UnicodeError as exc:
                raise ValueError(f"not a valid internationalized name ({exc})") from exc
        labels.append(label)
    host = ".".join(labels)
    if not host or not _GLOB.fullmatch(host) or ".." in host:
        raise ValueError("use a host name with optional wildcards, e.g. '*.example.org'")
    return host


def _compile_globs(patterns: Sequence[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(_normalize_glob(p)) for p in patterns))


@dataclass(frozen=True, slots=True)
class _Compiled:
    rule: ThrottleRule
    domains: re.Pattern[str] | None
    mx: re.Pattern[str] | None

    def matches(self, domain: str, mx_hosts: Sequence[str]) -> bool:
        if self.domains is None and self.mx is None:
            return True
        if self.domains is not None and self.domains.match(domain):
            return True
        return self.mx is not None and any(self.mx.match(h) for h in mx_hosts)


class ThrottleRules:
    """An ordered, validated rule list whose last rule is a catch-all.

    Build it with ``load`` (parsed tables) or ``from_toml`` (configuration text); the
    constructor takes finished rules and checks only the catch-all and the reply patterns.
    """

    __slots__ = ("_compiled", "_extra_replies", "_own", "relay", "rules", "throttle_replies")

    rules: tuple[ThrottleRule, ...]
    relay: ThrottleRule
    throttle_replies: tuple[str, ...]

    def __init__(
        self,
        rules: Sequence[ThrottleRule],
        *,
        throttle_replies: Sequence[str] = (),
        relay: ThrottleRule | None = None,
        own: int = 0,
    ) -> None:
        """``rules`` in order, a catch-all last; ``relay`` the rule of static routes (the
        shipped one by default), which only the first ``own`` rules (the user's own, not
        a provider's) come before."""
        if not rules or not rules[-1].catch_all:
            raise ValueError("the last throttle rule must be a catch-all (no domains, no mx)")
        if relay is None:
            relay = next(r for r in _shipped_rules() if r.name == RELAY)
        if not relay.catch_all:
            raise ValueError("the relay throttle rule has no domains and no mx")
        self.relay = relay
        self._own = min(own, len(rules) - 1)
        self.rules = tuple(rules)
        self.throttle_replies = tuple(throttle_replies)
        for pattern in self.throttle_replies:
            re.compile(pattern)
        self._compiled = tuple(
            _Compiled(r, _compile_globs(r.domains), _compile_globs(r.mx)) for r in self.rules
        )
        self._extra_replies = {
            r.name: (*r.throttle_replies, *self.throttle_replies) for r in (*self.rules, self.relay)
        }

    def __repr__(self) -> str:
        return f"ThrottleRules({[r.name for r in self.rules]!r})"

    @classmethod
    def load(
        cls,
        user_rules: Sequence[Mapping[str, Any]] = (),
        *,
        include_defaults: bool = True,
        throttle_replies: Sequence[str] = (),
    ) -> ThrottleRules:
        """Validate ``user_rules`` (parsed ``[[throttle.rules]]`` tables) and merge them.

        Order: user rules, then (with ``include_defaults``) the shipped provider rules, then
        the catch-all. A user rule named like a shipped rule replaces it in place; a user
        rule named ``default`` replaces the catch-all. ``throttle_replies`` are extra
        regexes that mark a reply as "slow down" for every destination.
        """
        if isinstance(user_rules, Mapping | str) or not isinstance(user_rules, Sequence):
            raise ConfigError("throttle.rules must be a list of tables ([[throttle.rules]])")
        parsed = [_parse_rule(table, i) for i, table in enumerate(user_rules)]
        seen: set[str] = set()
        for rule in parsed:
            if rule.name in seen:
                raise ConfigError(f"throttle rule '{rule.name}' is defined twice")
            seen.add(rule.name)
        replies = _parse_patterns("throttle", "throttle_replies", throttle_replies)

        shipped = _shipped_rules()
        providers = [r for r in shipped if r.name not in _PATTERNLESS] if include_defaults else []
        by_name = {r.name: r for r in parsed}
        provider_names = {r.name for r in providers}
        own = [r for r in parsed if r.name not in _PATTERNLESS and r.name not in provider_names]
        merged = [by_name.get(r.name, r) for r in providers]
        catch_all = by_name.get(CATCH_ALL) or next(r for r in shipped if r.name == CATCH_ALL)
        relay = by_name.get(RELAY) or next(r for r in shipped if r.name == RELAY)
        return cls([*own, *merged, catch_all], throttle_replies=replies, relay=relay, own=len(own))

    @classmethod
    def from_toml(cls, text: str, *, include_defaults: bool = True) -> ThrottleRules:
        """Read ``[[throttle.rules]]`` and ``throttle.throttle_replies`` from TOML ``text``.

        Other keys of the ``[throttle]`` table belong to the node configuration and are
        left alone here.
        """
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"throttle rules: the TOML is invalid: {exc}") from exc
        section = data.get("throttle", {})
        if not isinstance(section, dict):
            raise ConfigError("throttle must be a table ([throttle])")
        return cls.load(
            section.get("rules", []),
            include_defaults=include_defaults,
            throttle_replies=section.get("throttle_replies", []),
        )

    def match(
        self,
        domain: str,
        mx_hosts: Sequence[str] = (),
        site: str = "",
        *,
        source: str | None = None,
        relay: bool = False,
    ) -> Destination:
        """The first rule that matches ``domain`` or one of ``mx_hosts``, with its bucket.

        ``site`` names the MX site for scope ``"site"`` (the recipient domain stands in when
        it is empty, e.g. for an implicit MX). ``source`` (an egress IP or pool name), when
        given, gives each source its own bucket, since receivers limit per sending IP.
        ``relay``: the destination is a static route to ``mx_hosts``, a relay rather than
        the recipient domain's mail exchangers: the user's own rules, then the ``relay``
        rule (a provider's limits are not the relay's).
        """
        host = normalize_host(domain)
        hosts = [normalize_host(h) for h in mx_hosts]
        candidates = self._compiled[: self._own] if relay else self._compiled
        for compiled in candidates:
            if compiled.matches(host, hosts):
                rule = compiled.rule
                break
        else:
            if not relay:  # pragma: no cover - the constructor guarantees a catch-all
                raise AssertionError("no catch-all throttle rule")
            rule = self.relay
        value = host if rule.scope == "domain" else (normalize_host(site) or host)
        key = destination_key(rule.name, rule.scope, value, rule.limits, source=source)
        provider = provider_id(rule.name, rule.scope, value)
        return Destination(rule=rule, key=key, limits=rule.limits, provider=provider)

    def is_throttling(self, destination: Destination, reply: Reply) -> bool:
        """Whether ``reply`` asks ``destination`` to slow down (see ``is_throttling_reply``)."""
        extra = self._extra_replies.get(destination.rule.name, destination.rule.throttle_replies)
        return adaptive.is_throttling_reply(reply.code, reply.enhanced, reply.text, extra)


# --- loading -----------------------------------------------------------------------------


def _label(table: Mapping[str, Any], index: int) -> str:
    name = table.get("name")
    if isinstance(name, str) and name:
        return f"throttle rule '{name}'"
    return f"throttle rule #{index + 1}"


def _parse_rule(table: object, index: int) -> ThrottleRule:
    if not isinstance(table, Mapping):
        raise ConfigError(f"throttle rule #{index + 1}: must be a table, got {table!r}")
    where = _label(table, index)
    unknown = sorted(set(table) - _RULE_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_RULE_KEYS))
        raise ConfigError(f"{where}: unknown key '{unknown[0]}'; allowed keys: {allowed}")

    name = table.get("name")
    if name is None:
        raise ConfigError(f"{where}: 'name' is missing")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: name {name!r} must be 1-64 letters, digits, '_', '.' or '-',"
            " starting with a letter or digit"
        )

    domains = _parse_globs(where, "domains", table.get("domains", []))
    mx = _parse_globs(where, "mx", table.get("mx", []))
    if name == CATCH_ALL and (domains or mx):
        raise ConfigError(
            f"{where}: the '{CATCH_ALL}' rule matches every destination; remove 'domains' and"
            " 'mx', or give the rule another name"
        )
    if name == RELAY and (domains or mx):
        raise ConfigError(
            f"{where}: the '{RELAY}' rule applies to every static route ([[delivery.routes]]);"
            " remove 'domains' and 'mx' (a rule with 'mx' = the route's host limits one"
            " route), or give the rule another name"
        )
    if name not in _PATTERNLESS and not domains and not mx:
        raise ConfigError(
            f"{where}: needs 'domains' or 'mx' patterns; to change the limits of every other"
            f" destination, name the rule '{CATCH_ALL}'"
        )

    # The catch-all limits each MX site on its own unless told otherwise: one bucket for
    # every unmatched destination would let one slow site starve all the others. So does
    # the relay rule, each route on its own.
    scope = table.get("scope", "site" if name in _PATTERNLESS else "rule")
    if scope not in SCOPES:
        raise ConfigError(f"{where}: scope {scope!r} must be one of {', '.join(SCOPES)}")

    counts: dict[str, int | None] = {}
    for key in (
        "messages",
        "burst",
        "connections",
        "messages_per_connection",
        "recipients_per_transaction",
    ):
        value = table.get(key)
        if value is not None and not _positive_int(value):
            raise ConfigError(f"{where}: {key} must be a positive whole number, got {value!r}")
        counts[key] = value

    period = 1.0
    if "period" in table:
        raw = table["period"]
        try:
            period = parse_duration(raw)
        except ValueError:
            raise ConfigError(
                f"{where}: period {_show(raw)} is not a duration; {DURATION_HINT}"
            ) from None
        if period <= 0:
            raise ConfigError(f"{where}: period must be longer than zero, got {_show(raw)}")
        if counts["messages"] is None:
            raise ConfigError(f"{where}: 'period' needs 'messages' (messages per period)")
    if counts["burst"] is not None and counts["messages"] is None:
        raise ConfigError(f"{where}: 'burst' needs 'messages' (a rate to burst above)")

    replies = _parse_patterns(where, "throttle_replies", table.get("throttle_replies", []))
    limits = Limits(
        messages=counts["messages"],
        period=period,
        burst=counts["burst"],
        connections=counts["connections"],
        messages_per_connection=counts["messages_per_connection"],
        recipients_per_transaction=counts["recipients_per_transaction"],
    )
    return ThrottleRule(
        name=name,
        domains=domains,
        mx=mx,
        scope=cast(Scope, scope),
        limits=limits,
        throttle_replies=replies,
    )


def _show(value: object) -> str:
    return f"'{value}'" if isinstance(value, str) else repr(value)


def _string_list(where: str, key: str, value: object, example: str) -> list[str]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: {key} must be a list of strings, e.g. {key} = [{example}]")
    return list(value)


def _parse_globs(where: str, key: str, value: object) -> tuple[str, ...]:
    example = '"gmail.com"' if key == "domains" else '"*.google.com"'
    out = []
    for pattern in _string_list(where, key, value, example):
        try:
            out.append(_normalize_glob(pattern))
        except ValueError as exc:
            raise ConfigError(f"{where}: {key} pattern {pattern!r} is invalid: {exc}") from None
    return tuple(out)


def _parse_patterns(where: str, key: str, value: object) -> tuple[str, ...]:
    patterns = _string_list(where, key, value, "'4\\.7\\.1\\b.*too many'")
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(
                f"{where}: {key} pattern {pattern!r} is not a valid regular expression: {exc}"
            ) from None
    return tuple(patterns)


@functools.cache
def _shipped_rules() -> tuple[ThrottleRule, ...]:
    """The rules of ``defaults.toml``, validated like user rules (the catch-all last)."""
    rules = tuple(_parse_rule(t, i) for i, t in enumerate(shipped_data().get("rules", [])))
    if not rules or rules[-1].name != CATCH_ALL:
        raise ConfigError(f"defaults.toml: the last rule must be '{CATCH_ALL}'")
    return rules
