"""The simulator's configuration: domains, ports, delays, and the throttle hints for the node.

:meth:`SimConfig.standard` is the realistic mix the demo uses; :meth:`SimConfig.from_toml`
reads a file like this one (every key optional except the domains' ``name``)::

    seed = 1
    dns_port = 0                 # 0: any free port
    smtp_port = 0                # one port, the same on every MX host address
    first_address = "127.0.0.2"  # MX host addresses count up from here (127.0.0.1 is the node's)
    greylist_delay = 1.0         # seconds, for greylist...@ recipients
    slow_delay = 2.0             # seconds, for slow...@ recipients
    rate_window = 1.0            # window of the report's peak rates
    idle_timeout = 300.0         # an idle client connection is closed after this long
    ttl = 300                    # TTL of every DNS record
    feedback_to = "127.0.0.1:2525"   # where late bounces, complaints and auto-replies go
    fbl_address = "fbl@bounces.shop.example"  # complaints go here (default: the sender)
    feedback_tries = 4           # attempts per feedback message (4xx, refused, timeout)
    feedback_retry_delay = 1.0   # seconds before the 2nd attempt, doubling after

    [profiles.big]               # named profiles, referenced by name from domains
    throttle_style = "google"
    rate = 200
    rate_period = 1.0
    max_connections = 30
    late_bounce_rate = 0.02      # feedback shares of accepted recipients (default 0)
    complaint_rate = 0.001
    auto_reply_rate = 0.01

    [[domains]]
    name = "gmail.test"
    provider = "google"          # domains of one provider share per-client counters
    profile = "big"              # a [profiles.X] name or an inline table
    mx = ["gmail-smtp-in.l.google.test",
          { host = "alt1.gmail-smtp-in.l.google.test", preference = 20 }]

    [[domains]]
    name = "deadprimary.test"
    mx = [{ host = "mx1.deadprimary.test", dead = true }, "mx2.deadprimary.test"]

    [[domains]]
    name = "nullmx.test"
    kind = "null_mx"             # mx | implicit | null_mx | nxdomain | servfail | blackhole

    [[hints]]                    # returned as they are by throttle_hints()
    name = "google"
    mx = ["*.google.test"]
    messages = 140
    period = "1s"
    connections = 20

MX entries given as plain strings get preferences 10, 20, 30... in their order.
The feedback knobs of profiles are described in :mod:`postline.sim.profiles`.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from postline.errors import ConfigError
from postline.sim.dns import Zone
from postline.sim.profiles import DomainSpec, MXHostSpec, Profile
from postline.sim.standard import standard_domains, standard_hints

__all__ = [
    "HostPlan",
    "SimConfig",
    "add_to_zone",
    "check_address",
    "check_loopback",
    "parse_target",
    "plan_hosts",
]

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
_NODE_ADDRESS = ipaddress.ip_address("127.0.0.1")
_HINT_KEYS = frozenset(
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
    }
)


def check_loopback(host: str, what: str = "address") -> str:
    """Return ``host`` as an IPv4 address text if it lies in 127.0.0.0/8, else raise.

    ``localhost`` means 127.0.0.1. The simulator never binds anything else.
    """
    text = "127.0.0.1" if host == "localhost" else host
    try:
        address = ipaddress.ip_address(text)
    except ValueError as exc:
        raise ConfigError(f"{what} {host!r} is not an IP address in 127.0.0.0/8") from exc
    if address not in _LOOPBACK:
        raise ConfigError(
            f"{what} {host!r} is outside 127.0.0.0/8; the simulator binds loopback only"
        )
    return str(address)


def check_address(address: object, what: str = "address") -> str:
    """Return ``address`` if it reads as ``local@domain`` (no spaces or brackets)."""
    if (
        not isinstance(address, str)
        or not 3 <= len(address) <= 320
        or address.count("@") != 1
        or address.startswith("@")
        or address.endswith("@")
        or any(c.isspace() or c in "<>,;" for c in address)
    ):
        raise ConfigError(f"{what} must be an address like fbl@domain, got {address!r}")
    return address


def parse_target(text: str, what: str = "feedback_to") -> tuple[str, int]:
    """``"HOST:PORT"`` as ``(IPv4 address, port)``; the host must lie in 127.0.0.0/8."""
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be a string HOST:PORT")
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"{what} must be HOST:PORT with a port 1..65535, got {text!r}")
    return check_loopback(host or "127.0.0.1", what), int(port)


@dataclass(frozen=True, slots=True)
class HostPlan:
    """One simulated mail exchanger: its address, provider, profile and the domains it
    serves."""

    name: str
    address: str
    provider: str
    profile: Profile
    domains: tuple[str, ...]


def _port(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise ConfigError(f"{what} must be a port number 0..65535 (0: any free port)")
    return value


def _seconds(value: object, what: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError(f"{what} must be a number of seconds")
    if positive and value <= 0:
        raise ConfigError(f"{what} must be more than 0 seconds")
    return float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimConfig:
    """Everything a :class:`~postline.sim.runner.Simulator` runs; see the module docstring."""

    domains: tuple[DomainSpec, ...] = ()
    seed: int = 1
    dns_host: str = "127.0.0.1"
    dns_port: int = 0
    smtp_port: int = 0
    first_address: str = "127.0.0.2"
    greylist_delay: float = 1.0
    slow_delay: float = 2.0
    rate_window: float = 1.0
    idle_timeout: float = 300.0
    ttl: int = 300
    hints: tuple[Mapping[str, Any], ...] = field(default=())
    feedback_to: str | None = None
    fbl_address: str | None = None
    feedback_tries: int = 4
    feedback_retry_delay: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "domains", tuple(self.domains))
        object.__setattr__(self, "hints", tuple(dict(h) for h in self.hints))
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError("seed must be a whole number")
        object.__setattr__(self, "dns_host", check_loopback(self.dns_host, "dns_host"))
        first = check_loopback(self.first_address, "first_address")
        if ipaddress.ip_address(first) == _NODE_ADDRESS:
            raise ConfigError("first_address must not be 127.0.0.1; it is left to the node")
        object.__setattr__(self, "first_address", first)
        _port(self.dns_port, "dns_port")
        _port(self.smtp_port, "smtp_port")
        for key in ("greylist_delay", "slow_delay"):
            object.__setattr__(self, key, _seconds(getattr(self, key), key))
        for key in ("rate_window", "idle_timeout"):
            object.__setattr__(self, key, _seconds(getattr(self, key), key, positive=True))
        if not isinstance(self.ttl, int) or isinstance(self.ttl, bool) or self.ttl < 0:
            raise ConfigError("ttl must be a whole number of seconds >= 0")
        if self.feedback_to is not None:
            host, port = parse_target(self.feedback_to)
            object.__setattr__(self, "feedback_to", f"{host}:{port}")
        if self.fbl_address is not None:
            check_address(self.fbl_address, "fbl_address")
        tries = self.feedback_tries
        if not isinstance(tries, int) or isinstance(tries, bool) or not 1 <= tries <= 100:
            raise ConfigError("feedback_tries must be a whole number 1..100")
        object.__setattr__(
            self,
            "feedback_retry_delay",
            _seconds(self.feedback_retry_delay, "feedback_retry_delay"),
        )
        names = [d.name for d in self.domains]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"domain(s) listed twice: {', '.join(dupes)}")
        for hint in self.hints:
            unknown = sorted(set(hint) - _HINT_KEYS)
            if unknown or "name" not in hint:
                raise ConfigError(
                    f"throttle hint {hint.get('name')!r}: needs a name; unknown key(s) "
                    f"{', '.join(unknown) or 'none'}"
                )
        plan_hosts(self.domains, self.first_address)  # validates host sharing

    # -- derived -------------------------------------------------------------------------

    def hosts(self) -> list[HostPlan]:
        """Every simulated mail exchanger with its address (see :func:`plan_hosts`)."""
        return plan_hosts(self.domains, self.first_address)

    def domain(self, name: str) -> DomainSpec:
        """The domain named ``name``; KeyError when there is none."""
        for spec in self.domains:
            if spec.name == name.lower().rstrip("."):
                return spec
        raise KeyError(name)

    def zone(self) -> Zone:
        """The DNS zone of these domains (a new, mutable object)."""
        zone = Zone(ttl=self.ttl)
        add_to_zone(zone, self.domains, {h.name: h.address for h in self.hosts()})
        return zone

    def throttle_hints(self) -> list[dict[str, Any]]:
        """The node's ``[[throttle.rules]]`` tables meant for these domains (copies).

        For most providers the hint is a bit below the simulated limit, so a node that
        follows it is never throttled; where a hint is above the simulated limit the node
        meets throttling replies and must slow down by itself.
        """
        return [
            {k: list(v) if isinstance(v, list | tuple) else v for k, v in h.items()}
            for h in self.hints
        ]

    def with_domains(self, domains: Iterable[DomainSpec]) -> SimConfig:
        """A copy with ``domains`` added after the existing ones."""
        return replace(self, domains=(*self.domains, *domains))

    # -- loading -------------------------------------------------------------------------

    @classmethod
    def from_toml(cls, text: str) -> SimConfig:
        """Read a configuration written as in the module docstring."""
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"simulator configuration is not valid TOML: {exc}") from exc
        return cls.from_mapping(data)

    @classmethod
    def load(cls, path: str | Path) -> SimConfig:
        """Read the configuration file at ``path``."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read simulator configuration {path}: {exc}") from exc
        return cls.from_toml(text)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> SimConfig:
        """Build from a parsed TOML document; unknown keys are a ConfigError."""
        data = dict(data)
        profiles_raw = data.pop("profiles", {})
        if not isinstance(profiles_raw, Mapping):
            raise ConfigError("[profiles] must be a table of tables")
        profiles = {
            name: Profile.from_mapping(_table(body, f"profiles.{name}"), name)
            for name, body in profiles_raw.items()
        }
        domains = tuple(_domain(_table(d, "domains"), profiles) for d in data.pop("domains", []))
        hints = tuple(_table(h, "hints") for h in data.pop("hints", []))
        known = set(cls.__dataclass_fields__) - {"domains", "hints"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"unknown simulator configuration key(s) {', '.join(unknown)}; "
                f"known: domains, hints, profiles, {', '.join(sorted(known))}"
            )
        return cls(domains=domains, hints=hints, **data)

    # -- the standard mix ----------------------------------------------------------------

    @classmethod
    def standard(cls, domains: int = 50, seed: int = 1) -> SimConfig:
        """The realistic mix of the demo; see :mod:`postline.sim.standard`."""
        return cls(domains=standard_domains(domains), seed=seed, hints=standard_hints())


