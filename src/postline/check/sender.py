"""The sender checks of a message: its DNS, looked up now.

Sender (DNS, looked up now with the node's resolvers; the tenant's sender domain's
records when the tenant has the From domain, else what is published at the From
domain): ``dkim`` (will it be signed, by which ``d=``/``s=``, is the key published),
``spf`` (does the envelope sender's domain authorise this node), ``dmarc`` (is there a
policy; ``p=none`` is only monitoring), ``dmarc_alignment`` (will DMARC pass through
aligned DKIM or SPF), ``return_path`` (the bounce domain and its MX), ``sender_domain``
(``[domains] require_verified``), ``unsubscribe`` (RFC 8058 one-click for bulk
streams), and ``spamassassin`` when ``[check] spamd`` names a spamd.
"""

from __future__ import annotations

import asyncio
import email.policy
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from postline.check.findings import Finding, Status, is_bulk_stream
from postline.check.format import header_fields, header_text, split_header
from postline.config import Config
from postline.dkim import DnsRecord, RecordStatus, Signer, check
from postline.dkim.records import parse_tags
from postline.domains.finalize import from_domain
from postline.domains.service import DomainService, normalize_domain
from postline.errors import ValidationError
from postline.store.base import SenderDomain

__all__ = ["from_address", "sender_checks"]

# Second-level labels under which registrations happen (co.uk, com.au...): a rough
# organizational-domain rule for DMARC relaxed alignment without the public suffix list.
_SLD: Final = frozenset({"co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go"})


def _org(domain: str) -> str:
    """A rough organizational domain (RFC 7489 §3.2) without the public suffix list."""
    labels = domain.split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SLD:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _aligned(a: str, b: str) -> bool:
    """Relaxed DMARC alignment of two domains."""
    return bool(a) and bool(b) and _org(a.lower()) == _org(b.lower())


def _parents(domain: str) -> list[str]:
    """``domain`` and its parents with at least two labels (the DMARC tree walk)."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


@dataclass(slots=True)
class _Dmarc:
    status: str  # ok, missing, wrong, error
    name: str = ""
    policy: str = ""
    found: tuple[str, ...] = ()
    fix: str = ""


async def _one(record: DnsRecord, resolver: dns.asyncresolver.Resolver) -> RecordStatus:
    (result,) = await check([record], resolver)
    return result


async def _dmarc(domain: str, value: str, resolver: dns.asyncresolver.Resolver) -> _Dmarc:
    """The DMARC record that governs ``domain``: its own, else the nearest parent's."""
    names = _parents(domain)
    records = [DnsRecord("TXT", f"_dmarc.{name}", value, "dmarc") for name in names]
    results = await check(records, resolver)
    for name, result in zip(names, results, strict=True):
        if result.status == "missing":
            continue
        if result.status == "error":
            return _Dmarc("error", name, fix=result.fix)
        policy = ""
        if result.found:
            try:
                tags = parse_tags(result.found[0])
            except ValueError:
                tags = {}
            policy = tags.get("p", "")
            if name != domain and tags.get("sp"):
                policy = tags["sp"]
        return _Dmarc(result.status, name, policy.lower(), result.found, result.fix)
    return _Dmarc("missing")


async def _txt(name: str, resolver: dns.asyncresolver.Resolver) -> list[str] | None:
    """TXT strings at ``name`` ([] none, None: the lookup failed)."""
    try:
        answer = await resolver.resolve(
            name, dns.rdatatype.TXT, search=False, raise_on_no_answer=False
        )
    except dns.resolver.NXDOMAIN:
        return []
    except dns.exception.DNSException:
        return None
    if answer.rrset is None:
        return []
    return [b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset]


def _existing_signature(message: bytes) -> tuple[str, str] | None:
    """(d=, s=) of the first DKIM-Signature the message already carries."""
    head, _ = split_header(message)
    fields, _ = header_fields(head)
    for name, value in fields:
        if name == "dkim-signature":
            try:
                tags = parse_tags(header_text(value))
            except ValueError:
                return None
            d, s = tags.get("d", "").lower(), tags.get("s", "").lower()
            return (d, s) if d and s else None
    return None


def from_address(message: bytes) -> str | None:
    """The address of the message's From field (None when there is none)."""
    head, _ = split_header(message)
    fields, _ = header_fields(head)
    value = next((header_text(v) for name, v in fields if name == "from"), None)
    if value is None:
        return None
    address = email.utils.parseaddr(value)[1]
    return address if "@" in address else None


