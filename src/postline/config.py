"""The node's configuration: one TOML file plus ``POSTLINE_*`` environment overrides.

Loaded once at start-up, validated, frozen and passed down; no other module reads the
environment. Every key carries a description, from which the configuration reference
in the README is generated (``postline config reference``).

Environment overrides use ``POSTLINE_<SECTION>__<KEY>`` (double underscore between
levels), e.g. ``POSTLINE_API__LISTEN=0.0.0.0:8025`` or ``POSTLINE_DATA_DIR=/var/lib/postline``.
Values are parsed as TOML scalars when they look like one (numbers, booleans, arrays).
``POSTLINE_CONFIG``, ``POSTLINE_URL`` and ``POSTLINE_ADMIN_TOKEN`` are the command line's
own (the configuration file, and the node and token of the admin commands), not overrides.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from postline.errors import ConfigError
from postline.hostlist import host_port, split_hosts
from postline.redisurl import redis_url
from postline.units import parse_duration, parse_size

__all__ = [
    "DEFAULT_WARMUP",
    "AdminConfig",
    "ApiConfig",
    "BlocksConfig",
    "BounceConfig",
    "CheckConfig",
    "Config",
    "DashboardConfig",
    "DeliveryConfig",
    "DnsConfig",
    "Duration",
    "InboundConfig",
    "LimitsConfig",
    "LogConfig",
    "PoolConfig",
    "PostgresUrl",
    "QueueConfig",
    "ReputationConfig",
    "RetentionConfig",
    "RetryConfig",
    "Route",
    "SmtpTimeouts",
    "SourceConfig",
    "SqliteConfig",
    "SubmissionConfig",
    "SuppressionConfig",
    "ThrottleConfig",
    "WarmupCaps",
    "WarmupConfig",
    "WebhooksConfig",
    "load_config",
    "parse_listen",
    "postgres_url",
]


def _duration(value: Any) -> Any:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return parse_duration(value)
    return value


def _size(value: Any) -> Any:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return parse_size(value)
    return value


Duration = Annotated[float, BeforeValidator(_duration)]
"""Seconds; written as ``"30s"``, ``"5m"``, ``"1h"``, ``"3d"`` or a number."""
Size = Annotated[int, BeforeValidator(_size)]
"""Bytes; written as ``"25MB"``, ``"512KiB"`` or a number."""


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8025"`` / ``"[::1]:8025"`` → (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{value!r} is not host:port; write e.g. '127.0.0.1:8025'")
    host = host.strip("[]")
    if not host:
        raise ValueError(f"{value!r} has no host; write e.g. '127.0.0.1:8025'")
    p = int(port)
    if not 0 <= p <= 65535:
        raise ValueError(f"port {p} out of range 0-65535")
    return host, p


def _check_listen(value: str) -> str:
    parse_listen(value)
    return value


_SESSION_ATTRS = ("any", "primary", "standby", "prefer-standby", "read-write", "read-only")
_DURABLE_COMMIT = ("on", "remote_apply")
_CONNECT_TIMEOUT = 10.0  # seconds per host, when the URL sets no connect_timeout


@dataclass(frozen=True, slots=True)
class PostgresUrl:
    """A ``postgresql://`` store URL, as postline uses it (see :func:`postgres_url`)."""

    hosts: tuple[str, ...]
    """The hosts as written (``host:port``), in order; empty when the URL names none."""
    dsns: tuple[str, ...]
    """One URL per host, tried in order (with the URL's ``target_session_attrs`` each),
    without the parameters postline consumes itself; the URL unsplit when it names at
    most one host or lists its hosts in ``?host=``."""
    connect_timeout: float
    """Seconds one host may take to connect before the next is tried (libpq's
    ``connect_timeout``, per host)."""
    synchronous_commit: str
    """``on`` or ``remote_apply``: what every commit waits for."""
    target_session_attrs: str
    """Which host is taken (libpq's ``target_session_attrs``; ``any`` when not set)."""