def _table(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} entries must be tables")
    return dict(value)


def _domain(data: dict[str, Any], profiles: Mapping[str, Profile]) -> DomainSpec:
    name = data.get("name")
    if not isinstance(name, str):
        raise ConfigError("every [[domains]] entry needs a name")
    allowed = {"name", "kind", "mx", "profile", "provider"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ConfigError(f"domain {name!r}: unknown key(s) {', '.join(unknown)}")
    profile = _profile(data.get("profile"), profiles, f"domain {name!r}")
    mx_raw = data.get("mx", [])
    if not isinstance(mx_raw, list):
        raise ConfigError(f"domain {name!r}: mx must be a list")
    mx: list[MXHostSpec] = []
    for i, entry in enumerate(mx_raw):
        pref = 10 * (i + 1)
        if isinstance(entry, str):
            mx.append(MXHostSpec(entry, pref))
            continue
        if not isinstance(entry, Mapping) or "host" not in entry:
            raise ConfigError(f"domain {name!r}: an mx entry is a host name or {{host = ...}}")
        extra = sorted(set(entry) - {"host", "preference", "profile", "dead"})
        if extra:
            raise ConfigError(f"domain {name!r}: unknown mx key(s) {', '.join(extra)}")
        host_profile = (
            _profile(entry["profile"], profiles, f"MX {entry['host']!r}")
            if "profile" in entry
            else None
        )
        if entry.get("dead"):
            host_profile = replace(host_profile or profile, dead=True)
        mx.append(MXHostSpec(entry["host"], entry.get("preference", pref), host_profile))
    return DomainSpec(
        name=name,
        kind=data.get("kind", "mx"),
        mx=tuple(mx),
        profile=profile,
        provider=data.get("provider"),
    )


def _profile(value: object, profiles: Mapping[str, Profile], where: str) -> Profile:
    if value is None:
        return Profile()
    if isinstance(value, str):
        if value in profiles:
            return profiles[value]
        if value == "accept":
            return Profile()
        raise ConfigError(f"{where}: no profile named {value!r} in [profiles]")
    if isinstance(value, Mapping):
        return Profile.from_mapping(value, str(value.get("name", "inline")))
    raise ConfigError(f"{where}: profile must be a name or a table")


def plan_hosts(domains: Iterable[DomainSpec], first_address: str = "127.0.0.2") -> list[HostPlan]:
    """Give every simulated host an address, in order of first appearance.

    Addresses count up from ``first_address``, skipping 127.0.0.1 and the ``.0`` and
    ``.255`` of every /24. A domain without a ``provider`` joins the provider of an MX
    host it shares with an earlier domain, else it is its own provider. A host listed by
    several domains must end up with one provider and one profile; otherwise ConfigError.
    """
    order: list[str] = []
    provider: dict[str, str] = {}
    profile: dict[str, Profile] = {}
    served: dict[str, list[str]] = {}
    for spec in domains:
        owner = spec.provider
        if owner is None:
            claimed = [provider[m.host] for m in spec.hosts if m.host in provider]
            owner = claimed[0] if claimed else spec.name
        for mx in spec.hosts:
            effective = spec.host_profile(mx)
            if mx.host not in provider:
                order.append(mx.host)
                provider[mx.host] = owner
                profile[mx.host] = effective
                served[mx.host] = []
            elif provider[mx.host] != owner:
                raise ConfigError(
                    f"MX host {mx.host!r} is used by providers {provider[mx.host]!r} and "
                    f"{owner!r}; a host belongs to one provider"
                )
            elif profile[mx.host] != effective:
                raise ConfigError(
                    f"MX host {mx.host!r} is given two different profiles "
                    f"(by {served[mx.host][0]!r} and {spec.name!r}); a host has one profile"
                )
            served[mx.host].append(spec.name)
    plans: list[HostPlan] = []
    address = int(ipaddress.ip_address(first_address))
    last = int(ipaddress.ip_address("127.255.255.254"))
    for host in order:
        while (address & 0xFF) in (0, 255) or address == int(_NODE_ADDRESS):
            address += 1
        if address > last:
            raise ConfigError("too many simulated hosts for 127.0.0.0/8")
        plans.append(
            HostPlan(
                host,
                str(ipaddress.ip_address(address)),
                provider[host],
                profile[host],
                tuple(served[host]),
            )
        )
        address += 1
    return plans


def add_to_zone(zone: Zone, domains: Iterable[DomainSpec], addresses: Mapping[str, str]) -> None:
    """Add the DNS records of ``domains`` to ``zone``; ``addresses`` maps host → IPv4."""
    for spec in domains:
        if spec.kind == "mx":
            zone.mx[spec.name] = [(m.preference, m.host) for m in spec.mx]
            for m in spec.mx:
                zone.a[m.host] = [addresses[m.host]]
        elif spec.kind == "implicit":
            zone.a[spec.name] = [addresses[spec.name]]
        elif spec.kind == "null_mx":
            zone.mx[spec.name] = [(0, ".")]
        elif spec.kind == "servfail":
            zone.servfail.add(spec.name)
        elif spec.kind == "blackhole":
            zone.blackhole.add(spec.name)
        # nxdomain: nothing at all
