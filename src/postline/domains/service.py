"""Sender domains of tenants: keys, records, verification, and the signers of outbound mail.

``POST /v1/domains`` → :meth:`DomainService.create` makes a DKIM key (sealed at rest with
the node's ``[domains] key_secret``) and answers the records to publish (DKIM, SPF,
DMARC, return path). :meth:`verify` looks them up (the node's resolvers) and stores the
result: a domain is *verified* when the DKIM record of its signing key is published as
given; SPF, DMARC and return path are reported with fixes but do not block sending.

The delivery engine signs synchronously at send time, so signers live in memory:
:meth:`refresh` loads every verified domain's active key (all tenants, so a fleet's nodes
agree within ``refresh_interval``) and :meth:`signer_for` answers from that cache. A
rotation adds a *pending* key whose record is shown next to the active one; the first
verification that finds it published makes it the signing key and retires the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

from postline.config import Config
from postline.dkim import (
    Algorithm,
    DnsRecord,
    RecordStatus,
    Signer,
    check,
    expected_records,
    make_resolver,
    master_key,
    new_key,
    seal,
    unseal,
)
from postline.dkim import DkimKey as SigningKey
from postline.errors import StoreUnavailable, ValidationError
from postline.store.base import DkimKeyRecord, SenderDomain, Store

__all__ = ["ALGORITHMS", "DomainService", "normalize_domain"]

log = logging.getLogger(__name__)

ALGORITHMS: dict[str, tuple[Algorithm, int]] = {
    "rsa-2048": ("rsa-sha256", 2048),
    "rsa-3072": ("rsa-sha256", 3072),
    "rsa-4096": ("rsa-sha256", 4096),
    "ed25519": ("ed25519-sha256", 0),
}


def normalize_domain(value: str) -> str:
    """A sender domain in lower-case ASCII (IDNA) form; ValidationError when it is none."""
    text = value.strip().rstrip(".").lower()
    try:
        ascii_name = text.encode("idna").decode("ascii") if text else ""
    except UnicodeError:
        ascii_name = ""
    labels = ascii_name.split(".")
    ok = (
        len(labels) >= 2
        and len(ascii_name) <= 253
        and all(
            0 < len(label) <= 63
            and label[0] != "-"
            and label[-1] != "-"
            and all(c.isalnum() or c == "-" for c in label)
            for label in labels
        )
        and not labels[-1].isdigit()
    )
    if not ok:
        raise ValidationError(
            f"{value!r} is not a domain name",
            field="domain",
            fix="give the domain of your From addresses, e.g. 'shop.example.com'",
        )
    return ascii_name


def _aligned(from_domain: str, domain: str) -> bool:
    """Relaxed DMARC alignment: the From domain is the signing domain or below it."""
    return from_domain == domain or from_domain.endswith("." + domain)


class DomainService:
    def __init__(self, store: Store, config: Config, *, secret: str) -> None:
        self.store = store
        self.config = config
        self._master = master_key(secret)
        d = config.domains
        self.require_verified = d.require_verified
        self.default_algorithm = d.dkim_algorithm
        self.spf = d.spf or self._default_spf(config)
        self.dmarc_rua = d.dmarc_rua or None
        self.bounce_domain = config.bounce.domain or None
        self.refresh_interval = 30.0
        self.recheck_interval = d.recheck_interval
        self._resolver = make_resolver(config.dns.nameservers, timeout=config.dns.timeout)
        self._signers: dict[tuple[str, str], Signer] = {}
        self._verified: dict[str, set[str]] = {}
        self._refresh_lock = asyncio.Lock()

    def _bounce_mx(self) -> str | None:
        """The host the bounce domain's MX should name: this node's name when it is a
        fully qualified one, else any host."""
        host = self.config.hostname.rstrip(".")
        return host if self.bounce_domain and "." in host else None

    @staticmethod
    def _default_spf(config: Config) -> str | None:
        """The SPF mechanisms naming what this node sends from: the addresses of its
        sources, else its host name's A/AAAA records when the name is a public one;
        None when it knows neither (a bare ``a`` would authorise the sender domain's
        own web server, not this node)."""
        addresses = [s.address for s in config.delivery.sources] or (
            [config.delivery.source_address] if config.delivery.source_address else []
        )
        if addresses:
            return " ".join(f"ip6:{a}" if ":" in a else f"ip4:{a}" for a in addresses)
        host = config.hostname.rstrip(".").lower()
        return f"a:{host}" if _public_name(host) else None

    def notes(self) -> list[dict[str, str]]:
        """The records a domain is not asked to publish on this node, and why."""
        out: list[dict[str, str]] = []
        if self.spf is None:
            out.append(
                {
                    "purpose": "spf",
                    "detail": "No SPF record is suggested: this node does not know the "
                    f"address it sends from (its host name {self.config.hostname!r} is "
                    "not a public name, and no source address is configured).",
                    "fix": "Set [[delivery.sources]] or [delivery] source_address to the "
                    "node's public address, or [domains] spf to the mechanism senders "
                    "must include (e.g. 'include:_spf.mail.example').",
                }
            )
        if self.bounce_domain is None:
            out.append(
                {
                    "purpose": "return_path",
                    "detail": "No return-path record is asked for: without [bounce] domain "
                    "the envelope sender stays in the sender's own domain, so bounces "
                    "that arrive after delivery go to that domain's mail servers, not to "
                    "this node (synchronous refusals are still seen).",
                    "fix": "Set [bounce] domain to a domain whose MX names this node to "
                    "receive every bounce and complaint.",
                }
            )
        return out

    # -- keys -------------------------------------------------------------------------
    def _context(self, tenant_id: str, domain: str) -> bytes:
        return f"{tenant_id}\x00{domain}".encode()

    def _new_key(self, tenant_id: str, domain: str, algorithm: str, state: str) -> DkimKeyRecord:
        if algorithm not in ALGORITHMS:
            raise ValidationError(
                f"unknown key algorithm {algorithm!r}",
                field="algorithm",
                fix=f"use one of {', '.join(ALGORITHMS)}",
            )
        alg, bits = ALGORITHMS[algorithm]
        key = new_key(domain, alg, bits=bits or 2048)
        return DkimKeyRecord(
            selector=key.selector,
            algorithm=alg,
            public_key=key.public_key,
            private_sealed=seal(
                key.private_pem, self._master, context=self._context(tenant_id, domain)
            ),
            created_at=time.time(),
            state=state,
        )

    async def _selectors(self, domain: str) -> set[str]:
        """Every selector any tenant has for ``domain``: two tenants that send for one
        domain publish two keys, so they need two names."""
        return {
            k.selector
            for d in await self.store.list_sender_domains(None)
            if d.domain == domain
            for k in d.keys
        }

    # -- management -------------------------------------------------------------------
    async def create(
        self, tenant_id: str, domain: str, algorithm: str | None = None
    ) -> SenderDomain | None:
        """A new domain with its first key; None when the tenant has it already."""
        name = normalize_domain(domain)
        key = self._new_key(tenant_id, name, algorithm or self.default_algorithm, "active")
        key = _unique(key, await self._selectors(name))
        record = SenderDomain(tenant_id, name, time.time(), keys=(key,))
        if not await self.store.add_sender_domain(record):
            return None
        return record

    async def get(self, tenant_id: str, domain: str) -> SenderDomain | None:
        return await self.store.get_sender_domain(tenant_id, normalize_domain(domain))

    async def all(self, tenant_id: str) -> list[SenderDomain]:
        return await self.store.list_sender_domains(tenant_id)

    async def remove(self, tenant_id: str, domain: str) -> bool:
        removed = await self.store.remove_sender_domain(tenant_id, normalize_domain(domain))
        if removed:
            await self.refresh()
        return removed

    async def rotate(
        self, tenant_id: str, domain: str, algorithm: str | None = None
    ) -> SenderDomain | None:
        """Add a pending key (any earlier pending one is retired); it signs once its
        record is found published."""
        current = await self.get(tenant_id, domain)
        if current is None:
            return None
        algorithm = algorithm or next(
            (n for n, (a, _) in ALGORITHMS.items() if a == self._active(current).algorithm),
            self.default_algorithm,
        )
        key = self._new_key(tenant_id, current.domain, algorithm, "pending")
        key = _unique(key, await self._selectors(current.domain))
        stale = {k.selector: "retired" for k in current.keys if k.state == "pending"}
        if stale:
            await self.store.update_sender_domain(
                tenant_id,
                current.domain,
                status=current.status,
                checked_at=current.checked_at or time.time(),
                verified_at=current.verified_at,
                check=current.check,
                key_states=stale,
            )
        await self.store.add_dkim_key(tenant_id, current.domain, key)
        return await self.get(tenant_id, current.domain)

    @staticmethod
    def _active(domain: SenderDomain) -> DkimKeyRecord:
        for k in domain.keys:
            if k.state == "active":
                return k
        return domain.keys[-1]

    # -- records ----------------------------------------------------------------------
    def records(self, domain: SenderDomain) -> list[DnsRecord]:
        """What to publish: the records of the active key, plus a pending key's DKIM."""
        active = self._active(domain)
        out = expected_records(
            domain.domain,
            active.selector,
            active.public_key,
            cast(Algorithm, active.algorithm),
            spf=self.spf,
            bounce_domain=self.bounce_domain,
            bounce_mx=self._bounce_mx(),
            dmarc_rua=self.dmarc_rua,
        )
        for k in domain.keys:
            if k.state == "pending":
                out.insert(
                    1,
                    expected_records(
                        domain.domain,
                        k.selector,
                        k.public_key,
                        cast(Algorithm, k.algorithm),
                        spf=self.spf,
                    )[0],
                )
        return out

    async def verify(
        self, tenant_id: str, domain: str
    ) -> tuple[SenderDomain, list[RecordStatus]] | None:
        current = await self.get(tenant_id, domain)
        if current is None:
            return None
        results = await check(self.records(current), self._resolver)
        dkim_ok = {
            r.record.name.split("._domainkey.", 1)[0]
            for r in results
            if r.record.purpose == "dkim" and r.ok
        }
        active = self._active(current)
        states: dict[str, str] = {}
        pending = [k for k in current.keys if k.state == "pending"]
        for k in pending:
            if k.selector in dkim_ok:
                states[k.selector] = "active"
                states[active.selector] = "retired"
                active = k
        now = time.time()
        verified = active.selector in dkim_ok
        verified_at: float | None
        if verified:
            status, verified_at = "verified", now
        else:
            status = "failed" if current.status in ("verified", "failed") else "pending"
            verified_at = current.verified_at
        await self.store.update_sender_domain(
            tenant_id,
            current.domain,
            status=status,
            checked_at=now,
            verified_at=verified_at,
            check=json.dumps([_status_json(r) for r in results]),
            key_states=states or None,
        )
        await self.refresh()
        updated = await self.get(tenant_id, current.domain)
        assert updated is not None
        return updated, results

    # -- sending ----------------------------------------------------------------------
    async def refresh(self) -> None:
        """Load the signing keys of every verified domain (all tenants)."""
        async with self._refresh_lock:
            domains = await self.store.list_sender_domains(None)
            signers: dict[tuple[str, str], Signer] = {}
            verified: dict[str, set[str]] = {}
            for d in domains:
                if d.status != "verified":
                    continue
                verified.setdefault(d.tenant_id, set()).add(d.domain)
                key = self._active(d)
                try:
                    pem = unseal(
                        key.private_sealed,
                        self._master,
                        context=self._context(d.tenant_id, d.domain),
                    )
                except Exception:
                    log.error(
                        "cannot open the DKIM key %s of %s (wrong [domains] key_secret?)",
                        key.selector,
                        d.domain,
                        extra={"action": "domains.key_sealed"},
                    )
                    continue
                signing = SigningKey(d.domain, key.selector, cast(Algorithm, key.algorithm), pem)
                signers[(d.tenant_id, d.domain)] = Signer(signing)
            self._signers = signers
            self._verified = verified

    def signs_for(self, tenant_id: str) -> bool:
        """Whether the tenant has any verified domain (else nothing of it is signed)."""
        return tenant_id in self._verified

    def signer_for(self, tenant_id: str, from_domain: str) -> Signer | None:
        """The signer of the verified domain the From domain aligns with (itself or the
        nearest parent the tenant verified)."""
        name = from_domain.lower().rstrip(".")
        while True:
            signer = self._signers.get((tenant_id, name))
            if signer is not None:
                return signer
            if name.count(".") < 2:
                return None
            name = name.split(".", 1)[1]

    def is_verified(self, tenant_id: str, from_domain: str) -> bool:
        name = from_domain.lower().rstrip(".")
        return any(_aligned(name, d) for d in self._verified.get(tenant_id, ()))

    def check_sender(self, tenant_id: str, from_domain: str) -> None:
        """ValidationError when sending from ``from_domain`` is refused."""
        if not self.require_verified or self.is_verified(tenant_id, from_domain):
            return
        raise ValidationError(
            f"the sender domain {from_domain!r} is not a verified sender domain of this account",
            field="from",
            fix="add it with POST /v1/domains, publish the records it returns and call "
            f"POST /v1/domains/{from_domain}/verify; or send from a verified domain",
        )

    async def run(self) -> None:
        """Keep the signer cache fresh; re-verify verified domains now and then."""
        last_recheck = time.time()
        while True:
            with contextlib.suppress(Exception):
                await self.refresh()
            await asyncio.sleep(self.refresh_interval)
            if time.time() - last_recheck >= self.recheck_interval:
                last_recheck = time.time()
                try:
                    await self._recheck()
                except StoreUnavailable as exc:  # logged with the store's outage
                    self.store.health.failed("maintenance", exc)
                except Exception:
                    log.exception("re-check of sender domains failed")

    async def _recheck(self) -> None:
        for d in await self.store.list_sender_domains(None):
            if d.status == "verified":
                try:
                    await self.verify(d.tenant_id, d.domain)
                except Exception:
                    log.exception("re-check of %s failed", d.domain)


