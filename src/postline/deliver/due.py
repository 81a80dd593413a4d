"""Due queues: how the engine learns which queues (tenant, domain) have work due.

Every due queue enters through :meth:`DueQueues.enter`, whatever told the node:

* ingest (:meth:`~postline.deliver.engine.DeliveryEngine.notify` for new mail,
  :meth:`~postline.deliver.engine.DeliveryEngine.schedule` for a ``send_at``);
* outcomes this node wrote (a retry's time) and lease calls that drained a queue (its
  next due time);
* other nodes, through the store (:meth:`announced`);
* full scans of the queue counters (:meth:`scan_loop`): leases of a node that died,
  mail other nodes deferred;
* an operator resuming a queue.

Only the queues of this worker's share of the node's domains enter
(:class:`~postline.schedule.shares.WorkerShare`); the others belong to another worker.

A queue due now goes to ``on_due`` (the engine routes it to its lane's ring); a queue
due later waits in one timer (:class:`~postline.schedule.wakeups.Wakeups`) until
:meth:`timer_loop` hands it to ``on_due``. :attr:`DueQueues.paused` lists the held
queues; the engine keeps it in step with the store (``DeliveryEngine._load_pauses``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from postline.errors import StoreUnavailable
from postline.schedule.admission import Admission
from postline.schedule.shares import WorkerShare
from postline.schedule.wakeups import Wakeups
from postline.store.base import QueueKey, Store

__all__ = ["DueQueues"]

log = logging.getLogger(__name__)

_SCAN_DUTY = 20  # a queue scan waits at least this many times its own duration
_SCAN_PAGE = 5000  # queues per due_queues call


class DueQueues:
    """The entry of due queues, their timers and the queue scan (see module)."""

    def __init__(
        self,
        store: Store,
        node_id: str,
        scan_interval: float,
        admission: Admission[QueueKey],
        share: WorkerShare,
        on_due: Callable[[QueueKey], None],
        after_scan: Callable[[], None],
    ) -> None:
        self._store = store
        self._node_id = node_id
        self._scan_interval = scan_interval
        self._admission = admission
        self._share = share
        self._on_due = on_due
        self._after_scan = after_scan
        self.wakeups: Wakeups[QueueKey] = Wakeups()
        self.paused: set[tuple[str, str]] = set()
        """Paused queues (tenant, domain); ``"*"`` stands for every tenant or domain."""
        self.stopping = False
        self._scan_wake = asyncio.Event()
        self._timer_wake = asyncio.Event()

    # -- the entry -------------------------------------------------------------------
    def enter(self, key: QueueKey, at: float) -> None:
        """``key`` has work due at ``at`` (now when it has passed): every due queue the
        node learns of comes in here (and stays out unless this worker delivers it)."""
        if not self._share.owns(key[1]):
            return
        if at <= time.time():
            self._activate(key)
            return
        if key in self._admission and not self._admission.leasing(key):
            return  # waiting in a ring already: it is leased as soon as its lane has room
        if self.wakeups.schedule(key, at):
            self._timer_wake.set()

    def announced(self, queues: frozenset[QueueKey]) -> None:
        """Another node queued mail (or a scheduled time came): those queues are due; an
        empty set asks for a scan."""
        if not queues:
            self._scan_wake.set()
            return
        for key in queues:
            self.enter(key, 0.0)

    def rescan(self) -> None:
        """Scan the queue now (a pause was lifted)."""
        self._scan_wake.set()

    def _activate(self, key: QueueKey) -> None:
        if self.stopping:
            return
        self.wakeups.cancel(key)
        self._on_due(key)

    # -- loops -----------------------------------------------------------------------
    async def timer_loop(self) -> None:
        """Hand over queues when the retries and scheduled sends this node knows of fall
        due: nothing is polled between full scans."""
        while not self.stopping:
            now = time.time()
            for key in self.wakeups.pop_due(now):
                self._activate(key)
            nxt = self.wakeups.next_at()
            timeout = min(60.0, nxt - now) if nxt is not None else 60.0
            self._timer_wake.clear()
            try:
                await asyncio.wait_for(self._timer_wake.wait(), max(0.0, timeout))
            except TimeoutError:
                pass

    async def scan_loop(self) -> None:
        """Full scans of the queue, paged by queue: at start, every ``[queue]
        scan_interval`` and when told to. They find what no wake-up announced — leases
        of a node that died, mail other nodes deferred — and re-arm the timers.

        A scan costs one index probe per queue: with 100,000 queues, seconds of a reader
        and of this loop. So the next scan waits ``_SCAN_DUTY`` times as long as the last
        one took, if that is longer than the interval: scanning never takes more than a
        bounded share of the node, however many queues there are (what this node queues
        and defers itself is woken without a scan)."""
        interval = self._scan_interval
        while not self.stopping:
            started = time.monotonic()
            try:
                await self._scan()
            except StoreUnavailable as exc:  # logged with the store's outage
                self._store.health.failed("scan", exc)
            except Exception:
                log.exception("queue scan failed", extra={"action": "deliver.scan_failed"})
            self._after_scan()
            took = time.monotonic() - started
            try:
                await asyncio.wait_for(self._scan_wake.wait(), max(interval, took * _SCAN_DUTY))
            except TimeoutError:
                pass
            self._scan_wake.clear()

    async def _scan(self) -> None:
        after: QueueKey = ("", "")
        while True:
            page = await self._store.due_queues(owner=self._node_id, limit=_SCAN_PAGE, after=after)
            for q in page:
                if q.next_attempt_at is not None:
                    self.enter((q.tenant_id, q.domain), q.next_attempt_at)
            if len(page) < _SCAN_PAGE:
                break
            after = (page[-1].tenant_id, page[-1].domain)

    def notify(self, queues: Iterable[QueueKey]) -> None:
        """Work became due now in these queues."""
        for key in queues:
            self.enter(key, 0.0)
