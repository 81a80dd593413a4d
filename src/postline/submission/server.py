"""SMTP submission: authenticated clients (AUTH over TLS) or trusted networks only.

No open relay: a client that neither authenticated nor connects from
``[submission] trusted_networks`` gets ``530 5.7.0 Authentication required`` at MAIL.
AUTH is offered only after STARTTLS; failed AUTH locks a user name out for a while
(``[submission] auth_lockout_*``), never a client in ``trusted_networks``. The 250
after DATA is sent only once the message is durably enqueued through the same ingest
path as the HTTP API. A tenant whose sending is paused (reputation) gets ``550 5.7.1``
with the reason at MAIL. While the store cannot be reached, a command that needs it gets
``451 4.3.0`` (AUTH: ``454 4.7.0``), and the client tries again later.

Rate limits and quotas (``postline.limits``) are judged after DATA, for the whole
message (all its recipients count): over a rate limit ``452 4.7.1`` with the seconds to
wait; over the daily quota ``452 4.7.1`` too (temporary: the client's queue retries and
gets through after UTC midnight, within the retry time of any MTA), over the monthly
quota ``554 5.7.0`` (permanent: the reset can be weeks away, beyond a client's queue
lifetime, and a bounce now tells the sender at once instead of days later).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import socket
import ssl
import time
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from postline.config import SubmissionConfig
from postline.errors import (
    QuotaExceeded,
    RateLimited,
    SendingPaused,
    StoreError,
    StoreUnavailable,
    ThrottleUnavailable,
    ValidationError,
)
from postline.ingest.addresses import InvalidAddress, parse_address
from postline.ingest.service import Ingestor
from postline.metrics import Metrics
from postline.smtp.node_counts import WorkerCounts
from postline.smtp.replies import (
    S250_OK,
    S250_RECIPIENT_OK,
    S250_SENDER_OK,
    S451_LOCAL_ERROR,
    S452_QUOTA_EXCEEDED,
    S452_RATE_LIMITED,
    S452_TOO_MANY_RECIPIENTS,
    S530_AUTH_REQUIRED,
    S550_RECIPIENT_SUPPRESSED,
    S550_RELAY_DENIED,
    S550_SENDER_DENIED,
    S553_BAD_ADDRESS,
    S553_BAD_SENDER,
    S554_QUOTA_EXCEEDED,
    S554_TRANSACTION_FAILED,
)
from postline.smtp.server import (
    AuthFailures,
    AuthUnavailable,
    ConnectionLimits,
    EhloExtensions,
    PostlineSMTP,
    SessionTimeouts,
    listen,
)
from postline.store.base import KeyIdentity, Tenant
from postline.tenants import KeyAuthenticator

__all__ = ["SubmissionHandler", "start_submission"]

log = logging.getLogger(__name__)


_REPLY_TEXT = 500  # a reply line stays well within RFC 5321's 512 octets

_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.:\[\]_-]")


def _helo_name(session: Session) -> str:
    """The client's EHLO name as it may appear in a header: only hostname and
    address-literal characters survive (no CR, LF or other bytes to smuggle)."""
    name = str(session.host_name or "unknown")
    return _HELO_UNSAFE.sub("?", name)[:64] or "unknown"


def _peer_ip(session: Session) -> str:
    peer: Any = session.peer
    return str(peer[0]) if peer else ""


class SubmissionHandler(EhloExtensions):
    """aiosmtpd hooks: policy only; protocol lives in aiosmtpd."""

    def __init__(
        self,
        config: SubmissionConfig,
        ingestor: Ingestor,
        metrics: Metrics,
        hostname: str,
        trusted_tenant: Tenant | None,
    ) -> None:
        self.config = config
        self.ingestor = ingestor
        self.metrics = metrics
        self.hostname = hostname
        self.trusted_tenant = trusted_tenant
        self._networks = [ipaddress.ip_network(n, strict=False) for n in config.trusted_networks]
        self._trusted_peers: dict[str, bool] = {}

    def _trusted(self, session: Session) -> bool:
        return self.trusts(_peer_ip(session))

    def trusts(self, peer: str) -> bool:
        """Whether the client address ``peer`` is in ``trusted_networks``."""
        if not self._networks or not peer:
            return False
        known = self._trusted_peers.get(peer)
        if known is not None:
            return known
        try:
            ip = ipaddress.ip_address(peer)
        except ValueError:
            return False
        trusted = any(ip in net for net in self._networks)
        if len(self._trusted_peers) >= 4096:
            self._trusted_peers.clear()
        self._trusted_peers[peer] = trusted  # asked on every command of a session
        return trusted

    def _tenant(self, session: Session) -> Tenant | None:
        identity: Any = getattr(session, "auth_data", None)
        if session.authenticated and isinstance(identity, KeyIdentity):
            return identity.tenant
        if self.trusted_tenant is not None and self._trusted(session):
            return self.trusted_tenant
        return None

    def _key(self, session: Session) -> KeyIdentity | None:
        """The API key the client authenticated with (None: a trusted network)."""
        identity: Any = getattr(session, "auth_data", None)
        return identity if session.authenticated and isinstance(identity, KeyIdentity) else None

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        tenant = self._tenant(session)
        if tenant is None:
            return S530_AUTH_REQUIRED
        try:
            await self.ingestor.check_sending(tenant.id)
        except SendingPaused as exc:
            return exc.smtp
        except StoreError as exc:
            return self._refused(exc)
        if not address:
            return S553_BAD_SENDER + ": a null sender cannot submit mail"
        try:
            sender = parse_address(address)
        except InvalidAddress:
            return S553_BAD_SENDER
        if self.ingestor.sender_check is not None:
            try:
                self.ingestor.sender_check(tenant.id, sender.domain)
            except ValidationError as exc:
                return f"{S550_SENDER_DENIED}: {exc}"
        envelope.mail_from = sender.address
        envelope.mail_options.extend(options)
        return S250_SENDER_OK

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        tenant = self._tenant(session)
        if tenant is None:
            return S550_RELAY_DENIED
        if len(envelope.rcpt_tos) >= self.config.max_recipients:
            return S452_TOO_MANY_RECIPIENTS
        try:
            rcpt = parse_address(address)
        except InvalidAddress:
            return S553_BAD_ADDRESS
        try:
            listed = await self.ingestor.suppressed(
                tenant.id, [rcpt.address.lower()], now=time.time()
            )
        except StoreError as exc:
            return self._refused(exc)
        if listed:
            (entry,) = listed.values()
            return f"{S550_RECIPIENT_SUPPRESSED} ({entry.reason})"
        if rcpt.address.lower() not in (a.lower() for a in envelope.rcpt_tos):
            envelope.rcpt_tos.append(rcpt.address)  # a repeated RCPT gets one copy
        envelope.rcpt_options.extend(options)
        return S250_RECIPIENT_OK

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        tenant = self._tenant(session)
        if tenant is None:
            return S530_AUTH_REQUIRED
        data = envelope.original_content
        assert isinstance(data, bytes)
        assert isinstance(envelope.mail_from, str)
        proto = "ESMTP" if session.extended_smtp else "SMTP"
        if session.ssl is not None:
            proto += "S"
        if session.authenticated:
            proto += "A"
        received = (
            f"Received: from {_helo_name(session)} ([{_peer_ip(session)}]) "
            f"by {self.hostname} (postline) with {proto}; {format_datetime(datetime.now(UTC))}"
        )
        try:
            message = self.ingestor.build_smtp_message(
                tenant.id,
                mail_from=envelope.mail_from,
                recipients=list(envelope.rcpt_tos),
                data=data,
                received=received,
            )
        except ValidationError as exc:
            return f"{S554_TRANSACTION_FAILED}: {exc}"
        except ValueError as exc:
            return f"554 5.6.0 Message rejected: {exc}"
        try:
            await self.ingestor.enqueue(tenant.id, [message], limited=True, key=self._key(session))
        except RateLimited as exc:
            return f"{S452_RATE_LIMITED}: {exc}"[:_REPLY_TEXT]
        except QuotaExceeded as exc:
            resets = datetime.fromtimestamp(exc.resets_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            text = f"{exc}; retry after {resets}"
            if exc.period == "daily":
                return f"{S452_QUOTA_EXCEEDED}: {text}"[:_REPLY_TEXT]
            return f"{S554_QUOTA_EXCEEDED}: {text}"[:_REPLY_TEXT]
        except ThrottleUnavailable as exc:
            log.warning(
                "rate limits unavailable (%s); submission deferred",
                exc,
                extra={"action": "submission.defer"},
            )
            return S451_LOCAL_ERROR
        except StoreError as exc:
            return self._refused(exc)
        except Exception:
            # Never a permanent refusal (or internal text) for our own failure.
            log.exception("submission failed", extra={"action": "submission.error"})
            return S451_LOCAL_ERROR
        return f"250 2.0.0 Ok: queued as {message.id}"

    def _refused(self, exc: StoreError) -> str:
        """The reply to a command the store failed: ``451 4.3.0``, try again later. An
        unavailable store is counted (and logged once in a while, with the counts: see
        ``postline.store.health``), any other store failure logged at once."""
        if isinstance(exc, StoreUnavailable):
            self.ingestor.store.health.refused("smtp", exc)
        else:
            log.warning(
                "store failed (%s); submission deferred",
                exc,
                extra={"action": "submission.defer"},
            )
        return S451_LOCAL_ERROR

    async def handle_RSET(self, server: Any, session: Session, envelope: Envelope) -> str:
        return S250_OK


async def start_submission(
    config: SubmissionConfig,
    *,
    host: str,
    port: int,
    sock: socket.socket | None = None,
    hostname: str,
    ingestor: Ingestor,
    auth: KeyAuthenticator,
    metrics: Metrics,
    tls_context: ssl.SSLContext | None,
    trusted_tenant: Tenant | None,
    auth_failures: AuthFailures | None = None,
    node_counts: WorkerCounts | None = None,
) -> asyncio.Server:
    """Listen for submission on ``host:port`` (or on ``sock``) in the running loop.

    ``node_counts`` makes the connection limits hold for every worker of the node.

    ``auth_failures`` counts failed AUTH and locks clients out (none when not given);
    clients in ``trusted_networks`` are neither counted nor locked out, nor held to
    ``max_connections_per_ip``.
    """
    handler = SubmissionHandler(config, ingestor, metrics, hostname, trusted_tenant)
    limits = ConnectionLimits(
        config.max_connections_per_ip,
        config.max_connections,
        exempt=handler.trusts,
        node=node_counts,
    )
    timeouts = SessionTimeouts(
        idle=config.timeout, commands=config.command_time_limit, data=config.data_timeout
    )

    async def check(user: str, password: str) -> KeyIdentity | None:
        try:
            return await auth.check_smtp(user, password)
        except StoreUnavailable as exc:
            ingestor.store.health.refused("smtp", exc)
            raise AuthUnavailable(str(exc)) from exc

    def factory() -> PostlineSMTP:
        return PostlineSMTP(
            handler,
            check_credentials=check,
            auth_failures=auth_failures,
            auth_exempt=handler.trusts,
            connection_limits=limits,
            timeouts=timeouts,
            hostname=hostname,
            ident="postline",
            data_size_limit=config.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls_context,
            require_starttls=False,
            auth_required=False,
            auth_require_tls=True,
            loop=asyncio.get_running_loop(),
        )

    return await listen(factory, host=host, port=port, sock=sock)