def postgres_url(url: str) -> PostgresUrl:
    """Parse a store URL in libpq's syntax, which may name several hosts::

        postgresql://user@h1:5432,h2:5433/db?target_session_attrs=read-write

    Every connection (pool, LISTEN, every reconnect) tries the hosts in order, each for at
    most ``connect_timeout`` seconds (default 10; a host that is down but does not refuse
    must not hold up the next), and takes the first that matches ``target_session_attrs``.
    ``synchronous_commit`` may raise the commit wait to ``remote_apply``; anything weaker
    than ``on`` would break the promise that an acknowledged message is committed.
    Raises ValueError saying what is wrong (never quoting the password)."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in ("postgresql", "postgres"):
        raise ValueError("the store URL must start with postgresql://")
    parts = split_hosts(url)
    specs, path, query = parts.specs, parts.path, parts.query
    for spec in specs:
        host_port(
            spec,
            noun="host",
            empty="the store URL has an empty host; write e.g. 'h1:5432,h2:5432'",
            example_port=5432,
        )
    params = parse_qsl(query, keep_blank_values=True)
    keep: list[tuple[str, str]] = []
    timeout = _CONNECT_TIMEOUT
    commit = "on"
    attrs = "any"
    for key, value in params:
        if key == "connect_timeout":
            try:
                timeout = float(value)
            except ValueError:
                timeout = -1.0
            if not timeout > 0:
                raise ValueError(f"connect_timeout={value!r}: write seconds, e.g. 5") from None
            continue
        if key == "synchronous_commit":
            if value not in _DURABLE_COMMIT:
                raise ValueError(
                    f"synchronous_commit={value!r} may lose acknowledged mail; use "
                    "'on' or 'remote_apply' (or leave it out)"
                )
            commit = value
            continue
        if key == "target_session_attrs":
            if value not in _SESSION_ATTRS:
                raise ValueError(
                    f"target_session_attrs={value!r}: use one of {', '.join(_SESSION_ATTRS)}"
                )
            attrs = value
        keep.append((key, value))
    suffix = f"?{urlencode(keep)}" if keep else ""
    by_query = any(k in ("host", "port") for k, _ in keep)
    if len(specs) > 1 and not by_query:
        user = f"{parts.userinfo}{parts.at}"
        dsns = tuple(f"{scheme}://{user}{spec}{path}{suffix}" for spec in specs)
    else:
        dsns = (f"{scheme}://{parts.netloc}{path}{suffix}",)
    return PostgresUrl(specs, dsns, timeout, commit, attrs)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ApiConfig(_Section):
    enabled: bool = Field(True, description="Serve the HTTP API.")
    listen: str = Field("127.0.0.1:8025", description="host:port of the HTTP API.")
    max_request_size: Size = Field(
        50_000_000, description="Largest request body accepted (bytes or '50MB')."
    )
    max_recipients: int = Field(
        1000, ge=1, description="Most recipients (to+cc+bcc) in one message."
    )
    max_batch: int = Field(1000, ge=1, description="Most messages in one batch request.")
    max_batch_recipients: int = Field(
        10_000, ge=1, description="Most recipients over all messages of one batch request."
    )
    metrics_token: str = Field(
        "",
        description="When set, /metrics needs 'Authorization: Bearer <token>' (it names "
        "the busiest recipient domains of every tenant).",
    )
    idempotency_ttl: Duration = Field(
        86400.0, description="How long Idempotency-Key answers are kept per tenant."
    )
    key_cache_ttl: Duration = Field(
        10.0,
        description="How long a node trusts what it looked up about an API key (HTTP API "
        "and SMTP AUTH): a key revoked on another node or with the CLI works here for at "
        "most this long (on the node that revoked it, not at all).",
    )
    public_url: str = Field(
        "",
        description="Base URL under which receivers reach this API from the internet, e.g. "
        "'https://mail.example.com'; List-Unsubscribe one-click links are <public_url>/u/"
        "<token>. Empty = http://<listen address> (development only: receivers need https).",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        text = value.strip().rstrip("/")
        if not text:
            return ""
        scheme, sep, rest = text.partition("://")
        host = rest.split("/", 1)[0]
        if (
            not sep
            or scheme.lower() not in ("http", "https")
            or not host
            or any(c in text for c in "?#<>\"' ,")
        ):
            raise ValueError(
                f"{value!r} is not a base URL; write e.g. 'https://mail.example.com' "
                "(no query, fragment, spaces or commas)"
            )
        return text


class SubmissionConfig(_Section):
    enabled: bool = Field(True, description="Serve SMTP submission.")
    listen: str = Field("127.0.0.1:2587", description="host:port of SMTP submission.")
    hostname: str = Field(
        "", description="Name in the banner and EHLO reply; empty = the machine's FQDN."
    )
    max_message_size: Size = Field(
        26_214_400, description="SIZE advertised and enforced (bytes or '25MiB')."
    )
    max_recipients: int = Field(1000, ge=1, description="Most RCPT TO per transaction.")
    trusted_networks: list[str] = Field(
        default_factory=list,
        description="CIDRs allowed to relay without AUTH (e.g. ['127.0.0.0/8']). Empty by "
        "default: everyone else must AUTH over TLS.",
    )
    trusted_tenant: str = Field(
        "",
        description="Tenant that owns mail relayed from trusted_networks without AUTH; "
        "required when trusted_networks is not empty.",
    )
    tls_cert: str = Field(
        "", description="PEM certificate for STARTTLS; empty = self-signed in data_dir."
    )
    tls_key: str = Field("", description="PEM private key for tls_cert.")
    timeout: Duration = Field(
        300.0,
        gt=0,
        description="Idle timeout: longest wait for the next complete command line (bytes "
        "trickled without a line end do not restart it); then '421 4.4.2' and the "
        "connection is closed.",
    )
    command_time_limit: Duration = Field(
        1800.0,
        gt=0,
        description="Longest total time one connection may spend outside DATA (waiting for "
        "and running commands); then '421 4.4.2' and it is closed.",
    )
    data_timeout: Duration = Field(
        600.0,
        gt=0,
        description="Longest time from the 354 reply to the final dot of one message; a "
        "client trickling the data is cut off with '421 4.4.2'.",
    )
    max_connections_per_ip: int = Field(
        20,
        ge=1,
        description="Most concurrent connections from one client address (over all "
        "the node's worker processes); more get "
        "'421 4.7.0 Too many connections from your address'. "
        "trusted_networks are exempt.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Most concurrent connections in all (over all the node's worker "
        "processes); more get "
        "'421 4.3.2'.",
    )
    auth_lockout_failures: int = Field(
        10,
        ge=1,
        description="Failed AUTH of one user name from one client address within "
        "auth_lockout_window after which that user gets '454 4.7.0' from that address "
        "until the oldest failures age out. trusted_networks are never locked out.",
    )
    auth_lockout_address_failures: int = Field(
        100,
        ge=1,
        description="Failed AUTH from one client address, whatever the user names, within "
        "auth_lockout_window after which every AUTH from it gets '454 4.7.0' (guessing "
        "across many user names).",
    )
    auth_lockout_window: Duration = Field(
        600.0, description="How long a failed AUTH counts towards the lockouts."
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value)

    @field_validator("trusted_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for net in value:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as exc:
                raise ValueError(f"{net!r} is not a network; write e.g. '10.0.0.0/8'") from exc
        return value


class DnsConfig(_Section):
    nameservers: list[str] = Field(
        default_factory=list,
        description="Resolvers as 'ip' or 'ip:port'; empty = the system's resolv.conf.",
    )
    timeout: Duration = Field(5.0, description="Timeout of one lookup.")
    min_ttl: Duration = Field(60.0, description="Shortest time an answer is cached.")
    max_ttl: Duration = Field(86400.0, description="Longest time an answer is cached.")
    negative_ttl: Duration = Field(
        300.0, description="How long NXDOMAIN / no-mail answers are cached."
    )
    temp_fail_ttl: Duration = Field(
        30.0, description="How long a failed lookup (SERVFAIL, timeout) is cached."
    )


class SmtpTimeouts(_Section):
    connect: Duration = Field(30.0, description="TCP connect.")
    banner: Duration = Field(60.0, description="Waiting for the 220 greeting.")
    ehlo: Duration = Field(60.0, description="EHLO/HELO reply.")
    starttls: Duration = Field(60.0, description="STARTTLS reply and TLS handshake.")
    mail_from: Duration = Field(60.0, description="MAIL FROM reply.")
    rcpt_to: Duration = Field(60.0, description="RCPT TO reply.")
    data: Duration = Field(60.0, description="DATA (354) reply.")
    data_dot: Duration = Field(120.0, description="Reply after the final dot.")
    rset: Duration = Field(60.0, description="RSET reply.")
    quit: Duration = Field(5.0, description="QUIT reply before the socket is closed.")


class Route(_Section):
    domain: str = Field(description="Recipient domain this route applies to, or '*' for all.")
    host: str = Field(description="Host (name or IP) to deliver to instead of the MX.")
    port: int = Field(25, ge=1, le=65535, description="Port on that host.")

    @field_validator("domain")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower().rstrip(".")


_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_STREAM = r"^(\*|[a-z0-9][a-z0-9_-]{0,31})$"
#: The shipped warm-up plan, used by sources with ``warmup = "default"`` unless a
#: ``[[delivery.warmup]]`` schedule of that name replaces it.
DEFAULT_WARMUP = "default"


class SourceConfig(_Section):
    name: str = Field(
        pattern=_NAME, description="Name of the source in pools, events (data.source), metrics."
    )
    address: str = Field(
        description="Local IP address this source's connections are bound to; it must be "
        "configured on this host."
    )
    ehlo: str = Field(
        "",
        description="Name sent in EHLO from this source (make it the address's PTR name); "
        "empty = delivery.helo_hostname.",
    )
    weight: int = Field(
        1, ge=1, description="Share of a pool's traffic, relative to the pool's other sources."
    )
    warmup: str = Field(
        "",
        description="Warm-up schedule this source follows from warmup_start: a "
        "[[delivery.warmup]] name, or 'default' for the shipped 45-day plan; empty = warmed "
        "(no caps).",
    )
    warmup_start: date | None = Field(
        None, description="Day 1 (UTC) of the warm-up plan, e.g. '2026-11-01'; needs warmup."
    )

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value.strip()))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address; write e.g. '192.0.2.10'") from None

    @model_validator(mode="after")
    def _warmup(self) -> SourceConfig:
        if self.warmup and self.warmup_start is None:
            raise ValueError(
                f"source '{self.name}' has warmup = '{self.warmup}' but no warmup_start; "
                'give the first day of the plan, e.g. warmup_start = "2026-11-01"'
            )
        if self.warmup_start is not None and not self.warmup:
            raise ValueError(
                f"source '{self.name}' has warmup_start but no warmup schedule; set e.g. "
                'warmup = "default"'
            )
        return self


class PoolConfig(_Section):
    name: str = Field(pattern=_NAME, description="Name of the pool, used by delivery.streams.")
    sources: list[str] = Field(
        min_length=1, description="Names of the [[delivery.sources]] this pool sends from."
    )
    tenant: str = Field(
        "",
        description="Tenant (name or id) this pool is dedicated to: that tenant's mail uses "
        "it whatever the stream, and no other tenant's mail does; empty = shared.",
    )


class WarmupCaps(_Section):
    provider: str = Field(
        description="Throttle rule the caps apply to (google, microsoft, yahoo, apple, a rule "
        "of yours; a rule of scope 'site' or 'domain' is capped per MX site or domain), or "
        "'*' for every destination without its own entry."
    )
    day_caps: list[int] = Field(
        min_length=1,
        description="Most recipients per UTC day from the source to one destination of this "
        "provider, for day 1, 2, ... of the plan; the last value holds for the days after.",
    )
    hour_caps: list[int] = Field(
        default_factory=list,
        description="Most recipients per clock hour, by day like day_caps; empty = the "
        "day's cap × the schedule's hourly_share, rounded up.",
    )

    @field_validator("day_caps", "hour_caps")
    @classmethod
    def _positive(cls, value: list[int]) -> list[int]:
        if any(v < 1 for v in value):
            raise ValueError("caps must be whole numbers of at least 1")
        return value


class WarmupConfig(_Section):
    name: str = Field(pattern=_NAME, description="Name of the schedule, used by sources.")
    days: int = Field(
        0,
        ge=0,
        description="Length of the plan in days; after it the source is warmed and "
        "uncapped. 0 = the length of the longest day_caps list.",
    )
    overflow: Literal["warmed", "wait"] = Field(
        "warmed",
        description="Mail beyond a warming source's cap: 'warmed' goes out from the pool's "
        "other sources that have room; 'wait' stays queued until the cap resets (next "
        "hour or day). Never dropped.",
    )
    hourly_share: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Hourly cap as a share of the day's cap where hour_caps are not given "
        "(0.1: a day's volume takes at least 10 hours; 1: no hourly cap).",
    )
    caps: list[WarmupCaps] = Field(
        min_length=1,
        description="[[delivery.warmup.caps]] tables: provider, day_caps, hour_caps.",
    )

    @field_validator("caps")
    @classmethod
    def _distinct(cls, value: list[WarmupCaps]) -> list[WarmupCaps]:
        seen: set[str] = set()
        for caps in value:
            if caps.provider in seen:
                raise ValueError(f"provider '{caps.provider}' has caps twice")
            seen.add(caps.provider)
        return value


class BlocksConfig(_Section):
    suspend_after: int = Field(
        3,
        ge=1,
        description="Block replies (bounce category spam_block: blocklists, IP reputation) "
        "from one destination to one source within suspend_window that stop that source "
        "sending there; its mail moves to the pool's other sources. Only with "
        "[[delivery.sources]].",
    )
    suspend_window: Duration = Field(600.0, description="See suspend_after.")
    suspend_for: Duration = Field(
        3600.0, description="How long a blocked source stays away from that destination."
    )


def _check_egress(d: DeliveryConfig) -> None:
    """Cross-references of sources, pools, streams and warm-up schedules."""
    names: dict[str, str] = {}
    addresses: dict[str, str] = {}
    for src in d.sources:
        if src.name in names:
            raise ValueError(f"source '{src.name}' is defined twice")
        names[src.name] = src.address
        other = addresses.get(src.address)
        if other is not None:
            raise ValueError(
                f"sources '{other}' and '{src.name}' have the same address {src.address}; "
                "define it once and list that source in several pools"
            )
        addresses[src.address] = src.name
    defined: set[str] = set()
    for w in d.warmup:
        if w.name in defined:
            raise ValueError(f"warm-up schedule '{w.name}' is defined twice")
        defined.add(w.name)
    schedules = defined | {DEFAULT_WARMUP}
    for src in d.sources:
        if src.warmup and src.warmup not in schedules:
            known = ", ".join(sorted(schedules))
            raise ValueError(
                f"source '{src.name}' follows unknown warm-up schedule '{src.warmup}'; "
                f"known: {known}"
            )
    if d.pools and not d.sources:
        raise ValueError("[[delivery.pools]] need [[delivery.sources]] to draw from")
    pools: dict[str, PoolConfig] = {}
    for pool in d.pools:
        if pool.name in pools:
            raise ValueError(f"pool '{pool.name}' is defined twice")
        pools[pool.name] = pool
        for name in pool.sources:
            if name not in names:
                known = ", ".join(names) or "none"
                raise ValueError(
                    f"pool '{pool.name}' lists unknown source '{name}'; defined sources: {known}"
                )
        if len(set(pool.sources)) != len(pool.sources):
            raise ValueError(f"pool '{pool.name}' lists a source twice")
    pool_names = set(pools) if d.pools else {"default"}
    streams = {"*": "default", **d.streams}
    for stream, pool_name in streams.items():
        if not re.fullmatch(_STREAM, stream):
            raise ValueError(
                f"stream name {stream!r} is invalid: lower-case letters, digits, '_' and '-' "
                "(up to 32), or '*'"
            )
        if pool_name not in pool_names:
            known = ", ".join(sorted(pool_names))
            if stream == "*" and "*" not in d.streams:
                raise ValueError(
                    "streams without an entry of their own go to pool 'default', which is not "
                    f"defined; name a pool 'default' or set [delivery.streams] '*' (pools: "
                    f"{known})"
                )
            raise ValueError(
                f"stream '{stream}' goes to unknown pool '{pool_name}'; pools: {known}"
            )
        target = pools.get(pool_name)
        if stream == "*" and target is not None and target.tenant:
            raise ValueError(
                f"'*' goes to pool '{pool_name}', which is dedicated to tenant "
                f"'{target.tenant}'; every other tenant's mail needs a shared pool"
            )


class DeliveryConfig(_Section):
    enabled: bool = Field(True, description="Run the delivery engine on this node.")
    smtp_port: int = Field(25, ge=1, le=65535, description="Port used to reach MX hosts.")
    helo_hostname: str = Field("", description="Name sent in EHLO; empty = the machine's FQDN.")
    source_address: str = Field("", description="Local IP to send from; empty = any.")
    tls: Literal["opportunistic", "required", "disabled"] = Field(
        "opportunistic", description="STARTTLS policy towards receivers."
    )
    max_connections: int = Field(
        500, ge=1, description="Most outbound SMTP connections of this node at once."
    )
    idle_timeout: Duration = Field(
        3.0, description="How long an idle outbound connection waits for more mail."
    )
    timeouts: SmtpTimeouts = Field(default_factory=SmtpTimeouts)  # type: ignore[arg-type]
    routes: list[Route] = Field(
        default_factory=list,
        description="Static routes that override MX lookup (smarthost); first match wins.",
    )
    sources: list[SourceConfig] = Field(
        default_factory=list,
        description="[[delivery.sources]]: egress IPs (name, address, ehlo, weight, warmup, "
        "warmup_start); empty = one source from source_address and helo_hostname "
        "(docs/ip-pools.md).",
    )
    pools: list[PoolConfig] = Field(
        default_factory=list,
        description="[[delivery.pools]]: groups of sources (name, sources, tenant); empty = "
        "one pool 'default' holding every source.",
    )
    streams: dict[str, str] = Field(
        default_factory=dict,
        description="[delivery.streams]: stream name = pool name; '*' covers the streams "
        "not listed (default: every stream goes to pool 'default').",
    )
    warmup: list[WarmupConfig] = Field(
        default_factory=list,
        description="[[delivery.warmup]] schedules (name, days, overflow, hourly_share, "
        "caps); 'default' is the shipped 45-day plan unless redefined here.",
    )
    blocks: BlocksConfig = Field(default_factory=BlocksConfig)  # type: ignore[arg-type]

    @model_validator(mode="after")
    def _egress(self) -> DeliveryConfig:
        _check_egress(self)
        return self


class RetryConfig(_Section):
    first: Duration = Field(60.0, description="Delay before the first retry.")
    multiplier: float = Field(2.0, ge=1.0, description="Growth of the delay per attempt.")
    max_interval: Duration = Field(3600.0, description="Longest delay between attempts.")
    max_age: Duration = Field(
        259200.0, description="A recipient still undelivered after this long expires."
    )
    jitter: Literal["full", "none"] = Field(
        "full",
        description="'full': each delay is uniform between 'first' and the exponential "
        "backoff; 'none': exactly the backoff.",
    )


class ThrottleConfig(_Section):
    backend: str = Field(
        "memory",
        description="'memory' (limits per node), or limits shared by every node using one "
        "Redis: 'redis://host:port/db' (also rediss://, unix://), or "
        "'redis+sentinel://[user:password@]host:26379,host:26379/<service>[/db]' for a "
        "master that Redis Sentinel fails over (docs/scaling.md). Redis Cluster is not "
        "supported.",
    )
    decrease: float = Field(
        0.5, gt=0, lt=1, description="On a throttling reply the rate is multiplied by this."
    )
    recover_step: float = Field(
        0.1, gt=0, le=1, description="Share of the configured rate regained per recover_interval."
    )
    recover_interval: Duration = Field(60.0, description="See recover_step.")
    suspend_after: int = Field(
        3, ge=1, description="Throttling episodes within suspend_window that suspend a destination."
    )
    suspend_window: Duration = Field(60.0, description="See suspend_after.")
    suspend_for: Duration = Field(300.0, description="How long a suspension lasts.")
    connection_lease: Duration = Field(
        60.0,
        description="Lifetime of a connection slot, renewed while the connection lives; the "
        "slots of a node that died free themselves after this long.",
    )
    quarantine: bool = Field(
        True,
        description="Redis backend: after the Redis server changed or lost its state "
        "(restart, failover), grant no new connection slot of a limited destination for "
        "one connection_lease while nodes re-register the slots they hold, so that no "
        "destination sees more connections than its limit (docs/scaling.md). Every node "
        "must use the same connection_lease and quarantine.",
    )
    defaults: bool = Field(
        True, description="Append the shipped provider rules after the rules below."
    )
    rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description="[[throttle.rules]] tables: name, domains, mx, scope, messages, period, "
        "burst, connections, messages_per_connection, recipients_per_transaction "
        "(docs/throttles.md).",
    )

    @field_validator("backend")
    @classmethod
    def _backend(cls, value: str) -> str:
        if value == "memory":
            return value
        if "://" not in value:
            raise ValueError(
                f"{value!r}: use 'memory' or a Redis URL (redis://host:port/db, "
                "redis+sentinel://host:26379,host:26379/<service>)"
            )
        redis_url(value)
        return value


class QueueConfig(_Section):
    lease_time: Duration = Field(
        300.0, description="How long a node owns leased recipients before others may retry."
    )
    scan_interval: Duration = Field(
        15.0,
        description="How often the whole queue is scanned for due mail nobody announced "
        "(leases of a node that died, retries scheduled by other nodes), and the operators' "
        "reroutes and queue holds are read again: other nodes follow an admin action within it. "
        "Mail this node queued or deferred itself is woken on time without it.",
    )
    max_lease: int = Field(200, ge=1, description="Most recipients leased in one call.")
    max_leased: int = Field(
        20_000,
        ge=100,
        description="Most recipients this node holds at once (leased: buffered, on the wire "
        "or waiting for their outcome to be written). Bounds the node's memory and what a "
        "crash hands back; the sites' buffers (a few seconds of sending each) usually "
        "hold far less.",
    )
    max_scheduled_ahead: Duration = Field(
        30 * 86400.0, description="Furthest send_at accepted in the future."
    )


class NodeConfig(_Section):
    workers: int = Field(
        0,
        ge=0,
        le=256,
        description="Worker processes of this node, sharing its listening sockets and "
        "splitting delivery by recipient domain; 0 = one per CPU. Limits ([throttle] rules, "
        "[delivery] max_connections, [queue] max_leased) hold for the whole node.",
    )
    shutdown_timeout: Duration = Field(
        30.0,
        description="On SIGTERM: how long transactions on the wire may take to finish; then "
        "every outcome is written and every unsent lease handed back, and the node exits.",
    )
    ready_ack_budget: Duration = Field(
        5.0,
        description="/readyz answers 503 while accepting a message (the fsync'd write behind "
        "a 2xx or 250) takes longer than this.",
    )


class SqliteConfig(_Section):
    synchronous: Literal["full", "normal"] = Field(
        "full",
        description="'full' fsyncs every commit (the durability promise); 'normal' may lose "
        "the last commits on power loss.",
    )
    max_batch: int = Field(
        512, ge=1, description="Most operations sharing one transaction (group commit)."
    )


class BounceConfig(_Section):
    domain: str = Field(
        "",
        description="Domain of the signed VERP return path b-<token>@<domain> put on every "
        "outbound message (its MX must reach [inbound]); empty = no VERP: the envelope "
        "sender is the message's own.",
    )
    secret: str = Field(
        "",
        description="Key of the VERP and List-Unsubscribe signatures; empty = a random key "
        "kept in data_dir (one node only: a fleet must share one key).",
    )
    previous_secrets: list[str] = Field(
        default_factory=list, description="Older keys still accepted (key rotation)."
    )
    fbl_address: str = Field(
        "",
        description="Address that takes feedback-loop (ARF) complaints; empty = fbl@<domain>.",
    )
    notify_senders: bool = Field(
        True,
        description="Send an RFC 3464 DSN to the envelope sender of mail that came in over "
        "SMTP submission when it bounces or expires.",
    )
    notify_senders_except: list[str] = Field(
        default_factory=list,
        description="Tenants (names or ids) whose SMTP senders get no DSNs although "
        "notify_senders is on (e.g. an application that reads events instead).",
    )
    notify_senders_only: list[str] = Field(
        default_factory=list,
        description="When not empty: the only tenants (names or ids) whose SMTP senders get DSNs.",
    )

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return value.strip().lower().rstrip(".")


class InboundConfig(_Section):
    enabled: bool = Field(True, description="Run the inbound server (bounces, complaints).")
    listen: str = Field(
        "127.0.0.1:2525", description="host:port of the inbound server (port 25 in production)."
    )
    max_message_size: Size = Field(10_000_000, description="Largest report accepted.")
    timeout: Duration = Field(
        300.0,
        gt=0,
        description="Idle timeout: longest wait for the next complete command line; then "
        "'421 4.4.2' and the connection is closed.",
    )
    command_time_limit: Duration = Field(
        1800.0,
        gt=0,
        description="Longest total time one connection may spend outside DATA.",
    )
    data_timeout: Duration = Field(
        600.0, gt=0, description="Longest time from the 354 reply to the final dot of one report."
    )
    max_connections_per_ip: int = Field(
        50,
        ge=1,
        description="Most concurrent connections from one client address (over all "
        "the node's worker processes); more get "
        "'421 4.7.0 Too many connections from your address'.",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="Most concurrent connections in all (over all the node's worker "
        "processes); more get "
        "'421 4.3.2'.",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value)


class SuppressionConfig(_Section):
    soft_bounce_limit: int = Field(
        5, ge=1, description="Soft bounces in a row (within soft_bounce_window) that suppress."
    )
    soft_bounce_window: Duration = Field(
        7 * 86400.0, description="How long a run of soft bounces may take."
    )
    soft_bounce_ttl: Duration = Field(
        30 * 86400.0, description="How long a soft-bounce suppression lasts (0 = forever)."
    )
    hard_bounce_ttl: Duration = Field(
        0.0, description="How long a hard-bounce suppression lasts (0 = forever)."
    )


class DomainsConfig(_Section):
    require_verified: bool = Field(
        False,
        description="Refuse mail whose From domain is not a verified sender domain of the "
        "tenant (POST /v1/domains). Turn on in production; off lets development send "
        "from any domain (unsigned unless it is a verified sender domain of the tenant: a "
        "key alone does not sign until its DNS record is verified).",
    )
    dkim_algorithm: Literal["rsa-2048", "rsa-3072", "rsa-4096", "ed25519"] = Field(
        "rsa-2048", description="Key type of new DKIM keys (a request may ask for another)."
    )
    key_secret: str = Field(
        "",
        description="Secret that encrypts DKIM private keys at rest; empty = a random key "
        "kept in data_dir (one node only: a fleet must share one secret).",
    )
    spf: str = Field(
        "",
        description="SPF mechanism senders must include, e.g. 'include:_spf.mail.example'; "
        "empty = 'ip4:'/'ip6:' of [[delivery.sources]] (or [delivery] source_address, or "
        "a:<hostname> when the host name is a public one; else no SPF record is suggested "
        "and the domain's notes say why).",
    )
    dmarc_rua: str = Field("", description="Aggregate-report address put in the DMARC suggestion.")
    recheck_interval: Duration = Field(
        6 * 3600.0, description="How often verified domains are checked again."
    )
    list_unsubscribe_streams: list[str] = Field(
        default_factory=lambda: ["marketing"],
        description="Streams whose mail gets RFC 8058 one-click List-Unsubscribe headers "
        "naming each recipient (sent one recipient per transaction); a message with a "
        "List-Unsubscribe of its own keeps it instead.",
    )


def _rate(value: Any) -> Any:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage; write e.g. '5%' or 0.05") from None
    return value


Rate = Annotated[float, BeforeValidator(_rate), Field(ge=0.0, le=1.0)]
"""A share; written as ``0.05`` or ``"5%"``."""


class ReputationConfig(_Section):
    enabled: bool = Field(
        True,
        description="Count each tenant's delivered, hard-bounced and complained recipients "
        "and judge its rates against the thresholds below. Off: nothing is counted or "
        "judged; pauses made by an operator still apply.",
    )
    window: Duration = Field(
        86400.0,
        description="Rolling window of the rates, counted in buckets of window/48 (at "
        "least 1 minute).",
    )
    min_volume: int = Field(
        500,
        ge=1,
        description="Least delivered + hard-bounced recipients in the window before a "
        "tenant is judged at all.",
    )
    bounce_warn: Rate = Field(
        0.05,
        description="Hard bounces / (delivered + hard bounces) at or above which a tenant "
        "is warned ('5%' or 0.05; 0 = never).",
    )
    bounce_pause: Rate = Field(
        0.10,
        description="Hard-bounce rate at or above which a tenant is paused: new mail is "
        "refused and queued mail held until an operator resumes it (0 = never).",
    )
    complaint_warn: Rate = Field(
        0.001,
        description="Complaints / delivered at or above which a tenant is warned (0 = never).",
    )
    complaint_pause: Rate = Field(
        0.005,
        description="Complaint rate at or above which a tenant is paused (0 = never).",
    )
    evaluate_interval: Duration = Field(
        15.0,
        description="How often each node judges the rates (a status change is written "
        "once, by whichever node is first).",
    )
    flush_interval: Duration = Field(
        5.0, description="How often a node adds the outcomes it counted to the store."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ReputationConfig:
        for kind in ("bounce", "complaint"):
            warn, pause = getattr(self, f"{kind}_warn"), getattr(self, f"{kind}_pause")
            if warn and pause and warn > pause:
                raise ValueError(
                    f"{kind}_warn ({warn:g}) is above {kind}_pause ({pause:g}); a tenant "
                    "must be warned before it is paused"
                )
        if self.window < 60.0:
            raise ValueError("window must be at least 1 minute")
        return self


class CheckConfig(_Section):
    spamd: str = Field(
        "",
        description="host:port of a SpamAssassin spamd that POST /v1/messages/check and "
        "'postline check' ask for a spam score (SPAMC protocol); empty = no spam score.",
    )
    spamd_timeout: Duration = Field(
        10.0, gt=0, description="Longest wait for spamd's answer, connecting included."
    )

    @field_validator("spamd")
    @classmethod
    def _spamd(cls, value: str) -> str:
        value = value.strip()
        if value and parse_listen(value)[1] == 0:
            raise ValueError(f"{value!r} has port 0; give spamd's port, e.g. '127.0.0.1:783'")
        return value


class LimitsConfig(_Section):
    rate: int = Field(
        0,
        ge=0,
        description="Recipients per second each tenant may submit (HTTP and SMTP; a message "
        "to N recipients counts N), held across a fleet by the [throttle] backend; 0 = "
        "unlimited. A tenant's own limit (admin API) replaces it.",
    )
    burst: int = Field(
        0,
        ge=0,
        description="Recipients an idle tenant may submit at once before 'rate' applies; "
        "0 = as many as 'rate'.",
    )
    daily: int = Field(
        0,
        ge=0,
        description="Recipients each tenant may have accepted per UTC calendar day, counted "
        "durably in the store; 0 = unlimited. A tenant's own quota replaces it.",
    )
    monthly: int = Field(
        0,
        ge=0,
        description="Recipients each tenant may have accepted per UTC calendar month; "
        "0 = unlimited.",
    )
    key_rate: int = Field(
        0,
        ge=0,
        description="Recipients per second each API key may submit, on top of its tenant's "
        "rate; 0 = no limit of its own. A key's own limit (admin API) replaces it.",
    )
    key_burst: int = Field(0, ge=0, description="The burst of key_rate; 0 = as many as key_rate.")


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="Log line format.")


_TOKEN_HASH = re.compile(r"sha256:[0-9a-f]{64}")


class AdminConfig(_Section):
    tokens: list[str] = Field(
        [],
        description="Admin API tokens given by their hash only, as 'sha256:<64 hex digits>' "
        '(e.g. `printf %s "$TOKEN" | sha256sum`), so the file holds no secret; beside the '
        "tokens made by 'postline admin token create'.",
    )

    @field_validator("tokens")
    @classmethod
    def _tokens(cls, value: list[str]) -> list[str]:
        out = []
        for item in value:
            text = item.strip().lower()
            if not _TOKEN_HASH.fullmatch(text):
                raise ValueError(
                    f"{item[:8]!r}… is not 'sha256:<64 hex digits>': put the SHA-256 of a "
                    "token here, never the token itself"
                )
            out.append(text)
        return out


class DashboardConfig(_Section):
    enabled: bool = Field(
        True,
        description="Serve the operator dashboard at /ui on the API's address (sign-in with "
        "an admin token; see docs/dashboard.md).",
    )
    session_ttl: Duration = Field(
        8 * 3600.0,
        ge=1.0,
        le=7 * 86400.0,
        description="How long a dashboard sign-in lasts; the operator signs in again after it "
        "(revoking the admin token ends its sessions at once).",
    )
    chart_window: Duration = Field(
        3 * 3600.0,
        ge=600.0,
        description="How far back the overview's per-minute charts reach.",
    )
    history: Duration = Field(
        86400.0,
        ge=3600.0,
        description="How long the per-minute traffic counts behind the charts are kept.",
    )
    search_scan: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description="Message search by recipient or tag looks at this many of the latest "
        "messages (a bounded walk of the creation-time index, never a full scan).",
    )

    @model_validator(mode="after")
    def _window(self) -> DashboardConfig:
        if self.chart_window > self.history:
            raise ValueError("dashboard.chart_window must be at most dashboard.history")
        return self


class RetentionConfig(_Section):
    enabled: bool = Field(True, description="Run the cleaner on this node.")
    bodies: Duration = Field(
        7 * 86400.0,
        description="Message bodies are deleted this long after the message's last recipient "
        "became final (delivered, bounced, expired, cancelled, suppressed); the message's "
        "recipients and attempts stay until 'messages'.",
    )
    messages: Duration = Field(
        30 * 86400.0,
        description="Messages and their recipients are deleted this long after the last "
        "recipient became final; GET /v1/messages/{id} then answers 404 'expired'.",
    )
    events: Duration = Field(
        30 * 86400.0,
        description="Events (and webhook delivery logs) are deleted this long after they "
        "were recorded.",
    )
    inbound: Duration = Field(
        30 * 86400.0, description="Processed inbound reports are deleted after this long."
    )
    interval: Duration = Field(
        10.0, description="Pause between two cleaning rounds when nothing was left to delete."
    )
    event_partition: Duration = Field(
        86400.0,
        ge=60.0,
        description="PostgreSQL: the time one partition of the event log covers; events go "
        "a whole partition at a time, so they are kept up to this much longer than 'events'.",
    )
    batch: int = Field(
        1000,
        ge=10,
        le=100_000,
        description="Most rows one cleaning transaction deletes (short transactions: "
        "ingest and delivery never wait long behind the cleaner).",
    )

    @model_validator(mode="after")
    def _order(self) -> RetentionConfig:
        if self.messages < self.bodies:
            raise ValueError("retention.messages must be at least retention.bodies")
        return self


class WebhooksConfig(_Section):
    enabled: bool = Field(
        True, description="Send the events of tenants' webhook endpoints from this node."
    )
    timeout: Duration = Field(
        10.0, description="How long one POST to an endpoint may take before it is retried."
    )
    max_age: Duration = Field(
        3 * 86400.0,
        description="How long a batch is retried (exponential backoff with full jitter, "
        "retry_base doubling, at most retry_max apart); then it is dead: kept, listed and "
        "replayable, and the endpoint goes on with later events.",
    )
    retry_base: Duration = Field(
        5.0, description="First retry delay bound; it doubles per attempt (full jitter)."
    )
    retry_max: Duration = Field(3600.0, description="Longest delay between two tries.")
    allow_http: bool = Field(
        False, description="Accept http:// endpoint URLs (only https:// otherwise)."
    )
    allow_networks: list[str] = Field(
        default_factory=list,
        description="Networks (CIDR) endpoints may resolve to besides public addresses: "
        "private, loopback, link-local and metadata ranges are refused otherwise.",
    )
    poll_interval: Duration = Field(
        0.5, description="How often an endpoint this node serves is checked for new events."
    )
    lease_time: Duration = Field(
        60.0,
        description="How long a node serves an endpoint before renewing; another node takes "
        "it over this long after the node dies.",
    )
    max_endpoints: int = Field(1000, ge=1, description="Most endpoints one node serves at once.")

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a network (e.g. 10.0.0.0/8)") from None
        return value


class Config(_Section):
    data_dir: Path = Field(
        Path("data"), description="Where state lives; relative to the config file."
    )
    node_id: str = Field("", description="Name of this node in events and leases; empty = host.")
    store: str = Field(
        "sqlite",
        description="'sqlite' (data_dir/postline.db), 'sqlite:///path', or "
        "'postgresql://user:password@host:port/db' (a fleet of nodes sharing one queue). "
        "A PostgreSQL URL may name several hosts, tried in order on every (re)connect: "
        "'postgresql://user@h1:5432,h2:5432/db?target_session_attrs=read-write' follows a "
        "failover to the new primary; connect_timeout=N (seconds per host, default 10) and "
        "synchronous_commit=remote_apply are read too (docs/scaling.md).",
    )
    api: ApiConfig = Field(default_factory=ApiConfig)  # type: ignore[arg-type]
    submission: SubmissionConfig = Field(default_factory=SubmissionConfig)  # type: ignore[arg-type]
    dns: DnsConfig = Field(default_factory=DnsConfig)  # type: ignore[arg-type]
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)  # type: ignore[arg-type]
    retry: RetryConfig = Field(default_factory=RetryConfig)  # type: ignore[arg-type]
    throttle: ThrottleConfig = Field(default_factory=ThrottleConfig)  # type: ignore[arg-type]
    node: NodeConfig = Field(default_factory=NodeConfig)  # type: ignore[arg-type]
    queue: QueueConfig = Field(default_factory=QueueConfig)  # type: ignore[arg-type]
    sqlite: SqliteConfig = Field(default_factory=SqliteConfig)  # type: ignore[arg-type]
    bounce: BounceConfig = Field(default_factory=BounceConfig)  # type: ignore[arg-type]
    inbound: InboundConfig = Field(default_factory=InboundConfig)  # type: ignore[arg-type]
    suppression: SuppressionConfig = Field(default_factory=SuppressionConfig)  # type: ignore[arg-type]
    reputation: ReputationConfig = Field(default_factory=ReputationConfig)  # type: ignore[arg-type]
    domains: DomainsConfig = Field(default_factory=DomainsConfig)  # type: ignore[arg-type]
    check: CheckConfig = Field(default_factory=CheckConfig)  # type: ignore[arg-type]
    log: LogConfig = Field(default_factory=LogConfig)  # type: ignore[arg-type]
    webhooks: WebhooksConfig = Field(default_factory=WebhooksConfig)  # type: ignore[arg-type]
    retention: RetentionConfig = Field(default_factory=RetentionConfig)  # type: ignore[arg-type]
    admin: AdminConfig = Field(default_factory=AdminConfig)  # type: ignore[arg-type]
    dashboard: DashboardConfig = Field(default_factory=DashboardConfig)  # type: ignore[arg-type]
    limits: LimitsConfig = Field(default_factory=LimitsConfig)  # type: ignore[arg-type]

    @property
    def hostname(self) -> str:
        return self.delivery.helo_hostname or socket.getfqdn()

    @property
    def node_name(self) -> str:
        return self.node_id or socket.gethostname()

    @property
    def worker_count(self) -> int:
        """``[node] workers``, with 0 read as the number of CPUs this process may use."""
        if self.node.workers:
            return self.node.workers
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        if value.startswith(("postgresql://", "postgres://")):
            postgres_url(value)
        return value

    @property
    def sqlite_path(self) -> Path:
        if self.store == "sqlite":
            return self.data_dir / "postline.db"
        if self.store.startswith("sqlite:///"):
            return Path(self.store.removeprefix("sqlite://"))
        raise ConfigError(f"store {self.store!r} is not a SQLite store")


def _env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


_NOT_OVERRIDES = frozenset({"POSTLINE_CONFIG", "POSTLINE_URL", "POSTLINE_ADMIN_TOKEN"})
"""Variables of the command line, not configuration overrides."""


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith("POSTLINE_") or name in _NOT_OVERRIDES:
            continue
        path = name.removeprefix("POSTLINE_").lower().split("__")
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment {name}: {part!r} is not a section")
            node = child
        node[path[-1]] = _env_value(raw)


def _format_errors(exc: PydanticValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling against the configuration reference"
        lines.append(f"  {loc}: {msg}")
    return "\n".join(lines)


def load_config(
    path: str | Path | None = None,
    *,
    text: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read, override from the environment, validate and freeze the configuration.

    ``path`` names a TOML file; ``text`` gives TOML directly (relative paths are then taken
    from the current directory). Raises :class:`ConfigError` with every problem listed.
    """
    base = Path.cwd()
    source = "<text>"
    data: dict[str, Any] = {}
    try:
        if path is not None:
            p = Path(path)
            source = str(p)
            base = p.resolve().parent
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        elif text is not None:
            data = tomllib.loads(text)
    except FileNotFoundError as exc:
        raise ConfigError(f"configuration file {source} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source} is not valid TOML: {exc}") from exc
    _apply_env(data, os.environ if environ is None else environ)
    try:
        config = Config.model_validate(data)
    except PydanticValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from exc
    if not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (base / config.data_dir).resolve()})
    if config.submission.trusted_networks and not config.submission.trusted_tenant:
        raise ConfigError(
            f"invalid configuration in {source}:\n  submission.trusted_tenant: required when "
            "submission.trusted_networks is set; name the tenant that owns relayed mail"
        )
    return config
