"""Turns stored inbound reports into events and suppressions.

For each report (see :func:`postline.bounce.analyze`):

* the recipient it is about is found by a signed VERP token: the address the report was
  sent to, or else the return path in the returned message's headers (feedback loops
  send to one fixed address but return the original headers). A token names one
  recipient and cannot be forged, so anything else is a claim by whoever wrote the report:
  without one, the ``X-Postline-ID`` (or our ``Message-ID``) of the returned headers is
  accepted only for a message with a single recipient — for receivers that answer the
  From address, and feedback loops that strip the return path. A report about a
  message with several recipients and no token is kept unmatched: every recipient saw the
  message's ids and each other's addresses, so any of them could otherwise bounce or
  complain on another's behalf;
* a DSN with ``Action: failed`` → the recipient becomes ``bounced`` with a ``bounced``
  event (``async: true``, category, hard, status, diagnostic, remote MTA); a hard bounce
  about the address itself suppresses it, a soft one counts towards the soft-bounce run;
* an ARF complaint → a ``complained`` event and a ``complaint`` suppression, once per
  recipient of a message: a repeated report is recorded but counts nothing again;
* an auto-reply → an ``auto_reply`` event: not a bounce, nothing suppressed;
* mail to a signed ``u-<token>`` address (the mailto form of ``List-Unsubscribe``),
  whatever it says → the recipient the token names is unsubscribed like a one-click
  POST (:class:`~postline.feedback.unsubscribe.Unsubscriber`);
* anything else is kept with its result (``unrecognised``) for an operator to look at.

Several nodes may run processors on one store: reports are claimed for a while, and a
claim that lapses (its node died) is taken again. A report that keeps failing is given
up after a few attempts, never dropped without a recorded result.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from postline.bounce import Report, analyze, verp
from postline.bounce.parse import RecipientResult
from postline.bounce.policy import counts_as_soft, suppresses
from postline.bounce.tokens import MAX_TOKEN, MIN_TOKEN
from postline.config import SuppressionConfig
from postline.errors import StoreUnavailable
from postline.feedback.soft import note_soft_bounces
from postline.feedback.unsubscribe import Unsubscriber, decode_address
from postline.metrics import Metrics
from postline.model import EventType, RecipientState
from postline.store.base import (
    AttemptRecord,
    InboundMessage,
    MessageView,
    NewEvent,
    RecipientView,
    Store,
    Suppression,
)

__all__ = ["FeedbackProcessor"]

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
_ULID = re.compile(r"^<?([0-7][0-9A-HJKMNP-TV-Z]{25})@", re.IGNORECASE)
# A VERP address anywhere in a report (the returned message's Return-Path, or an ARF
# report's Original-Mail-From); only the token before "@" is decoded.
_VERP_IN_TEXT = re.compile(
    rb"(?<![A-Za-z0-9._%+=-])"
    + re.escape(verp.PREFIX.encode())
    + rb"([0-9A-Za-z]{%d,%d})@" % (MIN_TOKEN, MAX_TOKEN)
)
_SCAN_BYTES = 256 * 1024
_FINAL = {
    RecipientState.BOUNCED,
    RecipientState.EXPIRED,
    RecipientState.CANCELLED,
    RecipientState.SUPPRESSED,
}


@dataclass(frozen=True, slots=True)
class _Target:
    message: MessageView
    recipient: RecipientView


def _code(diagnostic: str) -> int | None:
    m = re.match(r"\s*(?:smtp\s*;\s*)?([245]\d\d)\b", diagnostic, re.IGNORECASE)
    return int(m.group(1)) if m else None


class FeedbackProcessor:
    """Claims stored reports and applies them; one per node, woken when one arrives."""

    def __init__(
        self,
        store: Store,
        *,
        secrets: Sequence[bytes],
        suppression: SuppressionConfig,
        node_id: str,
        metrics: Metrics | None = None,
        poll_interval: float = 5.0,
        claim_for: float = 120.0,
        unsubscriber: Unsubscriber | None = None,
    ) -> None:
        self.store = store
        self.secrets = list(secrets)
        self.unsubscriber = unsubscriber or Unsubscriber(
            store, secrets=self.secrets, node_id=node_id, metrics=metrics
        )
        self.suppression = suppression
        self.node_id = node_id
        self.metrics = metrics
        self.poll_interval = poll_interval
        self.claim_for = claim_for
        self._wake = asyncio.Event()
        self.processed = 0
        # Observers (reputation counts): bounce outcomes once written, and each complaint
        # as (tenant id, stream, time).
        self.on_recorded: Callable[[Sequence[AttemptRecord]], None] | None = None
        self.on_complaint: Callable[[str, str, float], None] | None = None

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            try:
                batch = await self.store.pending_inbound(
                    50, now=time.time(), claim_for=self.claim_for
                )
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:  # logged with the store's outage
                self.store.health.failed("feedback", exc)
                batch = []
            except Exception:
                log.exception("could not read inbound reports", extra={"action": "feedback.read"})
                batch = []
            for message in batch:
                await self._one(message)
            if not batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                self._wake.clear()

    async def _one(self, message: InboundMessage) -> None:
        try:
            kind, result = await self.process(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception(
                "inbound report %s failed", message.id, extra={"action": "feedback.failed"}
            )
            state = "failed" if message.attempts + 1 >= MAX_ATTEMPTS else "pending"
            with contextlib.suppress(Exception):
                await self.store.finish_inbound(
                    message.id, result=f"error: {exc}"[:500], now=time.time(), state=state
                )
            return
        self.processed += 1
        if self.metrics is not None:
            self.metrics.feedback.labels(kind, result.split(":", 1)[0]).inc()
        await self.store.finish_inbound(message.id, result=result[:500], now=time.time())

    # -- one report ---------------------------------------------------------------------
    async def process(self, message: InboundMessage) -> tuple[str, str]:
        """Apply one report; returns (kind, result) for the record."""
        unsubscribes = self._unsubscribes(message)
        if unsubscribes:
            return "unsubscribe", await self._unsubscribe(message, unsubscribes)
        report = analyze(message.body)
        verp_ref = self._verp(message) or self._verp_in_report(message)
        if report.kind == "arf":
            return "arf", await self._complaint(message, report, verp_ref)
        if report.kind == "autoreply":
            return "autoreply", await self._auto_reply(message, report, verp_ref)
        failed = [r for r in report.results if r.failed]
        if report.kind == "dsn" or failed:
            return "dsn", await self._bounces(message, report, failed, verp_ref)
        return report.kind, "unrecognised"

    def _verp(self, message: InboundMessage) -> tuple[str, int] | None:
        for rcpt in message.rcpt_to:
            ref = verp.decode(rcpt, self.secrets)
            if ref is not None:
                return ref
        return None

    def _verp_in_report(self, message: InboundMessage) -> tuple[str, int] | None:
        """The recipient named by the signed return path(s) inside the report, when they
        all name the same one."""
        refs = set()
        for m in _VERP_IN_TEXT.finditer(message.body[:_SCAN_BYTES]):
            ref = verp.decode(verp.PREFIX + m.group(1).decode("ascii"), self.secrets)
            if ref is not None:
                refs.add(ref)
        return refs.pop() if len(refs) == 1 else None

    def _unsubscribes(self, message: InboundMessage) -> list[tuple[str, int]]:
        refs: list[tuple[str, int]] = []
        for rcpt in message.rcpt_to:
            ref = decode_address(rcpt, self.secrets)
            if ref is not None and ref not in refs:
                refs.append(ref)
        return refs

    async def _unsubscribe(self, message: InboundMessage, refs: list[tuple[str, int]]) -> str:
        applied = 0
        for mid, idx in refs:
            done = await self.unsubscriber.apply(
                mid,
                idx,
                source="mailto",
                detail=f"List-Unsubscribe mailto from <{message.mail_from}>"[:1000],
                data={"inbound_id": message.id},
            )
            if done is not None:
                applied += 1
        if not applied:
            return "unmatched: unsubscribe for no known message"
        return f"unsubscribed: {applied}"

    async def _message(
        self, report: Report, verp_ref: tuple[str, int] | None
    ) -> MessageView | None:
        if verp_ref is not None:
            return await self.store.get_message(None, verp_ref[0])
        ids = [report.postline_id]
        if report.message_id:
            m = _ULID.match(report.message_id.strip())
            if m:
                ids.append(m.group(1).upper())
        for mid in ids:
            if mid:
                view = await self.store.get_message(None, mid.strip().upper())
                if view is not None:
                    return view
        return None

    @staticmethod
    def _by_address(view: MessageView, addresses: Sequence[str | None]) -> list[RecipientView]:
        wanted = {a.strip().strip("<>").lower() for a in addresses if a}
        return [r for r in view.recipients if r.address.lower() in wanted]

    async def _targets(
        self,
        report: Report,
        verp_ref: tuple[str, int] | None,
        addresses: Sequence[str | None] = (),
    ) -> list[_Target]:
        """The recipients a report is about. ``addresses`` (the ones it names) are used
        only for what changes nothing but an event (auto-replies)."""
        view = await self._message(report, verp_ref)
        if view is None:
            return []
        if verp_ref is not None:
            rcpts = [r for r in view.recipients if r.idx == verp_ref[1]]
        elif len(view.recipients) != 1:
            # No signed token: ids and co-recipients' addresses are visible to every
            # recipient, so the report could be anyone's claim about anyone.
            rcpts = self._by_address(view, addresses)
        else:
            # Only its recipient saw this message's ids: the report is about them, whatever
            # address it names (feedback loops redact it).
            rcpts = list(view.recipients)
        return [_Target(view, r) for r in rcpts]

    # -- bounces ------------------------------------------------------------------------
    async def _bounces(
        self,
        message: InboundMessage,
        report: Report,
        failed: list[RecipientResult],
        verp_ref: tuple[str, int] | None,
    ) -> str:
        if not failed:
            return "no failure (delay or success notice)"
        now = time.time()
        applied = 0
        records: list[AttemptRecord] = []
        soft: dict[str, list[str]] = {}
        seen: set[tuple[str, int]] = set()
        for target in await self._targets(report, verp_ref):
            rcpt = target.recipient
            if (target.message.id, rcpt.idx) in seen or rcpt.state in _FINAL:
                continue
            seen.add((target.message.id, rcpt.idx))
            result = self._result_for(rcpt.address, failed)
            category = result.category.value
            data: dict[str, object] = {
                "async": True,
                "kind": "dsn",
                "category": category,
                "hard": result.hard,
                "status": result.status,
                "diagnostic": result.diagnostic,
                "remote_mta": result.remote_mta or report.reporting_mta,
                "inbound_id": message.id,
            }
            suppress = "hard_bounce" if suppresses(category, result.hard) else None
            ttl = self.suppression.hard_bounce_ttl
            records.append(
                AttemptRecord(
                    message_id=target.message.id,
                    idx=rcpt.idx,
                    tenant_id=target.message.tenant_id,
                    address=rcpt.address,
                    state=RecipientState.BOUNCED,
                    event=EventType.BOUNCED,
                    at=now,
                    counted=False,
                    code=_code(result.diagnostic),
                    enhanced=result.status,
                    text=result.diagnostic[:1000] or None,
                    mx=result.remote_mta or report.reporting_mta,
                    data=data,
                    domain=rcpt.domain,
                    suppress=suppress,
                    suppress_until=now + ttl if suppress and ttl else None,
                    stream=target.message.stream,
                )
            )
            if suppress and self.metrics is not None:
                self.metrics.suppressions.labels(suppress).inc()
            if counts_as_soft(category, result.hard):
                soft.setdefault(target.message.tenant_id, []).append(rcpt.address)
            applied += 1
        if records:
            await self.store.record(records, node_id=self.node_id)
            if self.on_recorded is not None:
                self.on_recorded(records)
        await note_soft_bounces(
            self.store, soft, suppression=self.suppression, now=now, metrics=self.metrics
        )
        if not applied:
            return "unmatched: no queued or delivered recipient found"
        return f"bounced: {applied}"

    @staticmethod
    def _result_for(address: str, failed: list[RecipientResult]) -> RecipientResult:
        low = address.lower()
        for r in failed:
            if (r.recipient or "").lower() == low or (r.alias or "").lower() == low:
                return r
        return failed[0]  # a signed return path names the recipient; the report has one

    # -- complaints and auto-replies ----------------------------------------------------
    async def _complaint(
        self, message: InboundMessage, report: Report, verp_ref: tuple[str, int] | None
    ) -> str:
        fb = report.feedback
        targets = await self._targets(report, verp_ref)
        if not targets:
            return "unmatched: complaint about no known message or recipient"
        now = time.time()
        targets = await self._new_complaints(targets, now)
        if not targets:
            return "repeated: complaint already recorded"
        events = []
        entries = []
        for t in targets:
            events.append(
                NewEvent(
                    at=now,
                    tenant_id=t.message.tenant_id,
                    type=EventType.COMPLAINED,
                    message_id=t.message.id,
                    recipient_idx=t.recipient.idx,
                    recipient=t.recipient.address,
                    data={
                        "feedback_type": fb.feedback_type if fb else "abuse",
                        "user_agent": fb.user_agent if fb else None,
                        "source_ip": fb.source_ip if fb else None,
                        "reporting_mta": report.reporting_mta,
                        "inbound_id": message.id,
                    },
                )
            )
            entries.append(
                Suppression(
                    tenant_id=t.message.tenant_id,
                    address=t.recipient.address.lower(),
                    reason="complaint",
                    created_at=now,
                    source="feedback",
                    detail=(fb.feedback_type if fb else "abuse")
                    + (f" via {fb.user_agent}" if fb and fb.user_agent else ""),
                    message_id=t.message.id,
                )
            )
        await self.store.add_suppressions(entries)
        await self.store.append_events(events, node_id=self.node_id)
        if self.on_complaint is not None:
            for t in targets:
                self.on_complaint(t.message.tenant_id, t.message.stream, now)
        if self.metrics is not None:
            self.metrics.suppressions.labels("complaint").inc(len(entries))
        return f"complained: {len(events)}"

    async def _new_complaints(self, targets: list[_Target], now: float) -> list[_Target]:
        """``targets`` without the recipients a complaint about the same message was
        already recorded for (a report sent twice counts once)."""
        fresh = []
        for t in targets:
            known = await self.store.suppressed(t.message.tenant_id, [t.recipient.address], now=now)
            entry = known.get(t.recipient.address.lower())
            if (
                entry is not None
                and entry.reason == "complaint"
                and (entry.message_id == t.message.id)
            ):
                continue
            fresh.append(t)
        return fresh

    async def _auto_reply(
        self, message: InboundMessage, report: Report, verp_ref: tuple[str, int] | None
    ) -> str:
        addresses: list[str | None] = [r.recipient for r in report.results]
        addresses += list(report.original_to)
        targets = await self._targets(report, verp_ref, addresses)
        if not targets:
            return "unmatched: auto-reply about no known message"
        now = time.time()
        await self.store.append_events(
            [
                NewEvent(
                    at=now,
                    tenant_id=t.message.tenant_id,
                    type=EventType.AUTO_REPLY,
                    message_id=t.message.id,
                    recipient_idx=t.recipient.idx,
                    recipient=t.recipient.address,
                    data={"subject": report.subject[:300], "inbound_id": message.id},
                )
                for t in targets
            ],
            node_id=self.node_id,
        )
        return f"auto_reply: {len(targets)}"