def _nearest(domains: Sequence[SenderDomain], name: str) -> SenderDomain | None:
    """The tenant's domain ``name`` is, or the nearest parent of ``name`` it has."""
    best: SenderDomain | None = None
    for d in domains:
        if (name == d.domain or name.endswith("." + d.domain)) and (
            best is None or len(d.domain) > len(best.domain)
        ):
            best = d
    return best


def _add_domain_fix(domain: str) -> str:
    return (
        f'add it with POST /v1/domains {{"domain": "{domain}"}}, publish the DNS records '
        f"it returns, then call POST /v1/domains/{domain}/verify; or send from a domain "
        "this account has verified"
    )


@dataclass(slots=True)
class _Sender:
    """What the DNS checks share."""

    config: Config
    resolver: dns.asyncresolver.Resolver
    domains: DomainService | None
    tenant_id: str | None
    stream: str
    bulk: bool
    from_domain: str
    envelope_domain: str
    node_spf: str | None
    dmarc_value: str
    public_url: str
    records: dict[str, RecordStatus] = field(default_factory=dict)
    sender_domain: SenderDomain | None = None
    signer: Signer | None = None


def _spf_severity(s: _Sender, dkim_ok: bool) -> Status:
    return "error" if s.bulk or not dkim_ok else "warning"


async def sender_checks(
    message: bytes,
    *,
    config: Config,
    resolver: dns.asyncresolver.Resolver,
    domains: DomainService | None,
    tenant_id: str | None,
    stream: str,
    mail_from: str | None,
    public_url: str | None,
) -> tuple[list[Finding], Signer | None]:
    raw_domain = from_domain(message)
    try:
        fd = normalize_domain(raw_domain)
    except ValidationError:
        return [
            Finding(
                "dkim",
                "error",
                "the From header names no usable domain, so nothing about the sender can "
                "be checked",
                "fix the From header",
            )
        ], None
    envelope = config.bounce.domain or (
        (mail_from or "").rpartition("@")[2].lower().rstrip(".") or fd
    )
    node_spf = domains.spf if domains is not None else (config.domains.spf or _default_spf(config))
    dmarc_value = "v=DMARC1; p=none"
    if config.domains.dmarc_rua:
        dmarc_value += f"; rua=mailto:{config.domains.dmarc_rua.removeprefix('mailto:')}"
    s = _Sender(
        config=config,
        resolver=resolver,
        domains=domains,
        tenant_id=tenant_id,
        stream=stream,
        bulk=is_bulk_stream(stream, config),
        from_domain=fd,
        envelope_domain=envelope,
        node_spf=node_spf,
        dmarc_value=dmarc_value,
        public_url=public_url or config.api.public_url or f"http://{config.api.listen}",
    )
    if domains is not None and tenant_id is not None:
        s.signer = domains.signer_for(tenant_id, fd)
        owned = await domains.all(tenant_id)
        s.sender_domain = _nearest(owned, fd)
        if s.signer is not None:
            signing = next((d for d in owned if d.domain == s.signer.key.domain), None)
            s.sender_domain = signing or s.sender_domain
    # Every lookup at once: the sender domain's records (or what the From domain
    # publishes), the envelope domain's SPF, DMARC, and the bounce domain's MX.
    wanted: dict[str, DnsRecord] = {}
    if s.sender_domain is not None and domains is not None:
        for record in domains.records(s.sender_domain):
            key = record.purpose
            if record.purpose == "dkim":
                if s.signer is not None and record.name.startswith(
                    f"{s.signer.key.selector}._domainkey."
                ):
                    key = "dkim"
                elif "dkim" in wanted:
                    continue
            wanted[key] = record
    else:
        if node_spf is not None:
            wanted["spf"] = DnsRecord("TXT", fd, f"v=spf1 {node_spf} ~all", "spf")
        if config.bounce.domain:
            wanted["return_path"] = DnsRecord(
                "MX", config.bounce.domain, f"10 {config.hostname}", "return_path"
            )
    wanted.pop("dmarc", None)
    spf_domain = wanted["spf"].name if "spf" in wanted else fd
    if envelope != spf_domain and node_spf is not None:
        wanted["spf_envelope"] = DnsRecord("TXT", envelope, f"v=spf1 {node_spf} ~all", "spf")
    keys = list(wanted)
    results, dmarc, existing_key = await asyncio.gather(
        check([wanted[k] for k in keys], resolver),
        _dmarc(fd, dmarc_value, resolver),
        _existing_key(message, resolver, tenant_id),
    )
    s.records = dict(zip(keys, results, strict=True))
    out: list[Finding] = []
    dkim_finding, dkim_aligned = _dkim(s, message, existing_key)
    out.append(dkim_finding)
    out += _spf(s, dkim_aligned)
    env_spf = _envelope_spf(s)
    spf_aligned = _aligned(envelope, fd) and env_spf is not None and env_spf.status == "ok"
    out += _dmarc_findings(s, dmarc, dkim_aligned, spf_aligned)
    out.append(_return_path(s, mail_from))
    out.append(_unsubscribe(s, message))
    if domains is not None and tenant_id is not None and config.domains.require_verified:
        if domains.is_verified(tenant_id, fd):
            out.append(Finding("sender_domain", "ok", f"{fd} is a verified sender domain"))
        else:
            out.append(
                Finding(
                    "sender_domain",
                    "error",
                    f"this node refuses mail from {fd}: it is not a verified sender domain of "
                    "this account ([domains] require_verified)",
                    _add_domain_fix(_org(fd)),
                )
            )
    return out, s.signer


