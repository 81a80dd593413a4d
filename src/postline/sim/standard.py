"""The standard simulated internet: big providers and a crowd of small domains.

Providers (limits are per sending IP, over all the provider's hosts):

=========== ======================================== ================================ ==========
provider    domains                                  MX hosts                         sim limit
=========== ======================================== ================================ ==========
google      gmail.test + Workspace: acme.test,       gmail-smtp-in.l.google.test,     200 msg/s,
            initech.test, globex.test,               alt1.gmail-smtp-in.l.google.test 30 conns
            umbrella.test, hooli.test
microsoft   outlook.test, hotmail.test, contoso.test, <domain-dashed>.mail.protection. 100 msg/s,
            fabrikam.test                            outlook.test (one per domain)    15 conns
yahoo       yahoo.test, aol.test                     mta5/6/7.am0.yahoodns.test       40 msg/s,
                                                                                      8 conns
apple       icloud.test, me.test                     mx01/mx02.mail.icloud.test       50 msg/s,
                                                                                      8 conns
hostedmail  every fourth small plain domain          mx1/mx2.hostedmail.test          10 conns
=========== ======================================== ================================ ==========

Small domains with a behaviour of their own (one MX host ``mx.<domain>`` unless said):

- ``greylisting.test``, ``postgrey.test``, ``milter-grey.test``: greylist 2, 3 and 5 s;
- ``tarpit.test``: 0.5 s before the banner and before every reply;
- ``spamblock.test``: every recipient refused with a Spamhaus-style block (550 5.7.1);
- ``deadprimary.test``: ``mx1`` (preference 10) refuses connections, ``mx2`` (20) works;
- ``nullmx.test`` (null MX), ``nxdomain.test`` (not in DNS), ``implicit.test`` (A only);
- ``ratelimited.test``: 5 msg/s; ``tinylimit.test``: 30 msg/min and 1 connection;
- ``flaky.test``: 2 % of transactions get a transient 451 4.3.0 / 421 4.3.2;
- ``dropper.test``: 2 % of messages have their connection dropped during DATA.

The rest (``domains`` minus the 27 above; none when ``domains`` is smaller) are plain
accepting domains. :meth:`SimConfig.throttle_hints` gives node limits a bit below the
simulated ones for google, microsoft and apple, above them for yahoo (the node meets
``[TSS04]`` deferrals and must slow down by itself), and a ``default`` rule whose rate
the two rate-limited small domains cannot take.
"""

from __future__ import annotations

from typing import Any

from postline.sim.profiles import DomainSpec, MXHostSpec, Profile

__all__ = ["FIXED_DOMAINS", "standard_domains", "standard_hints"]

_GOOGLE = Profile(
    name="google",
    throttle_style="google",
    rate=200,
    rate_period=1.0,
    max_connections=30,
    max_size=157_286_400,
)
_MICROSOFT = Profile(
    name="microsoft",
    throttle_style="microsoft",
    rate=100,
    rate_period=1.0,
    max_connections=15,
    max_size=157_286_400,
)
_YAHOO = Profile(
    name="yahoo",
    throttle_style="yahoo",
    rate=40,
    rate_period=1.0,
    max_connections=8,
    max_size=41_943_040,
)
_APPLE = Profile(
    name="apple",
    throttle_style="apple",
    rate=50,
    rate_period=1.0,
    max_connections=8,
    max_size=20_971_520,
)
_PLAIN = Profile(name="accept", max_size=10_240_000)
_HOSTED = Profile(name="hostedmail", max_connections=10, max_size=10_240_000)

_WORKSPACE = ("acme.test", "initech.test", "globex.test", "umbrella.test", "hooli.test")
_MICROSOFT_DOMAINS = ("outlook.test", "hotmail.test", "contoso.test", "fabrikam.test")

_PLAIN_NAMES = (
    "northwind.test",
    "tailspin.test",
    "wingtip.test",
    "litware.test",
    "proseware.test",
    "lucerne.test",
    "woodgrove.test",
    "coho.test",
    "margie.test",
    "treyresearch.test",
    "wideworld.test",
    "blueyonder.test",
    "cpandl.test",
    "humongous.test",
    "alpineski.test",
    "relecloud.test",
    "fourthcoffee.test",
    "southridge.test",
    "vanarsdel.test",
    "lamna.test",
    "fineart.test",
    "consolidated.test",
    "adatum.test",
    "datum.test",
    "graphicdesign.test",
    "schoolofart.test",
    "contososuites.test",
    "tradewinds.test",
    "bellows.test",
    "fabrikamfiber.test",
)


def _google() -> list[DomainSpec]:
    mx = (
        MXHostSpec("gmail-smtp-in.l.google.test", 5),
        MXHostSpec("alt1.gmail-smtp-in.l.google.test", 10),
    )
    return [
        DomainSpec(name, mx=mx, profile=_GOOGLE, provider="google")
        for name in ("gmail.test", *_WORKSPACE)
    ]


def _microsoft() -> list[DomainSpec]:
    return [
        DomainSpec(
            name,
            mx=(MXHostSpec(f"{name.replace('.', '-')}.mail.protection.outlook.test", 10),),
            profile=_MICROSOFT,
            provider="microsoft",
        )
        for name in _MICROSOFT_DOMAINS
    ]


