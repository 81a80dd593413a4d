"""What a simulated domain is and how its mail exchangers behave: pure data and validation.

A :class:`DomainSpec` names a recipient domain, its DNS kind and, for domains that receive
mail, its mail exchangers (:class:`MXHostSpec`) and the :class:`Profile` they follow.
Several domains may list the same MX hosts (every Google Workspace domain uses Google's
mail exchangers), so a node's "MX rollup" can be tested. Domains of one ``provider`` share
its per-client counters (rate window, connection count, greylisting database), the way a
big provider counts a sending IP across all of its hosts.

Profile knobs (all optional; a profile without knobs accepts everything):

============== =============================================================================
knob           effect
============== =============================================================================
rate           at most ``rate`` messages per ``rate_period`` seconds from one sending IP
               (sliding window over the provider); beyond, the provider's real throttling
               reply (see :mod:`postline.sim.styles` for the texts and the command that
               draws them: MAIL FROM, RCPT TO or the end of DATA)
max_connections concurrent connections from one sending IP to the provider; beyond, the
               provider's "too many connections" reply at the banner (or at EHLO), then
               the connection is closed
throttle_style ``google`` | ``microsoft`` | ``yahoo`` | ``apple`` | ``generic``: the reply
               texts, banner and EHLO greeting of the provider
greylist       seconds; the first attempt of each (client IP, MAIL FROM, RCPT TO) triplet
               gets ``451 4.7.1 Greylisted, please try again in N seconds``; attempts
               after the delay are accepted
tarpit         seconds slept before the banner and before every reply
block          every RCPT TO gets ``550 5.7.1 Service unavailable; Client host [ip]
               blocked using zen.spamhaus.org``
block_ips      the same, for connections from these client IPs only (a blocklisted
               sending IP next to clean ones)
transient_rate fraction of transactions that get ``451 4.3.0`` or ``421 4.3.2`` at RCPT TO
               or at the end of DATA (decided by a seeded hash, so reproducible)
drop_rate      fraction of messages whose connection is dropped during DATA, before the
               final reply (nothing is recorded as accepted)
tls            STARTTLS with a self-signed certificate made at start (default on)
max_size       SIZE advertised in EHLO and enforced with ``552 5.3.4``
pipelining     PIPELINING advertised (default on)
dead           nothing listens on the host's address: connections are refused
============== =============================================================================

Feedback knobs: after accepting a message, a domain may later send mail back about it
(see :mod:`postline.sim.feedback`; all rates default to 0, which sends nothing):

================== =========================================================================
knob               effect
================== =========================================================================
late_bounce_rate   fraction of accepted recipients that get a late bounce (an asynchronous
                   DSN sent to the envelope sender with ``MAIL FROM:<>``)
complaint_rate     fraction that get an ARF complaint (RFC 5965), sent to the simulator's
                   ``fbl_address`` when set, else to the envelope sender
auto_reply_rate    fraction that get an auto-reply (RFC 3834 / out-of-office), sent to the
                   envelope sender with ``MAIL FROM:<>``
feedback_delay     seconds between accepting the message and sending the feedback (1.0)
mailbox_full_share fraction of late bounces that say "mailbox full" (half ``5.2.2``, half
                   ``4.2.2``); the rest say "user unknown" (``5.1.1``). Default 0.2
bounce_formats     the late-bounce formats taken in turn: ``postfix``, ``exim``, ``qmail``,
                   ``exchange``, ``gmail`` (default: all)
complaint_formats  the complaint formats taken in turn: ``yahoo``, ``microsoft``,
                   ``headers`` (default: all)
auto_reply_formats the auto-reply formats taken in turn: ``vacation``, ``exchange``,
                   ``out-of-office``, ``abwesenheit`` (default: all)
complaint_redact   replace the complaining recipient's address with ``redacted@<domain>``
                   in complaints (default false: nothing is redacted)
================== =========================================================================

The three rates are drawn from one number per (Message-ID, recipient), so a recipient
gets at most one kind of feedback and their sum must not exceed 1.

Domain kinds outside the MX: ``mx`` (default: MX records pointing at simulated hosts),
``implicit`` (no MX, only an A record: the domain itself is the mail exchanger),
``null_mx`` (``MX 0 .``, RFC 7505), ``nxdomain`` (left out of DNS), ``servfail`` (the DNS
server answers SERVFAIL) and ``blackhole`` (the DNS server never answers).

Behaviour by recipient local part, on every domain that accepts mail (the local part is
compared case-insensitively by its beginning, so ``unknown-42@`` and ``Full.Box@`` match):

================= ============ ================================================================
local part        command      reply
================= ============ ================================================================
``unknown…``,     RCPT TO      ``550 5.1.1 <addr>: Recipient address rejected: User unknown``
``nouser…``
``full…``         RCPT TO      ``452 4.2.2 Mailbox full`` (transient)
``overquota…``    RCPT TO      ``552 5.2.2 Mailbox full``
``disabled…``     RCPT TO      ``550 5.2.1 Mailbox disabled``
``tempfail…``     RCPT TO      ``451 4.3.0 Temporary failure``, always
``greylist…``     RCPT TO      greylisted as above (``SimConfig.greylist_delay`` seconds, or
                               the domain's own greylisting delay) even when the domain does
                               not greylist
``slow…``         RCPT TO      accepted after ``SimConfig.slow_delay`` seconds (2 s)
``spam…``         end of DATA  ``550 5.7.1 Message rejected as spam``
``drop…``         end of DATA  the connection is dropped before the final reply on the FIRST
                               attempt of that message (same Message-ID), accepted later
anything else                  accepted
================= ============ ================================================================

Every name (domain and host) must sit under a reserved name that can never reach the
real internet: ``.test``, ``.example``, ``.invalid``, ``.localhost`` or ``example.com``,
``example.net``, ``example.org``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, get_args

from postline.errors import ConfigError

__all__ = [
    "AUTO_REPLY_FORMATS",
    "BOUNCE_FORMATS",
    "COMPLAINT_FORMATS",
    "DOMAIN_KINDS",
    "THROTTLE_STYLES",
    "Behaviour",
    "DomainKind",
    "DomainSpec",
    "MXHostSpec",
    "Profile",
    "ThrottleStyle",
    "behaviour_of",
    "check_name",
]

ThrottleStyle = Literal["google", "microsoft", "yahoo", "apple", "generic"]
THROTTLE_STYLES: tuple[str, ...] = get_args(ThrottleStyle)

DomainKind = Literal["mx", "implicit", "null_mx", "nxdomain", "servfail", "blackhole"]
DOMAIN_KINDS: tuple[str, ...] = get_args(DomainKind)

#: Formats of late bounces, complaints and auto-replies (see :mod:`postline.sim.notices`).
BOUNCE_FORMATS: tuple[str, ...] = ("postfix", "exim", "qmail", "exchange", "gmail")
COMPLAINT_FORMATS: tuple[str, ...] = ("yahoo", "microsoft", "headers")
AUTO_REPLY_FORMATS: tuple[str, ...] = ("vacation", "exchange", "out-of-office", "abwesenheit")

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_RESERVED_SUFFIXES = (".test", ".example", ".invalid", ".localhost")
_RESERVED_NAMES = ("example.com", "example.net", "example.org")


class Behaviour(StrEnum):
    """What a recipient's local part asks the simulated mailbox to do."""

    UNKNOWN = "unknown"
    FULL = "full"
    OVERQUOTA = "overquota"
    DISABLED = "disabled"
    TEMPFAIL = "tempfail"
    GREYLIST = "greylist"
    SLOW = "slow"
    SPAM = "spam"
    DROP = "drop"


