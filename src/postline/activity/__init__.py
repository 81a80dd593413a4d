"""Traffic per minute over every tenant, for the operator's charts.

:class:`ActivityCounter` counts on one node (worker process) what it accepted and the
outcomes it wrote — delivered, deferred, bounced (or expired), complained — per minute in
memory, and adds them to the store's per-minute rows every ``flush_interval`` in one
upsert; every node adds its own share, so a minute's row is the fleet's. Reading hours of
it is one row a minute: never a scan of the message or event tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from postline.model import EventType, RecipientState
from postline.store.base import ActivityCount, ActivityStore, AttemptRecord

__all__ = ["MINUTE", "ActivityCounter", "minute_of"]

log = logging.getLogger(__name__)

MINUTE = 60.0
_PURGE_EVERY = 600.0
_ACCEPTED, _DELIVERED, _DEFERRED, _BOUNCED, _COMPLAINED = range(5)


def minute_of(at: float) -> float:
    """Start of the minute ``at`` falls in."""
    return float(int(at // MINUTE) * MINUTE)


class ActivityCounter:
    """Counts one node's traffic per minute and adds it to the store."""

    def __init__(self, store: ActivityStore, *, keep: float, flush_interval: float = 5.0) -> None:
        self.store = store
        self.keep = keep
        """Minutes older than this are dropped (by the node that runs :meth:`run` with
        ``purge``)."""
        self.flush_interval = flush_interval
        self._pending: dict[float, list[int]] = {}
        self._next_purge = 0.0

    def _add(self, at: float, slot: int, n: int = 1) -> None:
        row = self._pending.get(minute_of(at))
        if row is None:
            row = self._pending[minute_of(at)] = [0, 0, 0, 0, 0]
        row[slot] += n

    def accepted(self, recipients: int, at: float | None = None) -> None:
        """Count recipients accepted (API or SMTP)."""
        if recipients > 0:
            self._add(time.time() if at is None else at, _ACCEPTED, recipients)

    def observe(self, records: Sequence[AttemptRecord]) -> None:
        """Count written outcomes: delivered, deferred (an attempt that failed for now),
        bounced or expired. A lease handed back unused is not an outcome."""
        for r in records:
            if r.event is None:
                continue
            if r.state is RecipientState.DELIVERED:
                self._add(r.at, _DELIVERED)
            elif r.state is RecipientState.QUEUED:
                if r.counted and r.event is EventType.DEFERRED:
                    self._add(r.at, _DEFERRED)
            elif r.state in (RecipientState.BOUNCED, RecipientState.EXPIRED):
                self._add(r.at, _BOUNCED)

    def complained(self, tenant_id: str, stream: str, at: float) -> None:
        """Count one complaint (same signature as the reputation observer)."""
        del tenant_id, stream
        self._add(at, _COMPLAINED)

    async def flush(self) -> None:
        """Add what was counted since the last flush to the store (kept on failure)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        try:
            await self.store.add_activity([ActivityCount(b, *row) for b, row in pending.items()])
        except BaseException:
            for bucket, row in pending.items():
                mine = self._pending.setdefault(bucket, [0, 0, 0, 0, 0])
                for i, v in enumerate(row):
                    mine[i] += v
            raise

    async def run(self, *, purge: bool = False) -> None:
        """Flush every ``flush_interval`` (and drop old minutes when ``purge``) until
        cancelled; :meth:`close` writes the rest."""
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                await self.flush()
                now = time.time()
                if purge and now >= self._next_purge:
                    self._next_purge = now + _PURGE_EVERY
                    await self.store.purge_activity(now - self.keep)
            except Exception:
                log.warning("activity counts not written yet", extra={"action": "activity.flush"})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()