def _default_spf(config: Config) -> str | None:
    return DomainService._default_spf(config)


async def _existing_key(
    message: bytes, resolver: dns.asyncresolver.Resolver, tenant_id: str | None
) -> tuple[str, str, bool | None] | None:
    """For a check without a tenant: (d, s, key published?) of a signature the message
    carries already (None: lookup failed)."""
    if tenant_id is not None:
        return None
    found = _existing_signature(message)
    if found is None:
        return None
    d, s = found
    values = await _txt(f"{s}._domainkey.{d}", resolver)
    if values is None:
        return d, s, None
    published = any(re.search(r"(?:^|;)\s*p\s*=\s*[A-Za-z0-9+/]", v) for v in values)
    return d, s, published


def _dkim(
    s: _Sender, message: bytes, existing: tuple[str, str, bool | None] | None
) -> tuple[Finding, bool]:
    fd = s.from_domain
    if s.tenant_id is None or s.domains is None:
        if existing is not None:
            d, sel, published = existing
            aligned = _aligned(d, fd)
            if published is None:
                return Finding(
                    "dkim",
                    "warning",
                    f"the message is signed (d={d} s={sel}) but the lookup of its key failed",
                    "check again later",
                ), aligned
            if not published:
                return Finding(
                    "dkim",
                    "error",
                    f"the message is signed (d={d} s={sel}) but {sel}._domainkey.{d} "
                    "publishes no key: receivers fail the signature",
                    f"publish the public key at TXT {sel}._domainkey.{d}",
                ), False
            note = "aligned with From" if aligned else f"not aligned with From ({fd})"
            return Finding(
                "dkim",
                "ok" if aligned else "warning",
                f"signed with d={d} s={sel}, key published, {note}",
                "" if aligned else f"sign with a key of {_org(fd)}",
            ), aligned
        return Finding(
            "dkim",
            "warning",
            "no tenant given: whether postline signs this message depends on the tenant's "
            f"verified sender domains ({fd} or a parent of it)",
            "run the check with --tenant NAME, or through POST /v1/messages/check",
        ), False
    sd = s.sender_domain
    record = s.records.get("dkim")
    if sd is None:
        return Finding(
            "dkim",
            "error",
            f"{fd} is not a sender domain of this account: its mail is sent without a "
            "DKIM signature, and Gmail, Yahoo and Microsoft reject or spam-file unsigned "
            "bulk mail",
            _add_domain_fix(_org(fd)),
        ), False
    if s.signer is None:
        fix = (record.fix if record is not None and record.fix else "") or (
            f"publish the DKIM record of {sd.domain} (GET /v1/domains/{sd.domain})"
        )
        return Finding(
            "dkim",
            "error",
            f"{sd.domain} is a sender domain of this account but not verified (status "
            f"{sd.status}): its mail is sent without a DKIM signature",
            f"{fix}; then call POST /v1/domains/{sd.domain}/verify",
        ), False
    key = s.signer.key
    signed = f"d={key.domain} s={key.selector} a={key.algorithm}"
    if record is None or record.status == "error":
        why = record.fix if record is not None else "no record to look up"
        return Finding(
            "dkim",
            "warning",
            f"signed with {signed}, aligned with From ({fd}); the key record could not be "
            f"looked up now ({why})",
            "check again later",
        ), True
    if record.status != "ok":
        return Finding(
            "dkim",
            "error",
            f"signed with {signed}, but the key record {record.record.name} is "
            f"{record.status}: receivers fail the signature",
            record.fix,
        ), False
    return Finding(
        "dkim",
        "ok",
        f"signed with {signed}, aligned with From ({fd}); key record "
        f"{record.record.name} published",
    ), True


def _envelope_spf(s: _Sender) -> RecordStatus | None:
    return s.records.get("spf_envelope") or s.records.get("spf")


