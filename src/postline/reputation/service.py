"""Reputation guardrails of one node: counting, judging, pausing.

* **Counting.** Outcomes the node writes (delivered, hard-bounced; from the delivery
  engine and from bounce reports) and complaints (feedback loops) are counted in memory
  per (tenant, stream, time bucket) and added to the store every ``flush_interval`` in
  one upsert. Stored counts are sums, so every node of a fleet adds its own share.
* **Judging.** Every ``evaluate_interval`` the node reads each tenant's sums over the
  window (per stream; the tenant is judged on their total), computes the rates, and moves
  the tenant ``ok → warned → paused`` (or ``warned → ok``) with a compare-and-set in the
  store, which appends the event in the same transaction: of several nodes judging at
  once, one makes the change and one event is written.
* **Pausing.** A paused tenant's new mail is refused (:meth:`Reputation.check`, used by
  ingest) and its queued mail is held: the store leases none of it (``paused_queues``
  holds domain ``*`` of the tenant) and the engine hands back what it had buffered. Only
  an operator resumes a tenant (:func:`resume_tenant`), which also moves the start of
  its judged window to the resume time, so the outcomes that paused it are not judged
  again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from postline.config import ReputationConfig
from postline.errors import SendingPaused, StoreUnavailable
from postline.metrics import Metrics
from postline.model import EventType, RecipientState
from postline.reputation.rates import (
    OK,
    PAUSED,
    WARNED,
    Counts,
    Thresholds,
    Verdict,
    bucket_of,
    bucket_width,
    judge,
    percent,
    transition,
)
from postline.store.base import (
    AttemptRecord,
    NewEvent,
    ReputationCount,
    ReputationTotals,
    Store,
    Tenant,
    TenantStatus,
)
from postline.units import format_duration

__all__ = ["Reputation", "pause_tenant", "refusal", "resume_tenant", "tenant_counts"]

log = logging.getLogger(__name__)

PURGE_INTERVAL = 600.0
RECHECK = 1.0  # seconds a refusal trusts the cached pause before reading the store again
_EVENTS = {WARNED: EventType.REPUTATION_WARNING, PAUSED: EventType.TENANT_PAUSED}


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _one_line(text: str, limit: int = 300) -> str:
    return re.sub(r"\s+", " ", text).strip()[:limit]


def refusal(name: str, status: TenantStatus) -> SendingPaused:
    """The error a paused tenant's submission gets: what crossed which threshold over
    which window, since when, and who can resume it."""
    why = _one_line(status.reason) or "paused by the operator"
    since = _utc(status.changed_at)
    resume = f"postline tenant resume {name}"
    return SendingPaused(
        f"Sending is paused for tenant {name!r} since {since}: {why}. Nothing from this "
        "request was queued; mail queued earlier is held (not sent, not dropped) until the "
        "tenant is resumed.",
        tenant=name,
        reason=why,
        since=status.changed_at,
        fix="Remove addresses that bounce or complain from your lists, then ask the "
        f"operator of this postline service to review the account and resume it "
        f"('{resume}').",
        smtp=f"550 5.7.1 Sending paused for tenant {name} since {since}: {why}; ask the "
        f"operator to resume it ({resume})",
    )


def tenant_counts(totals: Sequence[ReputationTotals]) -> dict[str, dict[str, Counts]]:
    """Per tenant, per stream counts of ``totals``."""
    out: dict[str, dict[str, Counts]] = {}
    for t in totals:
        out.setdefault(t.tenant_id, {})[t.stream] = Counts(t.delivered, t.bounced, t.complained)
    return out


def _event_data(
    new: str,
    previous: str,
    reason: str,
    verdict: Verdict,
    streams: Mapping[str, Counts],
    t: Thresholds,
) -> dict[str, Any]:
    """Data of an automatic status change: what was judged, against what."""
    c = verdict.counts
    return {
        "status": new,
        "previous": previous,
        "reason": reason,
        "by": "reputation",
        "window": format_duration(t.window),
        "delivered": c.delivered,
        "bounced": c.bounced,
        "complained": c.complained,
        "bounce_rate": c.bounce_rate,
        "complaint_rate": c.complaint_rate,
        "thresholds": {
            "bounce_warn": t.bounce_warn,
            "bounce_pause": t.bounce_pause,
            "complaint_warn": t.complaint_warn,
            "complaint_pause": t.complaint_pause,
            "min_volume": t.min_volume,
        },
        "streams": {
            s: {"delivered": v.delivered, "bounced": v.bounced, "complained": v.complained}
            for s, v in sorted(streams.items())
        },
    }


async def _change(
    store: Store,
    tenant: Tenant,
    *,
    make: Callable[[TenantStatus | None], TenantStatus | None],
    event: EventType,
    now: float,
    node_id: str,
) -> TenantStatus | None:
    """Compare-and-set the status ``make`` builds from the current one (None: no change)."""
    for _ in range(5):
        rows = await store.tenant_statuses(tenant.id)
        current = rows[0] if rows else None
        new = make(current)
        if new is None:
            return None
        previous = current.status if current else OK
        data = {"status": new.status, "previous": previous, "reason": new.reason, "by": "operator"}
        ok = await store.set_tenant_status(
            new,
            expected={previous},
            event=NewEvent(now, tenant.id, event, None, None, None, data),
            node_id=node_id,
        )
        if ok:
            return new
    return None


async def pause_tenant(
    store: Store, tenant: Tenant, *, reason: str = "", now: float | None = None, node_id: str = ""
) -> TenantStatus | None:
    """An operator pauses a tenant; None when it was paused already."""
    at = time.time() if now is None else now
    text = _one_line(reason) or "paused by the operator"

    def make(current: TenantStatus | None) -> TenantStatus | None:
        if current is not None and current.status == PAUSED:
            return None
        since = current.judged_since if current else 0.0
        return TenantStatus(tenant.id, PAUSED, text, at, "operator", since)

    return await _change(
        store, tenant, make=make, event=EventType.TENANT_PAUSED, now=at, node_id=node_id
    )


async def resume_tenant(
    store: Store, tenant: Tenant, *, now: float | None = None, node_id: str = ""
) -> TenantStatus | None:
    """An operator resumes a paused (or warned) tenant; None when it was neither.

    The held mail goes out again, new mail is accepted again, and the tenant is judged
    only on outcomes from now on: it needs the minimum volume again before a verdict.
    """
    at = time.time() if now is None else now

    def make(current: TenantStatus | None) -> TenantStatus | None:
        if current is None or current.status == OK:
            return None
        return TenantStatus(tenant.id, OK, "resumed by the operator", at, "operator", at)

    return await _change(
        store, tenant, make=make, event=EventType.TENANT_RESUMED, now=at, node_id=node_id
    )


class Reputation:
    """Counts outcomes, judges tenants and enforces pauses on one node."""

    def __init__(
        self,
        store: Store,
        config: ReputationConfig,
        *,
        node_id: str,
        metrics: Metrics | None = None,
        on_hold: Callable[[str, bool], None] | None = None,
        recheck: float = RECHECK,
    ) -> None:
        self.store = store
        self.recheck = recheck
        self.config = config
        self.node_id = node_id
        self.metrics = metrics
        self.on_hold = on_hold
        """Called with (tenant id, held) when a tenant's queues are held or their hold lifted."""
        self.thresholds = Thresholds.from_config(config)
        self.width = bucket_width(config.window)
        self._pending: dict[tuple[str, str, float], list[int]] = {}
        self._statuses: dict[str, TenantStatus] = {}
        self._checked: dict[str, float] = {}
        self._names: dict[str, str] = {}
        self._held: set[str] = set()
        self._labelled: set[str] = set()
        self._next_purge = 0.0
        self.evaluations = 0

    # -- counting ----------------------------------------------------------------------
    def _add(self, tenant_id: str, stream: str, at: float, slot: int) -> None:
        key = (tenant_id, stream or "transactional", bucket_of(at, self.width))
        counts = self._pending.get(key)
        if counts is None:
            counts = self._pending[key] = [0, 0, 0]
        counts[slot] += 1

    def observe(self, records: Sequence[AttemptRecord]) -> None:
        """Count the written outcomes that make the rates: delivered and hard-bounced (not
        those of the DSNs postline sends back to SMTP senders)."""
        if not self.config.enabled:
            return
        for r in records:
            if r.source == "dsn":
                continue  # a report postline sent back for the tenant, not its mail
            if r.state is RecipientState.DELIVERED:
                self._add(r.tenant_id, r.stream, r.at, 0)
            elif r.state is RecipientState.BOUNCED and r.data.get("hard") is True:
                self._add(r.tenant_id, r.stream, r.at, 1)

    def complained(self, tenant_id: str, stream: str, at: float) -> None:
        """Count one complaint (a feedback-loop report) about a tenant's message."""
        if self.config.enabled:
            self._add(tenant_id, stream, at, 2)

    async def flush(self) -> None:
        """Add what was counted since the last flush to the store (kept on failure)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        counts = [ReputationCount(t, s, b, *c) for (t, s, b), c in pending.items()]
        try:
            await self.store.add_reputation_counts(counts)
        except BaseException:
            for key, c in pending.items():
                mine = self._pending.setdefault(key, [0, 0, 0])
                for i in range(3):
                    mine[i] += c[i]
            raise

    # -- judging -----------------------------------------------------------------------
    async def evaluate(self, now: float | None = None) -> list[TenantStatus]:
        """Judge every tenant with counts in the window; returns the changes this node
        made. Also refreshes the statuses (pauses and resumes made elsewhere)."""
        now = time.time() if now is None else now
        self.evaluations += 1
        statuses = {s.tenant_id: s for s in await self.store.tenant_statuses()}
        changes: list[TenantStatus] = []
        per_tenant: dict[str, dict[str, Counts]] = {}
        if self.config.enabled:
            await self.flush()
            totals = await self.store.reputation_totals(since=now - self.config.window)
            per_tenant = tenant_counts(totals)
            for tenant_id, streams in per_tenant.items():
                changed = await self._judge(tenant_id, streams, statuses.get(tenant_id), now)
                if changed is not None:
                    statuses[tenant_id] = changed
                    changes.append(changed)
            if now >= self._next_purge:
                self._next_purge = now + PURGE_INTERVAL
                await self.store.purge_reputation_counts(now - 2 * self.config.window)
        self._apply(statuses)
        await self._gauges(per_tenant, statuses)
        return changes

    async def _judge(
        self,
        tenant_id: str,
        streams: Mapping[str, Counts],
        current: TenantStatus | None,
        now: float,
    ) -> TenantStatus | None:
        t = self.thresholds
        verdict = judge(Counts.total(streams.values()), t)
        previous = current.status if current else OK
        new = transition(previous, verdict)
        if new is None:
            return None
        if new == OK:
            c = verdict.counts
            reason = (
                f"rates back under the warning thresholds over the last "
                f"{format_duration(t.window)}: hard-bounce "
                f"{percent(c.bounce_rate or 0.0)}, complaint {percent(c.complaint_rate or 0.0)}"
            )
        else:
            reason = verdict.reason(t.window)
        status = TenantStatus(
            tenant_id,
            new,
            reason,
            now,
            "reputation",
            current.judged_since if current else 0.0,
        )
        data = _event_data(new, previous, reason, verdict, streams, t)
        kind = _EVENTS.get(new, EventType.REPUTATION_RECOVERED)
        event = NewEvent(now, tenant_id, kind, None, None, None, data)
        if not await self.store.set_tenant_status(
            status, expected={previous}, event=event, node_id=self.node_id
        ):
            return None  # another node changed it first; the next round reads its status
        name = await self._name(tenant_id)
        log.warning(
            "tenant %s is %s: %s",
            name,
            new,
            reason,
            extra={"action": f"reputation.{new}"},
        )
        return status

    def _apply(self, statuses: Mapping[str, TenantStatus]) -> None:
        """Take ``statuses`` as current: hold the queues of paused tenants, lift the hold
        of the others."""
        self._statuses = dict(statuses)
        paused = {tid for tid, s in statuses.items() if s.status == PAUSED}
        for tid in sorted(paused - self._held):
            self._hold(tid, True)
        for tid in sorted(self._held - paused):
            self._hold(tid, False)

    def _hold(self, tenant_id: str, held: bool) -> None:
        if held:
            self._held.add(tenant_id)
        else:
            self._held.discard(tenant_id)
        if self.on_hold is not None:
            try:
                self.on_hold(tenant_id, held)
            except Exception:
                log.exception("tenant hold failed", extra={"action": "reputation.hold"})

    async def _name(self, tenant_id: str) -> str:
        name = self._names.get(tenant_id)
        if name is None:
            self._names = {t.id: t.name for t in await self.store.list_tenants()}
            name = self._names.get(tenant_id, tenant_id)
        return name

    async def _gauges(
        self, per_tenant: Mapping[str, Mapping[str, Counts]], statuses: Mapping[str, TenantStatus]
    ) -> None:
        m = self.metrics
        if m is None:
            return
        seen = set()
        for tenant_id in set(per_tenant) | set(statuses):
            name = await self._name(tenant_id)
            seen.add(name)
            counts = Counts.total(per_tenant.get(tenant_id, {}).values())
            m.reputation_bounce_rate.labels(name).set(counts.bounce_rate or 0.0)
            m.reputation_complaint_rate.labels(name).set(counts.complaint_rate or 0.0)
            status = statuses.get(tenant_id)
            m.tenant_paused.labels(name).set(1 if status and status.status == PAUSED else 0)
        for name in self._labelled - seen:
            for gauge in (m.reputation_bounce_rate, m.reputation_complaint_rate, m.tenant_paused):
                with contextlib.suppress(KeyError):
                    gauge.remove(name)
        self._labelled = seen

    # -- enforcing ---------------------------------------------------------------------
    async def load(self) -> None:
        """Read the statuses (at start, before any mail is accepted)."""
        self._apply({s.tenant_id: s for s in await self.store.tenant_statuses()})

    async def refresh(self, tenant_id: str) -> None:
        """Read one tenant's status from the store and apply it now (after an operator
        changed it on this node): its queues are held or resumed, its mail refused or
        accepted, without waiting for the next evaluation."""
        rows = await self.store.tenant_statuses(tenant_id)
        statuses = dict(self._statuses)
        statuses[tenant_id] = rows[0] if rows else TenantStatus(tenant_id, OK)
        self._checked.pop(tenant_id, None)
        self._apply(statuses)

    def status(self, tenant_id: str) -> TenantStatus:
        """The status this node knows (refreshed every ``evaluate_interval``)."""
        return self._statuses.get(tenant_id) or TenantStatus(tenant_id, OK)

    async def check(self, tenant_id: str) -> None:
        """Raise :class:`SendingPaused` when the tenant is paused (ingest's gate).

        The known status answers at once; a pause is confirmed from the store (at most
        once a second per tenant), so a resume made elsewhere (the CLI, another node)
        takes effect for submissions without waiting for the next evaluation.
        """
        status = self._statuses.get(tenant_id)
        if status is None or status.status != PAUSED:
            return
        mono = time.monotonic()
        if mono - self._checked.get(tenant_id, -self.recheck) >= self.recheck:
            self._checked[tenant_id] = mono
            rows = await self.store.tenant_statuses(tenant_id)
            fresh = rows[0] if rows else TenantStatus(tenant_id, OK)
            statuses = dict(self._statuses)
            statuses[tenant_id] = fresh
            self._apply(statuses)
            status = fresh
        if status.status == PAUSED:
            raise refusal(await self._name(tenant_id), status)

    # -- running -----------------------------------------------------------------------
    async def run(self) -> None:
        """Flush every ``flush_interval`` and judge every ``evaluate_interval``."""
        cfg = self.config
        tick = max(0.05, min(cfg.flush_interval, cfg.evaluate_interval))
        next_eval = 0.0
        while True:
            try:
                if time.monotonic() >= next_eval:
                    next_eval = time.monotonic() + cfg.evaluate_interval
                    await self.evaluate()
                else:
                    await self.flush()
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:  # logged with the store's outage; tried again
                self.store.health.failed("reputation", exc)
            except Exception:
                log.exception("reputation round failed", extra={"action": "reputation.failed"})
            await asyncio.sleep(tick)

    async def close(self) -> None:
        """Write what is still counted (at shutdown, after the last outcomes)."""
        try:
            await self.flush()
        except Exception:
            log.exception("reputation counts lost", extra={"action": "reputation.flush"})
