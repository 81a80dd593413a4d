"""After a recipient finally fails: count soft bounces, and tell SMTP senders (DSN).

The delivery engine hands over every final failure (``bounced`` or ``expired``) once
its outcome is durable. Failures are gathered for a moment so one DSN covers the
recipients of a message that failed together. A DSN goes only to the envelope sender
of mail that came in over SMTP submission (API users get events and webhooks), never
to a null sender and never for a bounce (see :func:`postline.bounce.notify.should_notify`);
it leaves as a new message of the same tenant with the null return path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from postline.bounce.notify import DsnRecipient, build_dsn, should_notify
from postline.bounce.policy import counts_as_soft
from postline.config import SuppressionConfig
from postline.feedback.soft import note_soft_bounces
from postline.ingest.service import Ingestor
from postline.metrics import Metrics
from postline.model import RecipientState
from postline.store.base import AttemptRecord, LeasedMessage, Store

__all__ = ["FailureHandler"]

log = logging.getLogger(__name__)


def _head(body: bytes) -> bytes:
    end = body.find(b"\r\n\r\n")
    return body if end < 0 else body[: end + 2]


class FailureHandler:
    """Consumes final failures in the background (``add`` never blocks delivery)."""

    def __init__(
        self,
        store: Store,
        ingestor: Ingestor | None,
        *,
        suppression: SuppressionConfig,
        reporting_mta: str,
        notify_senders: bool,
        notify_except: Sequence[str] = (),
        notify_only: Sequence[str] = (),
        metrics: Metrics | None = None,
        batch_delay: float = 0.5,
    ) -> None:
        self.store = store
        self.ingestor = ingestor
        self.suppression = suppression
        self.reporting_mta = reporting_mta
        self.notify_senders = notify_senders
        self.notify_except = set(notify_except)
        self.notify_only = set(notify_only)
        self._names: dict[str, str] = {}
        self.metrics = metrics
        self.batch_delay = batch_delay
        self._queue: asyncio.Queue[tuple[LeasedMessage, AttemptRecord]] = asyncio.Queue()
        self.notices_sent = 0

    def add(self, message: LeasedMessage, record: AttemptRecord) -> None:
        self._queue.put_nowait((message, record))

    async def run(self) -> None:
        while True:
            first = await self._queue.get()
            await asyncio.sleep(self.batch_delay)
            batch = [first]
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.handle(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "could not handle %d final failures",
                    len(batch),
                    extra={"action": "feedback.failures"},
                )

    async def drain(self) -> None:
        """Handle whatever is still queued (at shutdown, after the engine stopped)."""
        batch = []
        while not self._queue.empty():
            batch.append(self._queue.get_nowait())
        if batch:
            await self.handle(batch)

    async def handle(self, batch: Sequence[tuple[LeasedMessage, AttemptRecord]]) -> None:
        now = time.time()
        soft: dict[str, list[str]] = {}
        by_message: dict[str, tuple[LeasedMessage, list[AttemptRecord]]] = {}
        for message, r in batch:
            category = str(r.data.get("category", "unknown"))
            hard = r.data.get("hard") is True
            if counts_as_soft(category, hard):
                soft.setdefault(r.tenant_id, []).append(r.address)
            by_message.setdefault(message.id, (message, []))[1].append(r)
        await note_soft_bounces(
            self.store, soft, suppression=self.suppression, now=now, metrics=self.metrics
        )
        if self.notify_senders and self.ingestor is not None:
            for message, records in by_message.values():
                await self._notify(message, records, now)

    async def _tenant_wants(self, tenant_id: str) -> bool:
        """Whether the tenant's senders get DSNs (``[bounce] notify_senders_except`` /
        ``notify_senders_only`` name tenants by name or id)."""
        if not self.notify_except and not self.notify_only:
            return True
        name = self._names.get(tenant_id)
        if name is None:
            tenant = await self.store.get_tenant(id=tenant_id)
            name = self._names[tenant_id] = tenant.name if tenant else ""
        keys = {tenant_id, name}
        if keys & self.notify_except:
            return False
        return not self.notify_only or bool(keys & self.notify_only)

    async def _notify(
        self, message: LeasedMessage, records: list[AttemptRecord], now: float
    ) -> None:
        head = _head(message.body)
        if not should_notify(message.mail_from, source=message.source, headers=head):
            return
        if not await self._tenant_wants(message.tenant_id):
            return
        assert self.ingestor is not None
        rcpts = [
            DsnRecipient(
                address=r.address,
                action="failed",
                status=r.enhanced or ("4.4.7" if r.state is RecipientState.EXPIRED else "5.0.0"),
                diagnostic=" ".join(str(p) for p in (r.code, r.enhanced, r.text) if p),
                remote_mta=r.mx,
                last_attempt=r.at,
            )
            for r in records
        ]
        arrival = min((r.at for r in records), default=now)
        for lr in message.recipients:
            arrival = min(arrival, lr.created_at)
        body = build_dsn(
            reporting_mta=self.reporting_mta,
            original_mail_from=message.mail_from,
            original_headers=head,
            recipients=rcpts,
            arrival=arrival,
            now=now,
            envelope_id=message.id,
        )
        dsn = self.ingestor.build_report_message(
            message.tenant_id, to=message.mail_from, body=body, now=now
        )
        await self.ingestor.enqueue(message.tenant_id, [dsn])
        self.notices_sent += 1