_PREFIXES: tuple[tuple[str, Behaviour], ...] = (
    ("unknown", Behaviour.UNKNOWN),
    ("nouser", Behaviour.UNKNOWN),
    ("overquota", Behaviour.OVERQUOTA),
    ("full", Behaviour.FULL),
    ("disabled", Behaviour.DISABLED),
    ("tempfail", Behaviour.TEMPFAIL),
    ("greylist", Behaviour.GREYLIST),
    ("slow", Behaviour.SLOW),
    ("spam", Behaviour.SPAM),
    ("drop", Behaviour.DROP),
)


def behaviour_of(local_part: str) -> Behaviour | None:
    """The behaviour a local part selects, or None for a plain accepting mailbox.

    >>> behaviour_of("Unknown-7")
    <Behaviour.UNKNOWN: 'unknown'>
    >>> behaviour_of("ann") is None
    True
    """
    lowered = local_part.lower()
    for prefix, behaviour in _PREFIXES:
        if lowered.startswith(prefix):
            return behaviour
    return None


def check_name(name: str, what: str = "name") -> str:
    """Return ``name`` lower-cased without a trailing dot; raise ConfigError if it is not a
    valid host name under a reserved suffix."""
    if not isinstance(name, str):
        raise ConfigError(f"{what} must be a string, got {name!r}")
    host = name.strip().rstrip(".").lower()
    labels = host.split(".")
    if len(labels) < 2 or len(host) > 253 or not all(_LABEL.fullmatch(lb) for lb in labels):
        raise ConfigError(f"{what} {name!r} is not a valid host name")
    if not (
        host.endswith(_RESERVED_SUFFIXES)
        or host in _RESERVED_NAMES
        or host.endswith(tuple("." + n for n in _RESERVED_NAMES))
    ):
        raise ConfigError(
            f"{what} {name!r} is not under a reserved name; use .test, .example, .invalid, "
            ".localhost or example.com/net/org so that nothing can reach the real internet"
        )
    return host


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Profile:
    """How the mail exchangers of a domain behave; see the module docstring for each knob.

    ``name`` labels the profile in reports and configuration (``[profiles.NAME]``).
    """

    name: str = "accept"
    rate: int | None = None
    rate_period: float = 1.0
    max_connections: int | None = None
    throttle_style: ThrottleStyle = "generic"
    greylist: float | None = None
    tarpit: float = 0.0
    block: bool = False
    block_ips: tuple[str, ...] = ()
    transient_rate: float = 0.0
    drop_rate: float = 0.0
    tls: bool = True
    max_size: int | None = None
    pipelining: bool = True
    dead: bool = False
    late_bounce_rate: float = 0.0
    complaint_rate: float = 0.0
    auto_reply_rate: float = 0.0
    feedback_delay: float = 1.0
    mailbox_full_share: float = 0.2
    bounce_formats: tuple[str, ...] = BOUNCE_FORMATS
    complaint_formats: tuple[str, ...] = COMPLAINT_FORMATS
    auto_reply_formats: tuple[str, ...] = AUTO_REPLY_FORMATS
    complaint_redact: bool = False

    def __post_init__(self) -> None:
        where = f"profile {self.name!r}"
        for key in ("rate", "max_connections", "max_size"):
            value = getattr(self, key)
            if value is not None and (
                not isinstance(value, int) or isinstance(value, bool) or value <= 0
            ):
                raise ConfigError(f"{where}: {key} must be a positive whole number, got {value!r}")
        if not _number(self.rate_period) or self.rate_period <= 0:
            raise ConfigError(f"{where}: rate_period must be a positive number of seconds")
        for key in ("tarpit", "feedback_delay"):
            value = getattr(self, key)
            if not _number(value) or value < 0:
                raise ConfigError(f"{where}: {key} must be a number of seconds >= 0")
        if self.greylist is not None and (not _number(self.greylist) or self.greylist < 0):
            raise ConfigError(f"{where}: greylist must be a number of seconds >= 0")
        for key in (
            "transient_rate",
            "drop_rate",
            "late_bounce_rate",
            "complaint_rate",
            "auto_reply_rate",
            "mailbox_full_share",
        ):
            value = getattr(self, key)
            if not _number(value) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{where}: {key} must be a fraction between 0 and 1")
        if self.late_bounce_rate + self.complaint_rate + self.auto_reply_rate > 1.0 + 1e-9:
            raise ConfigError(
                f"{where}: late_bounce_rate + complaint_rate + auto_reply_rate must not "
                "exceed 1 (a recipient gets at most one kind of feedback)"
            )
        for key, known in (
            ("bounce_formats", BOUNCE_FORMATS),
            ("complaint_formats", COMPLAINT_FORMATS),
            ("auto_reply_formats", AUTO_REPLY_FORMATS),
        ):
            value = getattr(self, key)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, key, value)
            if (
                not isinstance(value, tuple)
                or not value
                or any(v not in known for v in value)
                or len(set(value)) != len(value)
            ):
                raise ConfigError(
                    f"{where}: {key} must be a non-empty list of distinct names among "
                    f"{', '.join(known)}, got {value!r}"
                )
        if self.throttle_style not in THROTTLE_STYLES:
            raise ConfigError(
                f"{where}: throttle_style must be one of {', '.join(THROTTLE_STYLES)}, "
                f"got {self.throttle_style!r}"
            )
        ips: Any = self.block_ips  # from TOML: a list
        if isinstance(ips, list):
            ips = tuple(ips)
            object.__setattr__(self, "block_ips", ips)
        if not isinstance(ips, tuple) or not all(isinstance(ip, str) and _is_ip(ip) for ip in ips):
            raise ConfigError(f"{where}: block_ips must be a list of IP addresses, got {ips!r}")
        for key in ("block", "tls", "pipelining", "dead", "complaint_redact"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{where}: {key} must be true or false")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], name: str = "accept") -> Profile:
        """Build a profile from a TOML table; unknown keys are a ConfigError."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                f"profile {name!r}: unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        values = dict(data)
        values.setdefault("name", name)
        for key in (
            "rate_period",
            "tarpit",
            "feedback_delay",
            "late_bounce_rate",
            "complaint_rate",
            "auto_reply_rate",
            "mailbox_full_share",
        ):
            if isinstance(values.get(key), int) and not isinstance(values.get(key), bool):
                values[key] = float(values[key])
        return cls(**values)

    @property
    def sends_feedback(self) -> bool:
        """Whether any accepted message may draw a late bounce, complaint or auto-reply."""
        return bool(self.late_bounce_rate or self.complaint_rate or self.auto_reply_rate)


@dataclass(frozen=True, slots=True)
class MXHostSpec:
    """One mail exchanger of a domain; ``profile`` overrides the domain's profile for this
    host only (e.g. a dead primary in front of a working secondary)."""

    host: str
    preference: int = 10
    profile: Profile | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", check_name(self.host, "MX host"))
        pref = self.preference
        if not isinstance(pref, int) or isinstance(pref, bool) or not 0 <= pref <= 65535:
            raise ConfigError(f"MX host {self.host!r}: preference must be 0..65535")


@dataclass(frozen=True, slots=True)
class DomainSpec:
    """A recipient domain of the simulated internet.

    ``mx`` defaults to one host ``mx.<domain>`` for kind ``mx``; other kinds take no MX
    hosts (``implicit`` is served by a host named like the domain itself). ``provider``
    groups domains whose mail exchangers share per-client counters; by default a domain
    joins the provider of an MX host it shares with an earlier domain, else it is its own
    provider (named like the domain).
    """

    name: str
    kind: DomainKind = "mx"
    mx: tuple[MXHostSpec, ...] = ()
    profile: Profile = field(default_factory=Profile)
    provider: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", check_name(self.name, "domain"))
        if self.kind not in DOMAIN_KINDS:
            raise ConfigError(
                f"domain {self.name!r}: kind must be one of {', '.join(DOMAIN_KINDS)}, "
                f"got {self.kind!r}"
            )
        object.__setattr__(self, "mx", tuple(self.mx))
        if self.kind == "mx" and not self.mx:
            object.__setattr__(self, "mx", (MXHostSpec(f"mx.{self.name}"),))
        elif self.kind != "mx" and self.mx:
            raise ConfigError(f"domain {self.name!r}: kind {self.kind!r} takes no MX hosts")
        if self.provider is not None and (
            not isinstance(self.provider, str) or not self.provider.strip()
        ):
            raise ConfigError(f"domain {self.name!r}: provider must be a non-empty string")
        hosts = [m.host for m in self.mx]
        if len(set(hosts)) != len(hosts):
            raise ConfigError(f"domain {self.name!r}: an MX host is listed twice")

    @property
    def hosts(self) -> tuple[MXHostSpec, ...]:
        """The simulated hosts that receive this domain's mail (none for DNS-only kinds)."""
        if self.kind == "implicit":
            return (MXHostSpec(self.name, 0),)
        return self.mx if self.kind == "mx" else ()

    def host_profile(self, spec: MXHostSpec) -> Profile:
        """The profile ``spec`` follows: its own, else the domain's."""
        return spec.profile if spec.profile is not None else self.profile