def _spf(s: _Sender, dkim_ok: bool) -> list[Finding]:
    out: list[Finding] = []
    env = _envelope_spf(s)
    if env is None:
        return [
            Finding(
                "spf",
                "warning",
                "SPF cannot be checked: this node does not know the address it sends from "
                f"(host name {s.config.hostname!r}, no source address configured)",
                "set [[delivery.sources]] or [delivery] source_address to the node's public "
                "address, or [domains] spf to the mechanism senders must include",
            )
        ]
    via = f"the envelope sender (return path) is in {s.envelope_domain}, whose SPF receivers check"
    if env.status == "ok":
        out.append(
            Finding(
                "spf",
                "ok",
                f"SPF of {env.record.name} authorises this node ({env.found[0]}); {via}",
            )
        )
    elif env.status == "error":
        out.append(Finding("spf", "warning", f"SPF of {env.record.name}: {env.fix}", ""))
    else:
        published = f" (published: {'; '.join(env.found)})" if env.found else ""
        out.append(
            Finding(
                "spf",
                _spf_severity(s, dkim_ok),
                f"SPF of {env.record.name} is {env.status}{published}: receivers cannot "
                f"tell that this node may send for it; {via}",
                env.fix,
            )
        )
    if "spf_envelope" in s.records:
        own = s.records["spf"]
        if own.status == "ok":
            out.append(Finding("spf", "ok", f"SPF of {own.record.name} authorises this node too"))
        else:
            out.append(
                Finding(
                    "spf",
                    "warning",
                    f"SPF of the From domain {own.record.name} is {own.status}; this message's "
                    f"SPF is checked on {s.envelope_domain}, but mail sent with a return path "
                    f"in {own.record.name} would fail",
                    own.fix or "check again later",
                )
            )
    return out


def _dmarc_findings(
    s: _Sender, dmarc: _Dmarc, dkim_aligned: bool, spf_aligned: bool
) -> list[Finding]:
    fd = s.from_domain
    target = s.sender_domain.domain if s.sender_domain is not None else _org(fd)
    publish = f"publish TXT _dmarc.{target} with value {s.dmarc_value}"
    out: list[Finding] = []
    bulk_note = "Gmail and Yahoo require a DMARC record of bulk senders"
    if dmarc.status == "error":
        out.append(Finding("dmarc", "warning", f"DMARC of {fd}: {dmarc.fix}", ""))
    elif dmarc.status == "missing":
        out.append(
            Finding(
                "dmarc",
                "error" if s.bulk else "warning",
                f"no DMARC record at _dmarc.{fd} or a parent domain; {bulk_note}",
                publish,
            )
        )
    elif dmarc.status == "wrong":
        out.append(
            Finding(
                "dmarc",
                "error" if s.bulk else "warning",
                f"the DMARC record of {dmarc.name} is not usable, so receivers apply none: "
                f"{dmarc.fix}",
                dmarc.fix or publish,
            )
        )
    elif dmarc.policy == "none":
        inherited = f" (of {dmarc.name})" if dmarc.name != fd else ""
        out.append(
            Finding(
                "dmarc",
                "warning" if s.bulk else "ok",
                f"DMARC p=none{inherited}: it meets the Gmail/Yahoo requirement, but asks "
                "receivers to do nothing with mail that fails DMARC (monitoring only)",
                f"once the aggregate reports show all your mail passing, move _dmarc."
                f"{dmarc.name} to p=quarantine, then p=reject"
                if s.bulk
                else "",
            )
        )
    else:
        inherited = f" (of {dmarc.name})" if dmarc.name != fd else ""
        out.append(Finding("dmarc", "ok", f"DMARC p={dmarc.policy}{inherited}"))
    strict = dmarc.status == "ok" and dmarc.policy in ("quarantine", "reject")
    if dkim_aligned:
        out.append(Finding("dmarc_alignment", "ok", f"DMARC passes through DKIM aligned with {fd}"))
    elif spf_aligned:
        out.append(
            Finding(
                "dmarc_alignment",
                "ok",
                f"DMARC passes through SPF: the return path {s.envelope_domain} is aligned "
                f"with {fd}",
            )
        )
    elif s.tenant_id is None:
        out.append(
            Finding(
                "dmarc_alignment",
                "warning",
                f"DMARC passes only with a DKIM signature by {fd} (or a parent), which "
                "depends on the tenant",
                "run the check with --tenant NAME",
            )
        )
    else:
        verb = "reject" if dmarc.policy == "reject" else "spam-file"
        consequence = (
            f"with p={dmarc.policy} receivers {verb} it"
            if strict
            else "Gmail and Yahoo require alignment of bulk senders"
        )
        out.append(
            Finding(
                "dmarc_alignment",
                "error" if strict or s.bulk else "warning",
                f"DMARC fails for {fd}: no DKIM signature aligned with it, and the return path "
                f"{s.envelope_domain} is not aligned with it; {consequence}",
                _add_domain_fix(_org(fd))
                if s.signer is None
                else "sign with a key of the From domain",
            )
        )
    return out


