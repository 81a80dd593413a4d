"""The node's configuration: one TOML file plus ``POSTLINE_*`` environment overrides.

Loaded once at start-up, validated, frozen and passed down; no other module reads the
environment. Every key carries a description, from which the configuration reference
in the README is generated (``postline config reference``).

Environment overrides use ``POSTLINE_<SECTION>__<KEY>`` (double underscore between
levels), e.g. ``POSTLINE_API__LISTEN=0.0.0.0:8025`` or ``POSTLINE_DATA_DIR=/var/lib/postline``.
Values are parsed as TOML scalars when they look like one (numbers, booleans, arrays).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from postline.errors import ConfigError
from postline.units import parse_duration, parse_size

__all__ = [
    "ApiConfig",
    "BounceConfig",
    "Config",
    "DeliveryConfig",
    "DnsConfig",
    "Duration",
    "InboundConfig",
    "LogConfig",
    "QueueConfig",
    "RetryConfig",
    "Route",
    "SmtpTimeouts",
    "SqliteConfig",
    "SubmissionConfig",
    "SuppressionConfig",
    "ThrottleConfig",
    "load_config",
    "parse_listen",
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

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value)


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
    timeout: Duration = Field(300.0, description="Idle timeout of a client connection.")

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
        description="'memory' (limits per node) or 'redis://host:port/db' (limits shared "
        "by every node using that Redis).",
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
    defaults: bool = Field(
        True, description="Append the shipped provider rules after the rules below."
    )
    rules: list[dict[str, Any]] = Field(
        default_factory=list,
        description="[[throttle.rules]] tables: name, domains, mx, scope, messages, period, "
        "burst, connections, messages_per_connection, recipients_per_transaction "
        "(docs/throttles.md).",
    )


class QueueConfig(_Section):
    lease_time: Duration = Field(
        300.0, description="How long a node owns leased recipients before others may retry."
    )
    scan_interval: Duration = Field(
        15.0,
        description="How often the whole queue is scanned for due mail nobody announced "
        "(leases of a node that died, retries scheduled by other nodes). Mail this node "
        "queued or deferred itself is woken on time without it.",
    )
    max_lease: int = Field(200, ge=1, description="Most recipients leased in one call.")
    max_scheduled_ahead: Duration = Field(
        30 * 86400.0, description="Furthest send_at accepted in the future."
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
        description="Key of the VERP signatures; empty = a random key kept in data_dir "
        "(one node only: a fleet must share one key).",
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


class LogConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")
    format: Literal["text", "json"] = Field("text", description="Log line format.")


class Config(_Section):
    data_dir: Path = Field(
        Path("data"), description="Where state lives; relative to the config file."
    )
    node_id: str = Field("", description="Name of this node in events and leases; empty = host.")
    store: str = Field(
        "sqlite",
        description="'sqlite' (data_dir/postline.db), 'sqlite:///path', or "
        "'postgresql://user:password@host:port/db' (a fleet of nodes sharing one queue).",
    )
    api: ApiConfig = Field(default_factory=ApiConfig)  # type: ignore[arg-type]
    submission: SubmissionConfig = Field(default_factory=SubmissionConfig)  # type: ignore[arg-type]
    dns: DnsConfig = Field(default_factory=DnsConfig)  # type: ignore[arg-type]
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig)  # type: ignore[arg-type]
    retry: RetryConfig = Field(default_factory=RetryConfig)  # type: ignore[arg-type]
    throttle: ThrottleConfig = Field(default_factory=ThrottleConfig)  # type: ignore[arg-type]
    queue: QueueConfig = Field(default_factory=QueueConfig)  # type: ignore[arg-type]
    sqlite: SqliteConfig = Field(default_factory=SqliteConfig)  # type: ignore[arg-type]
    bounce: BounceConfig = Field(default_factory=BounceConfig)  # type: ignore[arg-type]
    inbound: InboundConfig = Field(default_factory=InboundConfig)  # type: ignore[arg-type]
    suppression: SuppressionConfig = Field(default_factory=SuppressionConfig)  # type: ignore[arg-type]
    log: LogConfig = Field(default_factory=LogConfig)  # type: ignore[arg-type]

    @property
    def hostname(self) -> str:
        return self.delivery.helo_hostname or socket.getfqdn()

    @property
    def node_name(self) -> str:
        return self.node_id or socket.gethostname()

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


def _apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, raw in environ.items():
        if not name.startswith("POSTLINE_") or name in ("POSTLINE_CONFIG",):
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
