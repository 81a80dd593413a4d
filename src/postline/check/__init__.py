"""Pre-flight check of one message: what receivers would object to, before it is sent.

:func:`check_message` looks at the bytes postline would send and at the DNS of the sender,
the way Gmail's and Yahoo's sender requirements, Microsoft's and SpamAssassin do, and
answers a :class:`CheckReport`: one :class:`Finding` per check — ``ok``, ``warning``
(receivers may hold it against the message) or ``error`` (receivers reject it, file it
as spam, or the mail fails authentication) — each with a ``fix``.

The checks live by concern: :mod:`postline.check.format` (the bytes, no I/O),
:mod:`postline.check.sender` (DKIM, SPF, DMARC, return path, unsubscribe: DNS looked up
now), :mod:`postline.check.spam` (SpamAssassin through spamd); the results are
:mod:`postline.check.findings`.
"""

from __future__ import annotations

import asyncio

import dns.asyncresolver

from postline.check.findings import CheckReport, Finding, Status, is_bulk_stream
from postline.check.format import check_format
from postline.check.sender import from_address, sender_checks
from postline.check.spam import spam_check, spamd_client
from postline.check.spamd import SpamdClient
from postline.config import Config
from postline.dkim import make_resolver
from postline.domains.finalize import from_domain
from postline.domains.service import DomainService

__all__ = [
    "CheckReport",
    "Finding",
    "Status",
    "check_format",
    "check_message",
    "is_bulk_stream",
    "spamd_client",
]


async def check_message(
    message: bytes,
    *,
    tenant_id: str | None,
    stream: str,
    domains: DomainService | None,
    config: Config,
    spamd: SpamdClient | None,
    mail_from: str | None = None,
    public_url: str | None = None,
    resolver: dns.asyncresolver.Resolver | None = None,
) -> CheckReport:
    """Check ``message`` (the bytes postline would send) before it is sent.

    ``tenant_id`` None: no account — the DKIM check cannot tell whether postline signs
    and the DNS checks report what the From domain publishes. ``mail_from``: the
    envelope sender when there is no bounce domain (default: the From address).
    ``public_url``: where one-click links point (default ``[api] public_url``, else
    ``http://`` and ``[api] listen``). ``resolver``: default the node's
    ``[dns] nameservers``.
    """
    if resolver is None:
        resolver = make_resolver(config.dns.nameservers, timeout=config.dns.timeout)
    if mail_from is None:
        mail_from = from_address(message)
    # Parsing a large message takes a while: not on the event loop.
    findings = await asyncio.to_thread(
        check_format, message, max_size=config.submission.max_message_size
    )
    sender, signer = await sender_checks(
        message,
        config=config,
        resolver=resolver,
        domains=domains,
        tenant_id=tenant_id,
        stream=stream,
        mail_from=mail_from,
        public_url=public_url,
    )
    findings += sender
    verdict = None
    if spamd is not None:
        scanned = message
        if signer is not None:
            try:
                scanned = signer.sign(message) + message
            except Exception:
                scanned = message
        finding, verdict = await spam_check(scanned, spamd)
        findings.append(finding)
    return CheckReport(
        findings,
        from_domain=from_domain(message),
        stream=stream,
        size=len(message),
        spam=verdict,
    )