def _return_path(s: _Sender, mail_from: str | None) -> Finding:
    bounce = s.config.bounce.domain
    if not bounce:
        sender = mail_from or f"an address at {s.from_domain}"
        return Finding(
            "return_path",
            "warning",
            f"no [bounce] domain: the envelope sender is {sender} itself, so bounces and "
            "complaints go to that mailbox and postline never sees them (no automatic "
            "suppression of dead addresses)",
            "set [bounce] domain on the node and publish an MX for it naming this node",
        )
    record = s.records.get("return_path")
    if record is None:
        return Finding("return_path", "warning", f"the return path is b-…@{bounce}", "")
    if record.status == "ok":
        return Finding(
            "return_path",
            "ok",
            f"bounces come back to b-…@{bounce} (MX {', '.join(record.found)})",
        )
    if record.status == "error":
        return Finding("return_path", "warning", f"MX of {bounce}: {record.fix}", "")
    return Finding(
        "return_path",
        "error",
        f"the return path domain {bounce} has {record.status} MX: bounces cannot come back, "
        "and receivers that verify the sender refuse the message",
        record.fix,
    )


def _one_click_own(message: bytes) -> tuple[bool, bool]:
    """(has List-Unsubscribe, has its own RFC 8058 one-click: https URI and the Post field)."""
    head, _ = split_header(message)
    fields, _ = header_fields(head)
    found = {name: header_text(value) for name, value in fields}
    lu = found.get("list-unsubscribe")
    if lu is None:
        return False, False
    post = found.get("list-unsubscribe-post", "").replace(" ", "").lower()
    return True, "<https://" in lu.lower() and post == "list-unsubscribe=one-click"


def _unsubscribe(s: _Sender, message: bytes) -> Finding:
    config = s.config
    has_own, own_one_click = _one_click_own(message)
    if s.stream in config.domains.list_unsubscribe_streams:
        if has_own:
            return Finding(
                "unsubscribe",
                "warning",
                "the message has a List-Unsubscribe header of its own, and postline adds "
                f"another to mail of stream {s.stream!r}: receivers see two",
                "leave List-Unsubscribe out of the message; postline adds a per-recipient "
                "one-click link",
            )
        public = s.public_url
        mailto = f" and <mailto:u-…@{config.bounce.domain}>" if config.bounce.domain else ""
        if not public.startswith("https://"):
            return Finding(
                "unsubscribe",
                "error",
                f"stream {s.stream!r} gets one-click List-Unsubscribe at send time, but the "
                f"link would be {public.rstrip('/')}/u/…: RFC 8058 one-click needs an https "
                "URI that receivers reach, which Gmail and Yahoo require of bulk senders",
                "set [api] public_url to the https URL under which receivers reach this node's API",
            )
        signed = ", covered by the DKIM signature" if s.signer is not None else ""
        return Finding(
            "unsubscribe",
            "ok",
            f"one-click unsubscribe: List-Unsubscribe <{public.rstrip('/')}/u/…>{mailto} "
            "and List-Unsubscribe-Post: List-Unsubscribe=One-Click (RFC 8058) are added "
            f"for each recipient at send time{signed}",
        )
    if s.bulk:
        if own_one_click:
            return Finding(
                "unsubscribe",
                "ok",
                "the message carries its own one-click List-Unsubscribe (RFC 8058)",
            )
        return Finding(
            "unsubscribe",
            "warning",
            f"stream {s.stream!r} looks like bulk mail but is not in [domains] "
            "list_unsubscribe_streams, so no List-Unsubscribe is added; Gmail and Yahoo "
            "require one-click unsubscribe of bulk senders",
            f"add {s.stream!r} to [domains] list_unsubscribe_streams, or send it on "
            f"a stream that is there ({', '.join(config.domains.list_unsubscribe_streams)})"
            if config.domains.list_unsubscribe_streams
            else f"add {s.stream!r} to [domains] list_unsubscribe_streams",
        )
    return Finding(
        "unsubscribe",
        "ok",
        f"stream {s.stream!r} is not bulk mail: no List-Unsubscribe is needed",
    )
