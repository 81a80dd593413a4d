"""The inbound SMTP server: where bounces, complaints and auto-replies come back.

It accepts mail for exactly these recipients and refuses everything else:

* ``b-<token>@<bounce domain>`` whose signature verifies (a signed VERP return path);
  a forged, mangled or unknown token gets ``550 5.1.1``;
* ``u-<token>@<bounce domain>`` whose signature verifies (the mailto form of
  ``List-Unsubscribe``, see :mod:`~postline.feedback.unsubscribe`), likewise;
* the feedback-loop address (``[bounce] fbl_address``, default ``fbl@<bounce domain>``);
* ``postmaster@`` the bounce domain (RFC 5321 §4.5.1).

Any other domain gets ``550 5.7.1 Relaying denied``: it is not a relay. A report is
stored durably before the ``250`` (a crash after that loses nothing) and processed
later by :class:`~postline.feedback.processor.FeedbackProcessor`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiosmtpd.smtp import Envelope, Session

from postline.bounce import verp
from postline.errors import StoreError
from postline.feedback import unsubscribe
from postline.metrics import Metrics
from postline.model.ids import new_id
from postline.smtp.node_counts import WorkerCounts
from postline.smtp.replies import (
    S250_RECIPIENT_OK,
    S250_SENDER_OK,
    S451_LOCAL_ERROR,
    S452_TOO_MANY_RECIPIENTS,
    S550_NO_SUCH_USER,
    S550_RELAY_DENIED,
)
from postline.smtp.server import (
    ConnectionLimits,
    EhloExtensions,
    PostlineSMTP,
    SessionTimeouts,
    listen,
)
from postline.store.base import InboundMessage, Store

__all__ = ["InboundHandler", "start_inbound"]

log = logging.getLogger(__name__)

MAX_RECIPIENTS = 100


def _text(address: str) -> str:
    """``address`` as text a store can write: undecodable bytes replaced."""
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return address.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return address


class InboundHandler(EhloExtensions):
    """aiosmtpd hooks of the inbound server."""

    def __init__(
        self,
        store: Store,
        *,
        bounce_domain: str,
        fbl_address: str,
        secrets: Sequence[bytes],
        metrics: Metrics | None = None,
        on_stored: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.bounce_domain = bounce_domain.lower()
        self.fbl_address = fbl_address.lower()
        self.secrets = list(secrets)
        self.metrics = metrics
        self.on_stored = on_stored
        self.domains = {self.bounce_domain, self.fbl_address.rpartition("@")[2]}

    def accepts(self, address: str) -> str | None:
        """None when ``address`` takes reports, else the refusal."""
        local, at, domain = address.rpartition("@")
        if not at or not local:
            return S550_NO_SUCH_USER
        domain = domain.lower().rstrip(".")
        if domain not in self.domains:
            return S550_RELAY_DENIED
        if address.lower() == self.fbl_address:
            return None
        if domain == self.bounce_domain:
            if local.lower() == "postmaster":
                return None
            if verp.decode(local, self.secrets) is not None:
                return None
            if unsubscribe.decode_address(local, self.secrets) is not None:
                return None
        return S550_NO_SUCH_USER

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # Reports come from the null sender as a rule; any sender may send one. Bytes of
        # the address that are not UTF-8 (aiosmtpd keeps them as surrogates, which no
        # store can write) become U+FFFD.
        envelope.mail_from = _text(address or "")
        envelope.mail_options.extend(options)
        return S250_SENDER_OK

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return S452_TOO_MANY_RECIPIENTS
        refusal = self.accepts(address)
        if refusal is not None:
            if self.metrics is not None:
                self.metrics.inbound.labels("refused").inc()
            return refusal
        if address.lower() not in (a.lower() for a in envelope.rcpt_tos):
            envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return S250_RECIPIENT_OK

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content
        assert isinstance(data, bytes)
        peer: Any = session.peer
        message = InboundMessage(
            id=new_id(),
            received_at=time.time(),
            mail_from=str(envelope.mail_from or ""),
            rcpt_to=list(envelope.rcpt_tos),
            peer=str(peer[0]) if peer else "",
            body=data,
        )
        try:
            await self.store.store_inbound(message)
        except StoreError as exc:
            log.warning("could not store a report: %s", exc, extra={"action": "inbound.defer"})
            return S451_LOCAL_ERROR
        except Exception:
            log.exception("could not store a report", extra={"action": "inbound.error"})
            return S451_LOCAL_ERROR
        if self.metrics is not None:
            self.metrics.inbound.labels("accepted").inc()
        if self.on_stored is not None:
            self.on_stored()
        return f"250 2.0.0 Ok: queued as {message.id}"


async def start_inbound(
    handler: InboundHandler,
    *,
    host: str,
    port: int,
    sock: socket.socket | None = None,
    hostname: str,
    max_message_size: int,
    tls_context: ssl.SSLContext | None,
    timeouts: SessionTimeouts | None = None,
    max_connections_per_ip: int = 50,
    max_connections: int = 1000,
    node_counts: WorkerCounts | None = None,
) -> asyncio.Server:
    """Listen for reports on ``host:port`` (or on ``sock``) in the running loop;
    ``node_counts`` makes the connection limits hold for every worker of the node."""
    limits = ConnectionLimits(max_connections_per_ip, max_connections, node=node_counts)
    timeouts = timeouts or SessionTimeouts()

    def factory() -> PostlineSMTP:
        return PostlineSMTP(
            handler,
            hostname=hostname,
            ident="postline",
            data_size_limit=max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=tls_context,
            require_starttls=False,
            auth_required=False,
            connection_limits=limits,
            timeouts=timeouts,
            loop=asyncio.get_running_loop(),
        )

    return await listen(factory, host=host, port=port, sock=sock)