def _yahoo() -> list[DomainSpec]:
    mx = tuple(MXHostSpec(f"mta{i}.am0.yahoodns.test", 1) for i in (5, 6, 7))
    return [
        DomainSpec(name, mx=mx, profile=_YAHOO, provider="yahoo")
        for name in ("yahoo.test", "aol.test")
    ]


def _apple() -> list[DomainSpec]:
    mx = (MXHostSpec("mx01.mail.icloud.test", 10), MXHostSpec("mx02.mail.icloud.test", 10))
    return [
        DomainSpec(name, mx=mx, profile=_APPLE, provider="apple")
        for name in ("icloud.test", "me.test")
    ]


def _specials() -> list[DomainSpec]:
    def plain(name: str, **knobs: Any) -> DomainSpec:
        profile = Profile(name=name.split(".")[0], max_size=10_240_000, **knobs)
        return DomainSpec(name, profile=profile)

    dead = Profile(name="dead", dead=True)
    return [
        plain("greylisting.test", greylist=2.0),
        plain("postgrey.test", greylist=3.0),
        plain("milter-grey.test", greylist=5.0),
        plain("tarpit.test", tarpit=0.5),
        plain("spamblock.test", block=True),
        DomainSpec(
            "deadprimary.test",
            mx=(
                MXHostSpec("mx1.deadprimary.test", 10, dead),
                MXHostSpec("mx2.deadprimary.test", 20),
            ),
            profile=_PLAIN,
        ),
        DomainSpec("nullmx.test", kind="null_mx"),
        DomainSpec("nxdomain.test", kind="nxdomain"),
        DomainSpec("implicit.test", kind="implicit", profile=_PLAIN),
        plain("ratelimited.test", rate=5, rate_period=1.0),
        plain("tinylimit.test", rate=30, rate_period=60.0, max_connections=1),
        plain("flaky.test", transient_rate=0.02),
        plain("dropper.test", drop_rate=0.02),
    ]


def _fixed() -> list[DomainSpec]:
    return [*_google(), *_microsoft(), *_yahoo(), *_apple(), *_specials()]


#: Names of the domains every standard configuration has, whatever ``domains`` asks.
FIXED_DOMAINS: tuple[str, ...] = tuple(d.name for d in _fixed())


def _plain_domains(count: int) -> list[DomainSpec]:
    hosted = (MXHostSpec("mx1.hostedmail.test", 10), MXHostSpec("mx2.hostedmail.test", 20))
    out: list[DomainSpec] = []
    for i in range(count):
        name = _PLAIN_NAMES[i] if i < len(_PLAIN_NAMES) else f"shop{i + 1:03d}.test"
        if i % 4 == 3:
            out.append(DomainSpec(name, mx=hosted, profile=_HOSTED, provider="hostedmail"))
        else:
            out.append(DomainSpec(name, profile=_PLAIN))
    return out


def _hints() -> list[dict[str, Any]]:
    return [
        {
            "name": "google",
            "domains": ["gmail.test"],
            "mx": ["*.google.test"],
            "scope": "rule",
            "messages": 140,
            "period": "1s",
            "burst": 20,
            "connections": 20,
            "messages_per_connection": 100,
        },
        {
            "name": "microsoft",
            "domains": ["outlook.test", "hotmail.test"],
            "mx": ["*.mail.protection.outlook.test"],
            "scope": "rule",
            "messages": 70,
            "period": "1s",
            "burst": 10,
            "connections": 10,
            "messages_per_connection": 50,
        },
        {
            # Above the simulated 40 msg/s on purpose: the node meets [TSS04] deferrals
            # and has to slow down on its own.
            "name": "yahoo",
            "domains": ["yahoo.test", "aol.test"],
            "mx": ["*.yahoodns.test"],
            "scope": "rule",
            "messages": 60,
            "period": "1s",
            "burst": 10,
            "connections": 6,
            "messages_per_connection": 20,
        },
        {
            "name": "apple",
            "domains": ["icloud.test", "me.test"],
            "mx": ["*.icloud.test"],
            "scope": "rule",
            "messages": 35,
            "period": "1s",
            "burst": 5,
            "connections": 5,
            "messages_per_connection": 20,
        },
        {
            # The catch-all: one bucket per MX site. ratelimited.test (5/s) and
            # tinylimit.test (30/min, 1 connection) answer with throttling replies.
            "name": "default",
            "scope": "site",
            "messages": 20,
            "period": "1s",
            "burst": 5,
            "connections": 3,
        },
    ]


def standard_domains(domains: int = 50) -> tuple[DomainSpec, ...]:
    """The standard mix with ``domains`` domains in all (at least the fixed 27); with
    :func:`standard_hints`, what ``SimConfig.standard`` is made of."""
    fixed = _fixed()
    return (*fixed, *_plain_domains(max(0, domains - len(fixed))))


def standard_hints() -> tuple[dict[str, Any], ...]:
    """The node limits that go with the standard mix (``SimConfig.throttle_hints``)."""
    return tuple(_hints())
