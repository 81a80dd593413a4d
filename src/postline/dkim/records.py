"""The DNS records a sender domain publishes, and whether they are published.

:func:`expected_records` says what to publish for one sender domain, and
:func:`check` what counts as published:

- **dkim** — TXT ``<selector>._domainkey.<domain>`` = ``v=DKIM1; k=rsa|ed25519; p=<key>``.
  Ok when exactly one TXT record is there and it has that ``k=`` (default ``rsa``) and
  exactly that ``p=``; tags are parsed, so order, spacing, whitespace inside the
  base64 and a long record's 255-byte strings (joined) do not matter.
- **spf** — TXT ``<domain>`` = ``v=spf1 <mechanism> ~all``, a suggestion. Ok when the
  domain's one SPF record gives ``pass`` to the node's mechanism before any ``all``:
  directly (an ``ip4:``/``ip6:`` network containing ours counts) or through its
  ``include:``/``redirect=`` chain (at most 10 lookups, as in SPF).
- **dmarc** — TXT ``_dmarc.<domain>`` = ``v=DMARC1; p=none[; rua=mailto:...]``, a
  suggestion. Ok when exactly one DMARC record is there and its ``p=`` is none,
  quarantine or reject (the organizational-domain fallback of RFC 7489 §6.6.3 is not
  followed: a subdomain is asked for a record of its own).
- **return_path** — MX ``<bounce domain>`` = ``10 <host>``: ok when one of its MX
  names the host (any host when none is given; a null MX is wrong). Or, when the
  sender uses a return path in its own domain, CNAME ``<name>`` = ``<bounce domain>``.

:func:`check` looks every record up with a dnspython asynchronous resolver (make one
with :func:`make_resolver`; no cache, so a record just published is seen as soon as the
resolver's upstream sees it) and reports each as ``ok``, ``missing``, ``wrong`` — with
the values found and a ``fix`` sentence saying what to publish or change — or
``error`` when the lookup itself failed (timeout, SERVFAIL): nothing is known, check
again later. Several SPF records (SPF then fails with permerror, RFC 7208 §4.5) and
several DMARC records (ignored, RFC 7489 §6.6.3) are ``wrong``.

Records and statuses are plain frozen dataclasses of strings, so they can be stored as
JSON (``dataclasses.asdict``) and checked again later.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from postline.dkim._names import domain_name, selector_name
from postline.dkim.keys import Algorithm, key_type
from postline.dns.resolver import parse_nameserver
from postline.errors import ConfigError

__all__ = [
    "DnsRecord",
    "Purpose",
    "RecordStatus",
    "Status",
    "check",
    "dkim_record",
    "expected_records",
    "make_resolver",
    "parse_tags",
    "txt_strings",
]

Purpose: TypeAlias = Literal["dkim", "spf", "dmarc", "return_path"]
Status: TypeAlias = Literal["ok", "missing", "wrong", "error"]

_DMARC_POLICIES: Final = ("none", "quarantine", "reject")
_SPF_LOOKUPS: Final = 10  # RFC 7208 §4.6.4
_SPF_VERSION: Final = re.compile(r"v=spf1(?:\s|$)", re.IGNORECASE)
_DMARC_VERSION: Final = re.compile(r"\s*v\s*=\s*DMARC1\s*(?:;|$)")
_WSP: Final = re.compile(r"\s+")


_TXT_STRING: Final = 255  # bytes in one TXT character-string (RFC 1035 §3.3)


@dataclass(frozen=True)
class DnsRecord:
    """A record to publish: ``type`` (TXT, MX, CNAME) at ``name`` with ``value``."""

    type: Literal["TXT", "MX", "CNAME"]
    name: str
    value: str
    purpose: Purpose

    @property
    def strings(self) -> list[str]:
        """A TXT value as the character-strings DNS carries: at most 255 bytes each
        (a 2048-bit DKIM key needs two; resolvers join them). Other types: the value."""
        if self.type != "TXT":
            return [self.value]
        return txt_strings(self.value)

    @property
    def zone(self) -> str:
        """The record as a line of a zone file (BIND syntax), TXT strings quoted."""
        if self.type == "TXT":
            data = " ".join(f'"{_zone_escape(part)}"' for part in self.strings)
        elif (self.type == "MX" and self.value) or self.type == "CNAME":
            data = self.value if self.value.endswith(".") else f"{self.value}."
        else:
            data = self.value
        return f"{self.name}. IN {self.type} {data}".rstrip()


def txt_strings(value: str) -> list[str]:
    """``value`` cut into TXT character-strings of at most 255 bytes (ASCII values:
    characters; a value that is not ASCII is cut between characters)."""
    parts: list[str] = []
    current = ""
    size = 0
    for char in value:
        width = len(char.encode())
        if size + width > _TXT_STRING:
            parts.append(current)
            current, size = "", 0
        current += char
        size += width
    parts.append(current)
    return parts


def _zone_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@dataclass(frozen=True)
class RecordStatus:
    """What :func:`check` found for one record.

    ``found`` holds the values published at the record's name (TXT strings joined; for
    SPF and DMARC only the SPF / DMARC records), ``fix`` what to do ("" when ok).
    """

    record: DnsRecord
    status: Status
    found: tuple[str, ...] = ()
    fix: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"


# -- what to publish -----------------------------------------------------------------


def dkim_record(domain: str, selector: str, public_key: str, algorithm: Algorithm) -> DnsRecord:
    """The TXT record publishing ``public_key`` (a ``p=`` value) under ``selector``."""
    name = f"{_selector(selector)}._domainkey.{_domain(domain)}"
    value = f"v=DKIM1; k={key_type(algorithm)}; p={_WSP.sub('', public_key)}"
    return DnsRecord("TXT", name, value, "dkim")


def expected_records(
    domain: str,
    selector: str,
    public_key: str,
    algorithm: Algorithm,
    *,
    spf: str | None,
    bounce_domain: str | None = None,
    bounce_mx: str | None = None,
    return_path_cname: str | None = None,
    dmarc_rua: str | None = None,
) -> list[DnsRecord]:
    """The records ``domain`` publishes to send through this node, in the order above.

    ``spf``: the node's SPF mechanism(s), e.g. ``include:spf.postline.example`` or
    ``ip4:192.0.2.1 ip6:2001:db8::1``; None when the node does not know what it sends
    from (then no SPF record is asked for). ``bounce_domain``: the node's return-path
    domain; with it, a return-path record is asked for: an MX of ``bounce_domain``
    naming ``bounce_mx`` (any host when None), or, with ``return_path_cname`` (a name
    in ``domain``, e.g. ``bounces.shop.example``), a CNAME from that name to
    ``bounce_domain``. ``dmarc_rua``: the address aggregate reports go to.
    """
    domain = _domain(domain)
    mechanisms = spf.split() if spf is not None else None
    if mechanisms is not None and (
        not mechanisms or any(_SPF_VERSION.match(m) or _is_all(m) for m in mechanisms)
    ):
        raise ConfigError(
            f"bad SPF mechanism {spf!r}: give what to include, e.g. "
            "'include:spf.postline.example' or 'ip4:192.0.2.1'"
        )
    dmarc = "v=DMARC1; p=none"
    if dmarc_rua:
        address = dmarc_rua.removeprefix("mailto:")
        if "@" not in address:
            raise ConfigError(f"bad DMARC report address {dmarc_rua!r}")
        dmarc += f"; rua=mailto:{address}"
    records = [dkim_record(domain, selector, public_key, algorithm)]
    if mechanisms is not None:
        records.append(DnsRecord("TXT", domain, f"v=spf1 {' '.join(mechanisms)} ~all", "spf"))
    records.append(DnsRecord("TXT", f"_dmarc.{domain}", dmarc, "dmarc"))
    if bounce_domain:
        bounce = _domain(bounce_domain)
        if return_path_cname:
            records.append(DnsRecord("CNAME", _domain(return_path_cname), bounce, "return_path"))
        else:
            value = f"10 {_domain(bounce_mx)}" if bounce_mx else ""
            records.append(DnsRecord("MX", bounce, value, "return_path"))
    return records


def _domain(text: str) -> str:
    try:
        return domain_name(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _selector(text: str) -> str:
    try:
        return selector_name(text)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


# -- looking them up -------------------------------------------------------------------


def make_resolver(
    nameservers: Sequence[str] = (), *, timeout: float = 5.0
) -> dns.asyncresolver.Resolver:
    """A dnspython asynchronous resolver asking ``nameservers`` (``"ip"``, ``"ip:port"``,
    ``"[v6]:port"``); none: those of ``/etc/resolv.conf``. ``timeout`` bounds each lookup.
    """
    if timeout <= 0:
        raise ConfigError("DNS timeout must be positive")
    resolver = dns.asyncresolver.Resolver(configure=not nameservers)
    if nameservers:
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(*parse_nameserver(spec)) for spec in nameservers
        ]
    resolver.timeout = timeout
    resolver.lifetime = timeout
    return resolver


class _LookupFailed(Exception):
    """A lookup got no usable answer (timeout, SERVFAIL...): nothing is known."""


async def _lookup(
    resolver: dns.asyncresolver.Resolver, name: str, rdtype: dns.rdatatype.RdataType
) -> list[str]:
    """The records of ``rdtype`` at ``name`` as text (TXT: strings joined); [] if none."""
    try:
        answer = await resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return []
    except dns.resolver.NoNameservers:
        raise _LookupFailed("no nameserver answered (SERVFAIL or refused)") from None
    except dns.exception.Timeout:
        raise _LookupFailed("timed out") from None
    except dns.exception.DNSException as exc:
        raise _LookupFailed(str(exc) or type(exc).__name__) from None
    if answer.rrset is None:
        return []
    out = []
    for rdata in answer.rrset:
        if rdtype == dns.rdatatype.TXT:
            out.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        else:
            out.append(rdata.to_text())
    return out


async def check(
    records: Iterable[DnsRecord], resolver: dns.asyncresolver.Resolver
) -> list[RecordStatus]:
    """The status of each record, in order; the lookups run concurrently."""
    return list(await asyncio.gather(*(_check(record, resolver) for record in records)))


async def _check(record: DnsRecord, resolver: dns.asyncresolver.Resolver) -> RecordStatus:
    try:
        if record.purpose == "dkim":
            return await _check_dkim(record, resolver)
        if record.purpose == "spf":
            return await _check_spf(record, resolver)
        if record.purpose == "dmarc":
            return await _check_dmarc(record, resolver)
        if record.type == "CNAME":
            return await _check_cname(record, resolver)
        return await _check_mx(record, resolver)
    except _LookupFailed as exc:
        return RecordStatus(
            record,
            "error",
            fix=f"the DNS lookup of {record.type} {record.name} failed ({exc}); check again later",
        )


def _publish(record: DnsRecord) -> str:
    return f"publish {record.type} {record.name} with value {record.value}"


# -- DKIM ----------------------------------------------------------------------------------


def parse_tags(text: str) -> dict[str, str]:
    """A DKIM-style tag list (RFC 6376 §3.2) as ``{name: value}``.

    Whitespace around names, values and separators is dropped (inside a value it is
    kept); an empty trailing entry is allowed. Raises ``ValueError`` for an entry
    without ``=`` or a tag given twice.
    """
    tags: dict[str, str] = {}
    for entry in text.split(";"):
        if not entry.strip():
            continue
        name, sep, value = entry.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"not a tag=value entry: {entry.strip()!r}")
        if name in tags:
            raise ValueError(f"tag {name}= given twice")
        tags[name] = value.strip()
    return tags


def _dkim_problem(found: str, want: dict[str, str]) -> str | None:
    """Why the TXT value ``found`` does not publish the key of ``want``; None if it does."""
    try:
        tags = parse_tags(found)
    except ValueError as exc:
        return f"is not a valid DKIM key record ({exc})"
    if tags.get("v", "DKIM1") != "DKIM1":
        return f"has v={tags['v']}, not v=DKIM1"
    if "p" not in tags:
        return "has no p= tag (no public key)"
    key = _WSP.sub("", tags["p"])
    if not key:
        return "has an empty p= (the key is revoked)"
    k = tags.get("k", "rsa").lower()
    if k != want["k"]:
        return f"has k={k}, not k={want['k']}"
    if key != _WSP.sub("", want["p"]):
        return "publishes a different public key (p=)"
    return None


async def _check_dkim(record: DnsRecord, resolver: dns.asyncresolver.Resolver) -> RecordStatus:
    found = tuple(await _lookup(resolver, record.name, dns.rdatatype.TXT))
    if not found:
        return RecordStatus(record, "missing", found, _publish(record))
    want = parse_tags(record.value)
    problems = [_dkim_problem(value, want) for value in found]
    if len(found) == 1 and problems[0] is None:
        return RecordStatus(record, "ok", found)
    if None in problems:
        fix = (
            f"{record.name} has {len(found)} TXT records and receivers may read any of "
            f"them; keep only the one with value {record.value}"
        )
    else:
        fix = (
            f"the TXT record at {record.name} {problems[0]}; "
            f"replace it with the value {record.value}"
        )
    return RecordStatus(record, "wrong", found, fix)


# -- SPF -----------------------------------------------------------------------------------


def _is_all(term: str) -> bool:
    return term.lstrip("+-~?").lower() == "all"


def _split_qualifier(term: str) -> tuple[str, str]:
    if term[:1] in ("+", "-", "~", "?"):
        return term[0], term[1:]
    return "+", term


def _network(mechanism: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    kind, _, spec = mechanism.partition(":")
    if kind not in ("ip4", "ip6") or not spec:
        return None
    try:
        network = ipaddress.ip_network(spec, strict=False)
    except ValueError:
        return None
    return network if (network.version == 4) == (kind == "ip4") else None


def _same_mechanism(theirs: str, ours: str) -> bool:
    """Whether SPF mechanism ``theirs`` (no qualifier) covers ``ours``."""
    theirs, ours = theirs.lower().rstrip("."), ours.lower().rstrip(".")
    if theirs == ours:
        return True
    mine, other = _network(ours), _network(theirs)
    if isinstance(mine, ipaddress.IPv4Network) and isinstance(other, ipaddress.IPv4Network):
        return mine.subnet_of(other)
    if isinstance(mine, ipaddress.IPv6Network) and isinstance(other, ipaddress.IPv6Network):
        return mine.subnet_of(other)
    return False


def _spf_records(values: Iterable[str]) -> list[str]:
    return [value for value in values if _SPF_VERSION.match(value.strip())]


async def _spf_authorises(
    record: str, ours: str, resolver: dns.asyncresolver.Resolver, budget: list[int]
) -> bool:
    """Whether the SPF ``record`` gives ``pass`` to what ``ours`` names.

    Terms are read in order until ``all``; ``include:`` and ``redirect=`` are followed
    while ``budget`` (lookups left) lasts. Lookups that fail count as no match.
    """
    redirect = None
    for term in record.split()[1:]:
        qualifier, mechanism = _split_qualifier(term)
        lower = mechanism.lower()
        if lower == "all":
            return False
        if lower.startswith("redirect="):
            redirect = mechanism.partition("=")[2]
            continue
        if _same_mechanism(mechanism, ours):
            return qualifier == "+"
        if lower.startswith("include:") and qualifier == "+" and budget[0] > 0:
            budget[0] -= 1
            inner = await _spf_of(mechanism.partition(":")[2], resolver)
            if inner is not None and await _spf_authorises(inner, ours, resolver, budget):
                return True
    if redirect and budget[0] > 0:
        budget[0] -= 1
        inner = await _spf_of(redirect, resolver)
        return inner is not None and await _spf_authorises(inner, ours, resolver, budget)
    return False


async def _spf_of(domain: str, resolver: dns.asyncresolver.Resolver) -> str | None:
    try:
        records = _spf_records(await _lookup(resolver, domain, dns.rdatatype.TXT))
    except _LookupFailed:
        return None
    return records[0] if len(records) == 1 else None


def _with_mechanisms(record: str, mechanisms: Sequence[str]) -> str:
    """``record`` with ``mechanisms`` added before its ``all`` (or ``redirect=``)."""
    terms = record.split()
    at = next(
        (
            index
            for index, term in enumerate(terms)
            if index > 0 and (_is_all(term) or term.lower().startswith("redirect="))
        ),
        len(terms),
    )
    return " ".join([*terms[:at], *mechanisms, *terms[at:]])


async def _check_spf(record: DnsRecord, resolver: dns.asyncresolver.Resolver) -> RecordStatus:
    found = tuple(_spf_records(await _lookup(resolver, record.name, dns.rdatatype.TXT)))
    ours = [term for term in record.value.split()[1:] if not _is_all(term)]
    if not found:
        return RecordStatus(record, "missing", found, _publish(record))
    if len(found) > 1:
        fix = (
            f"{record.name} has {len(found)} SPF records, which makes SPF fail for all its "
            f"mail (permerror); merge them into one record that includes {' '.join(ours)}"
        )
        return RecordStatus(record, "wrong", found, fix)
    spf = found[0]
    missing = [
        mechanism
        for mechanism in ours
        if not await _spf_authorises(spf, mechanism, resolver, [_SPF_LOOKUPS])
    ]
    if not missing:
        return RecordStatus(record, "ok", found)
    fix = (
        f"your SPF record does not include {' '.join(missing)}; add it before the 'all' "
        f"term: {_with_mechanisms(spf, missing)}"
    )
    return RecordStatus(record, "wrong", found, fix)


# -- DMARC ---------------------------------------------------------------------------------


async def _check_dmarc(record: DnsRecord, resolver: dns.asyncresolver.Resolver) -> RecordStatus:
    values = await _lookup(resolver, record.name, dns.rdatatype.TXT)
    found = tuple(value for value in values if _DMARC_VERSION.match(value))
    if not found:
        return RecordStatus(record, "missing", found, _publish(record))
    if len(found) > 1:
        fix = (
            f"{record.name} has {len(found)} DMARC records, so receivers apply none of "
            f"them; keep one, e.g. {record.value}"
        )
        return RecordStatus(record, "wrong", found, fix)
    try:
        policy: str | None = parse_tags(found[0]).get("p")
    except ValueError:
        policy = None
    if policy is None:
        problem = "has no valid p= tag"
    elif policy.lower() not in _DMARC_POLICIES:
        problem = f"has p={policy}, which is not none, quarantine or reject"
    else:
        return RecordStatus(record, "ok", found)
    fix = f"the DMARC record at {record.name} {problem}; publish e.g. {record.value}"
    return RecordStatus(record, "wrong", found, fix)


# -- return path -----------------------------------------------------------------------------


def _host(text: str) -> str:
    return text.strip().rstrip(".").lower()


async def _check_mx(record: DnsRecord, resolver: dns.asyncresolver.Resolver) -> RecordStatus:
    found = tuple(await _lookup(resolver, record.name, dns.rdatatype.MX))
    want = _host(record.value.split()[-1]) if record.value.strip() else None
    hosts = [_host(value.split()[-1]) for value in found]
    if not found:
        if want is None:
            fix = f"publish an MX record for {record.name} naming postline's inbound server"
        else:
            fix = _publish(record)
        return RecordStatus(record, "missing", found, fix)
    usable = [host for host in hosts if host]  # "." is a null MX (RFC 7505): no mail
    if (want is None and usable) or want in usable:
        return RecordStatus(record, "ok", found)
    if not usable:
        problem = f"{record.name} has a null MX: it accepts no mail, so bounces cannot come back"
    else:
        problem = f"the MX of {record.name} names {', '.join(usable)}, not {want}"
    target = f"10 {want}" if want else "postline's inbound server"
    return RecordStatus(record, "wrong", found, f"{problem}; make it {target}")


async def _check_cname(record: DnsRecord, resolver: dns.asyncresolver.Resolver) -> RecordStatus:
    found = tuple(await _lookup(resolver, record.name, dns.rdatatype.CNAME))
    if not found:
        return RecordStatus(record, "missing", found, _publish(record))
    if _host(found[0]) == _host(record.value):
        return RecordStatus(record, "ok", found)
    fix = (
        f"the CNAME {record.name} points to {_host(found[0])}, not {record.value}; "
        f"change it to {record.value}"
    )
    return RecordStatus(record, "wrong", found, fix)
