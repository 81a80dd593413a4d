"""MX, address and TXT lookups for the delivery engine, with a TTL cache.

:meth:`Resolver.mx` turns a recipient domain into the mail exchangers to try, following
RFC 5321 §5.1 and RFC 7505:

- the domain is IDNA-encoded and lower-cased (``bücher.example`` → ``xn--bcher-kva.example``);
- MX records are sorted by preference; hosts of equal preference are shuffled on every
  call to spread load, while :attr:`MXResult.site` (the sorted host names) stays stable;
- each MX host's addresses are looked up (A, and AAAA when ``ipv6=True``); hosts without
  an address are left out. If no host has one the result is ``temp_fail`` when a lookup
  failed temporarily and ``no_mail`` otherwise;
- MX records that all point at ``.`` are a null MX: ``null_mx``, never deliverable;
- NXDOMAIN for the MX query is ``nxdomain``; no MX records (NODATA) makes the domain its
  own exchanger (``implicit=True``) when it has an address, ``no_mail`` when not;
- SERVFAIL, REFUSED, timeouts and network errors are ``temp_fail``: retry later.
  An exchange that is an IP address written as a name (``MX 10 192.0.2.1.``) is looked up
  as a name, like every other exchange, so it normally does not resolve.

Caching (one entry per name and kind of lookup, ``max_entries`` per kind, oldest dropped
first; a clock of ``time.monotonic``):

- answers with records live for their DNS TTL clamped to ``[min_ttl, max_ttl]``; an MX
  result lives no longer than the address records it was built from;
- negative outcomes (``nxdomain``, ``no_mail``, ``null_mx``, names without addresses, TXT
  NXDOMAIN/NODATA) live for ``min(negative_ttl, max(min_ttl, ttl_from_dns))``, where
  ``ttl_from_dns`` is the SOA negative TTL (RFC 2308) or the null MX record's TTL: a zone
  may shorten the negative lifetime down to ``min_ttl`` but never lengthen it;
- temporary failures live for ``temp_fail_ttl`` so a dead DNS server is not hammered; a
  result that is usable but missed a host (or the AAAA half) because of a temporary failure
  lives at most ``temp_fail_ttl`` too.

Concurrent lookups of one name share one in-flight query (single flight); a caller that
is cancelled does not cancel the shared lookup.

``timeout`` bounds one DNS lookup (all its tries); ``attempts`` is how many tries fit in
it. :meth:`Resolver.mx` runs the MX lookup, then the exchangers' address lookups in
parallel, so it takes at most about twice ``timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import ipaddress
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import dns.asyncresolver
import dns.exception
import dns.message
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.rdtypes.ANY.MX
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.resolver

from postline.errors import ConfigError, PostlineError

__all__ = ["DNSTemporaryError", "MXHost", "MXResult", "MXStatus", "Resolver", "parse_nameserver"]

MXStatus = Literal["ok", "null_mx", "nxdomain", "no_mail", "temp_fail"]

_RESOLV_CONF = "/etc/resolv.conf"

_T = TypeVar("_T")


class DNSTemporaryError(PostlineError):
    """A DNS lookup failed temporarily; retry later."""


@dataclass(frozen=True, slots=True)
class MXHost:
    """One mail exchanger: its MX preference, name (IDNA, lower case) and addresses."""

    preference: int
    name: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MXResult:
    """Where mail for ``domain`` goes, or why it cannot go anywhere.

    ``hosts`` are ordered by preference and hold only hosts with at least one address;
    they are non-empty exactly when ``status == "ok"``. ``implicit`` marks the RFC 5321
    §5.1 fallback (no MX: the domain itself, preference 0). ``detail`` is human text for
    events and logs.
    """

    domain: str
    status: MXStatus
    hosts: tuple[MXHost, ...] = ()
    implicit: bool = False
    detail: str = ""

    @property
    def site(self) -> str:
        """A stable key of the MX host set: the sorted host names joined by ``,``."""
        return ",".join(sorted({host.name for host in self.hosts}))

    @property
    def permanent(self) -> bool:
        """True when mail for the domain can never be delivered (bounce, don't retry)."""
        return self.status in ("null_mx", "nxdomain", "no_mail")


@dataclass(frozen=True, slots=True)
class _Answer:
    """The outcome of one DNS query."""

    kind: Literal["data", "nodata", "nxdomain", "error"]
    records: tuple[dns.rdata.Rdata, ...] = ()
    ttl: float = 0.0
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Addresses:
    """The outcome of looking up a host's addresses."""

    status: Literal["ok", "none", "temp"]
    addresses: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Txt:
    status: Literal["ok", "none", "temp"]
    strings: tuple[str, ...] = ()
    detail: str = ""


class _Memo(Generic[_T]):
    """A bounded TTL cache with single-flight computation, for one kind of lookup."""

    def __init__(self, max_entries: int, stats: dict[str, int]) -> None:
        self._entries: OrderedDict[str, tuple[float, _T]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[tuple[_T, float]]] = {}
        self._max_entries = max_entries
        self._stats = stats
        self._generation = 0

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._generation += 1  # lookups in flight now must not fill the cache

    async def get(
        self, key: str, compute: Callable[[], Awaitable[tuple[_T, float]]]
    ) -> tuple[_T, float]:
        """The value for ``key`` and how many seconds it stays valid."""
        entry = self._entries.get(key)
        if entry is not None:
            remaining = entry[0] - time.monotonic()
            if remaining > 0:
                self._stats["hits"] += 1
                return entry[1], remaining
            del self._entries[key]
        task = self._inflight.get(key)
        if task is None:
            self._stats["misses"] += 1
            task = asyncio.get_running_loop().create_task(
                self._fill(key, compute, self._generation), name=f"postline.dns:{key}"
            )
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._done, key))
        else:
            self._stats["shared"] += 1
        # A cancelled caller must not cancel the lookup the others are waiting for.
        return await asyncio.shield(task)

    async def _fill(
        self, key: str, compute: Callable[[], Awaitable[tuple[_T, float]]], generation: int
    ) -> tuple[_T, float]:
        value, ttl = await compute()
        if ttl > 0 and generation == self._generation:
            self._entries[key] = (time.monotonic() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._max_entries:
                self._entries.popitem(last=False)
        return value, ttl

    def _done(self, key: str, task: asyncio.Task[tuple[_T, float]]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so a lookup nobody awaits any more is not logged

    async def aclose(self) -> None:
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"ip"``, ``"ip:port"``, ``"[v6]:port"`` or a bare IPv6 address → (ip, port)."""
    spec = text.strip()
    host, port_text = spec, ""
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"bad nameserver {text!r}: expected [address]:port")
            port_text = rest[1:]
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"bad nameserver {text!r}: not an IP address") from None
    if not port_text:
        return host, 53
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"bad nameserver {text!r}: bad port")
    return host, int(port_text)


def _address_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _nxdomain_ttl(exc: dns.resolver.NXDOMAIN) -> float:
    responses = exc.kwargs.get("responses") or {}
    for response in responses.values():
        if isinstance(response, dns.message.QueryMessage):
            with contextlib.suppress(dns.exception.DNSException):
                return float(response.resolve_chaining().minimum_ttl)
    return float(dns.message.NEGATIVE_TTL_WITHOUT_SOA)


def _to_name(text: str) -> tuple[dns.name.Name, str]:
    """An absolute, IDNA-encoded, lower-case name and its text form (the cache key).

    Raises ``ValueError`` when ``text`` is not a usable domain name.
    """
    spec = text.strip()
    if spec.endswith("."):
        spec = spec[:-1]
    if not spec:
        raise ValueError("empty name")
    try:
        key = dns.name.from_text(spec).to_text(omit_final_dot=True).lower()
        return dns.name.from_text(key), key
    except (dns.exception.DNSException, UnicodeError) as exc:
        raise ValueError(str(exc) or type(exc).__name__) from exc


class Resolver:
    """A TTL-cached, single-flight stub resolver for MX, A/AAAA and TXT lookups.

    ``nameservers`` are ``"ip"``, ``"ip:port"`` or ``"[v6]:port"``; empty means the
    nameservers of ``/etc/resolv.conf``. See the module docstring for the rules.
    ``stats`` counts cache ``hits`` and ``misses``, lookups that joined one already in
    flight (``shared``) and DNS ``queries`` sent (one per name and type; dnspython's retries
    of one query are not counted).
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        *,
        timeout: float = 5.0,
        attempts: int = 2,
        min_ttl: float = 60.0,
        max_ttl: float = 86400.0,
        negative_ttl: float = 300.0,
        temp_fail_ttl: float = 30.0,
        max_entries: int = 100_000,
        ipv6: bool = False,
    ) -> None:
        if timeout <= 0 or attempts < 1:
            raise ConfigError("DNS timeout must be positive and attempts at least 1")
        if min_ttl < 0 or max_ttl < min_ttl or negative_ttl < 0 or temp_fail_ttl < 0:
            raise ConfigError("DNS cache TTLs must satisfy 0 <= min_ttl <= max_ttl, >= 0")
        if max_entries < 1:
            raise ConfigError("DNS cache max_entries must be at least 1")
        self.timeout = timeout
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self.temp_fail_ttl = temp_fail_ttl
        self.ipv6 = ipv6
        self.stats: dict[str, int] = {"hits": 0, "misses": 0, "shared": 0, "queries": 0}

        resolver = dns.asyncresolver.Resolver(configure=False)
        if nameservers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_nameserver(ns)) for ns in nameservers
            ]
        else:
            try:
                resolver.read_resolv_conf(_RESOLV_CONF)
            except dns.resolver.NoResolverConfiguration as exc:
                raise ConfigError(f"no DNS nameservers given and {exc}") from exc
        resolver.lifetime = timeout
        resolver.timeout = timeout / attempts
        resolver.cache = None
        self._dns = resolver
        self._random = random.Random()
        self._mx: _Memo[MXResult] = _Memo(max_entries, self.stats)
        self._addresses: _Memo[_Addresses] = _Memo(max_entries, self.stats)
        self._txt: _Memo[_Txt] = _Memo(max_entries, self.stats)

    @property
    def nameservers(self) -> list[str]:
        """The nameservers in use, as ``ip:port`` (``[ip]:port`` for IPv6)."""
        out: list[str] = []
        for ns in self._dns.nameservers:
            if isinstance(ns, dns.nameserver.AddressAndPortNameserver):
                out.append(_address_text(ns.address, ns.port))
            else:
                out.append(_address_text(str(ns), self._dns.port))
        return out

    def _describe_errors(self, errors: Sequence[dns.resolver.ErrorTuple]) -> str:
        """Turn dnspython's per-server error trace into ``"SERVFAIL from 127.0.0.1:53"``."""
        parts: list[str] = []
        for server, tcp, port, error, _response in errors:
            if isinstance(error, str):
                what = error
            else:
                what = type(error).__name__ + (f" ({error})" if str(error) else "")
            # dnspython names a server "Do53:127.0.0.1@53"; keep the address only.
            host = (server or "nameserver").removeprefix("Do53:").rsplit("@", 1)[0]
            part = f"{what} from {_address_text(host, port)}" + (" over TCP" if tcp else "")
            if part not in parts:
                parts.append(part)
        return "; ".join(parts) or "no nameserver answered"

    # ----------------------------------------------------------------- public API

    async def mx(self, domain: str) -> MXResult:
        """Where mail for ``domain`` goes (see the module docstring)."""
        spec = domain.strip()
        if spec.startswith("["):
            return MXResult(
                spec, "no_mail", detail="an address literal is not a domain to look up in DNS"
            )
        try:
            name, key = _to_name(spec)
        except ValueError as exc:
            return MXResult(spec, "nxdomain", detail=f"invalid domain name {spec!r}: {exc}")
        result, _ = await self._mx.get(key, lambda: self._lookup_mx(name, key))
        return self._spread(result)

    async def addresses(self, host: str) -> tuple[str, ...]:
        """The host's IPv4 addresses (then IPv6 ones when ``ipv6=True``); () if none.

        An IP address is returned as is. Temporary failures also give ().
        """
        spec = host.strip().strip("[]")
        with contextlib.suppress(ValueError):
            return (str(ipaddress.ip_address(spec)),)
        try:
            name, key = _to_name(spec)
        except ValueError:
            return ()
        found, _ = await self._host_addresses(name, key)
        return found.addresses

    async def txt(self, name: str) -> list[str] | None:
        """The TXT records of ``name``, each record's strings joined; None on NXDOMAIN/NODATA.

        Raises :class:`DNSTemporaryError` when the lookup failed temporarily.
        """
        try:
            qname, key = _to_name(name)
        except ValueError:
            return None
        found, _ = await self._txt.get(key, lambda: self._lookup_txt(qname))
        if found.status == "temp":
            raise DNSTemporaryError(found.detail)
        if found.status == "none":
            return None
        return list(found.strings)

    def clear(self) -> None:
        """Forget every cached answer."""
        self._mx.clear()
        self._addresses.clear()
        self._txt.clear()

    async def aclose(self) -> None:
        """Cancel lookups still in flight (at shutdown)."""
        await self._mx.aclose()
        await self._addresses.aclose()
        await self._txt.aclose()

    # ------------------------------------------------------------------ policies

    def _positive_ttl(self, ttl: float) -> float:
        return min(max(ttl, self.min_ttl), self.max_ttl)

    def _negative_ttl(self, ttl: float) -> float:
        return min(self.negative_ttl, max(self.min_ttl, ttl))

    def _spread(self, result: MXResult) -> MXResult:
        """Shuffle hosts of equal preference, keeping the preference order."""
        if len(result.hosts) < 2:
            return result
        groups: dict[int, list[MXHost]] = {}
        for host in result.hosts:
            groups.setdefault(host.preference, []).append(host)
        hosts: list[MXHost] = []
        for preference in sorted(groups):
            group = groups[preference]
            self._random.shuffle(group)
            hosts.extend(group)
        return dataclasses.replace(result, hosts=tuple(hosts))

    # ------------------------------------------------------------------- lookups

    async def _query(self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType) -> _Answer:
        self.stats["queries"] += 1
        label = f"{dns.rdatatype.to_text(rdtype)} {name.to_text(omit_final_dot=True)}"
        try:
            # dnspython checks its lifetime only between tries and may back off past it;
            # the outer deadline keeps one lookup within ``timeout``.
            async with asyncio.timeout(self.timeout):
                answer = await self._dns.resolve(
                    name, rdtype, raise_on_no_answer=False, search=False
                )
        except dns.resolver.NXDOMAIN as exc:
            return _Answer("nxdomain", ttl=_nxdomain_ttl(exc), detail=f"{label}: NXDOMAIN")
        except dns.resolver.YXDOMAIN:
            return _Answer("nxdomain", ttl=0.0, detail=f"{label}: YXDOMAIN")
        except (dns.resolver.LifetimeTimeout, TimeoutError):
            return _Answer("error", detail=f"{label}: no answer within {self.timeout:g} s")
        except dns.resolver.NoNameservers as exc:
            errors = exc.kwargs.get("errors") or []
            return _Answer("error", detail=f"{label}: {self._describe_errors(errors)}")
        except (dns.exception.DNSException, OSError) as exc:
            return _Answer("error", detail=f"{label}: {type(exc).__name__}: {exc}")
        ttl = float(answer.chaining_result.minimum_ttl)
        if answer.rrset is None:
            return _Answer("nodata", ttl=ttl, detail=f"{label}: no records")
        return _Answer("data", records=tuple(answer.rrset), ttl=ttl)

    async def _host_addresses(self, name: dns.name.Name, key: str) -> tuple[_Addresses, float]:
        return await self._addresses.get(key, lambda: self._lookup_addresses(name))

    async def _lookup_addresses(self, name: dns.name.Name) -> tuple[_Addresses, float]:
        rdtypes = [dns.rdatatype.A, dns.rdatatype.AAAA] if self.ipv6 else [dns.rdatatype.A]
        answers = await asyncio.gather(*(self._query(name, rdtype) for rdtype in rdtypes))
        found: list[str] = []
        ttls: list[float] = []
        errors: list[str] = []
        negative: list[_Answer] = []
        for answer in answers:
            if answer.kind == "data":
                for record in answer.records:
                    if isinstance(record, dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA):
                        found.append(str(record.address))
                ttls.append(answer.ttl)
            elif answer.kind == "error":
                errors.append(answer.detail)
            else:
                negative.append(answer)
        if found:
            ttl = self._positive_ttl(min(ttls))
            if errors:
                ttl = min(ttl, self.temp_fail_ttl)
            return _Addresses("ok", tuple(found)), ttl
        if errors:
            return _Addresses("temp", detail="; ".join(errors)), self.temp_fail_ttl
        if any(answer.kind == "nxdomain" for answer in negative):
            detail = "NXDOMAIN"
        else:
            detail = "no A or AAAA records" if self.ipv6 else "no A records"
        ttl = min((answer.ttl for answer in negative), default=self.negative_ttl)
        return _Addresses("none", detail=detail), self._negative_ttl(ttl)

    async def _lookup_txt(self, name: dns.name.Name) -> tuple[_Txt, float]:
        answer = await self._query(name, dns.rdatatype.TXT)
        if answer.kind == "error":
            return _Txt("temp", detail=answer.detail), self.temp_fail_ttl
        if answer.kind != "data":
            return _Txt("none", detail=answer.detail), self._negative_ttl(answer.ttl)
        strings = tuple(
            b"".join(record.strings).decode("utf-8", "replace")
            for record in answer.records
            if isinstance(record, dns.rdtypes.ANY.TXT.TXT)
        )
        return _Txt("ok", strings), self._positive_ttl(answer.ttl)

    async def _lookup_mx(self, name: dns.name.Name, domain: str) -> tuple[MXResult, float]:
        answer = await self._query(name, dns.rdatatype.MX)
        if answer.kind == "error":
            return MXResult(domain, "temp_fail", detail=answer.detail), self.temp_fail_ttl
        if answer.kind == "nxdomain":
            detail = f"{domain} does not exist (NXDOMAIN)"
            return MXResult(domain, "nxdomain", detail=detail), self._negative_ttl(answer.ttl)
        if answer.kind == "nodata":
            return await self._implicit_mx(name, domain, answer.ttl)

        exchanges: dict[str, tuple[int, dns.name.Name]] = {}
        for record in answer.records:
            if not isinstance(record, dns.rdtypes.ANY.MX.MX):
                continue
            if record.exchange == dns.name.root:
                continue  # "." is never a host to connect to (RFC 7505)
            host = record.exchange.to_text(omit_final_dot=True).lower()
            preference = int(record.preference)
            if host not in exchanges or preference < exchanges[host][0]:
                exchanges[host] = (preference, record.exchange)
        if not exchanges:
            detail = f"{domain} does not accept mail (null MX, RFC 7505)"
            return MXResult(domain, "null_mx", detail=detail), self._negative_ttl(answer.ttl)

        names = sorted(exchanges, key=lambda host: (exchanges[host][0], host))
        lookups = await asyncio.gather(
            *(self._host_addresses(exchanges[host][1].canonicalize(), host) for host in names)
        )
        hosts: list[MXHost] = []
        failures: list[str] = []
        temporary = False
        ttl = answer.ttl
        for host, (found, remaining) in zip(names, lookups, strict=True):
            if found.status == "ok":
                hosts.append(MXHost(exchanges[host][0], host, found.addresses))
                ttl = min(ttl, remaining)
            else:
                temporary = temporary or found.status == "temp"
                failures.append(f"{host} ({found.detail})")
        if hosts:
            ttl = self._positive_ttl(ttl)
            if temporary:
                ttl = min(ttl, self.temp_fail_ttl)
            return MXResult(domain, "ok", tuple(hosts)), ttl
        if temporary:
            detail = "no MX host could be resolved: " + "; ".join(failures)
            return MXResult(domain, "temp_fail", detail=detail), self.temp_fail_ttl
        detail = "no MX host has an address: " + "; ".join(failures)
        return MXResult(domain, "no_mail", detail=detail), self._negative_ttl(answer.ttl)

    async def _implicit_mx(
        self, name: dns.name.Name, domain: str, nodata_ttl: float
    ) -> tuple[MXResult, float]:
        found, remaining = await self._host_addresses(name, domain)
        if found.status == "ok":
            host = MXHost(0, domain, found.addresses)
            ttl = min(self._negative_ttl(nodata_ttl), self._positive_ttl(remaining))
            detail = "no MX records; the domain's own address is used"
            return MXResult(domain, "ok", (host,), implicit=True, detail=detail), ttl
        if found.status == "temp":
            detail = f"no MX records and the address lookup failed: {found.detail}"
            return MXResult(domain, "temp_fail", detail=detail), self.temp_fail_ttl
        kinds = "MX, A or AAAA" if self.ipv6 else "MX or A"
        detail = f"no {kinds} records"
        return MXResult(domain, "no_mail", detail=detail), self._negative_ttl(
            min(nodata_ttl, remaining)
        )