def _status_json(r: RecordStatus) -> dict[str, Any]:
    out = dataclasses.asdict(r.record)
    out.update(status=r.status, found=list(r.found), fix=r.fix)
    return out


def record_json(r: DnsRecord) -> dict[str, Any]:
    """A record as the API shows it: its fields, its TXT strings and a zone-file line."""
    return {**dataclasses.asdict(r), "strings": r.strings, "zone": r.zone}


def _public_name(host: str) -> bool:
    """Whether ``host`` looks like a name others can look up (not ``localhost`` or a
    name without a dot)."""
    labels = host.split(".")
    return len(labels) >= 2 and not (
        labels[-1] in ("localhost", "localdomain", "local", "internal", "lan", "home")
        or labels[0] == "localhost"
    )


def statuses(domain: SenderDomain) -> Sequence[dict[str, Any]]:
    """The per-record results of the last check."""
    try:
        data = json.loads(domain.check)
    except ValueError:
        return []
    return data if isinstance(data, list) else []


def _unique(key: DkimKeyRecord, taken: set[str]) -> DkimKeyRecord:
    """``key`` under a selector none of ``taken`` uses: its own, else with a letter
    added (``pl202611r`` → ``pl202611rb``, ``pl202611rc``...)."""
    if key.selector not in taken:
        return key
    for letter in "bcdefghijklmnopqrstuvwxyz":
        candidate = key.selector + letter
        if candidate not in taken:
            return dataclasses.replace(key, selector=candidate)
    raise ValidationError(
        "too many keys for this domain this month",
        field="domain",
        fix="retire or delete keys of this domain, or try again next month",
    )
