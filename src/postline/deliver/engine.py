"""The delivery engine: queues admitted into per-lane ready buffers, sent, and recorded.

    scanner ─┐                               ┌─▶ lane: a pool's sources ─▶ Sites ─▶ SMTP
    timers ──┼─▶ due queues ─▶ admission ────┤
    ingest ──┘   (per lane)   (fair rounds,  └─▶ lane: no route ─▶ bounce / defer
                              bounded lease)        │
                     recorder ◀──(outcomes, batched, written first)┘

* A **queue** is one tenant's mail to one domain. It is *due* when the store says so:
  ``[queue] scan_interval`` scans (:meth:`Store.due_queues`), wake-ups at the retry and
  ``send_at`` times this node knows of, and ingest; every due queue enters through
  :meth:`DueQueues.enter <postline.deliver.due.DueQueues.enter>` (:mod:`postline.deliver.due`).
* A due queue joins the ring of its **lane**, found by its domain's route
  (:mod:`postline.deliver.routing`): the sites of the sources towards its route's
  destination and MX site (a :class:`~postline.deliver.paths.SourceLane`; without
  ``[[delivery.sources]]`` the one implicit source), or the lane that fails mail whose
  route lookup failed (a permanent DNS failure bounces, a temporary one defers).
  Leased work goes to its sources' sites through one call,
  :meth:`SourcePaths.place <postline.deliver.paths.SourcePaths.place>`.
* **Admission** (:mod:`postline.schedule.admission`) leases for the lanes in rounds: each
  lane gets what its buffer can take now, split fairly over its queues, and the node
  never holds more than ``[queue] max_leased`` recipients (buffered, on the wire, or
  waiting to be recorded). Many queues go in one :meth:`Store.lease_many` call, and at
  most two such calls run at once: the store's writer never fills with leases.
* Sites and source paths use the engine through
  :class:`~postline.deliver.port.EnginePort`, which it implements; what each reply
  means for its recipient is decided in :mod:`postline.deliver.outcome`, and what the
  engine shows of itself is built in :mod:`postline.deliver.status`.
* The **recorder** writes outcomes in batches (group commit) right after the replies; the
  store writes them before anything else. Leases of everything leased are renewed in the
  background, so none lapses while its recipient is on the wire.
* **Stop** means flushed: no more leasing, buffered work handed back at once, transactions
  on the wire finish (until ``[node] shutdown_timeout``), every outcome is written, and
  whatever the node still holds is handed back.

Without ``[[delivery.sources]]`` the configuration is a pool of one implicit source,
leased and placed like any other. What sets that source apart is its own
(:attr:`Source.implicit <postline.deliver.egress.Source.implicit>`): its throttle bucket
keys carry no source name (a fleet upgraded node by node keeps sharing the same bucket
counters), its outcomes name no source, a suspended bucket defers its work rather than
handing it to other sources, no block strikes count against it, and the throttle view of
a domain is that one bucket's (:func:`postline.deliver.status.route_state`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from postline.bounce import verp
from postline.config import Config
from postline.deliver import status
from postline.deliver.due import DueQueues
from postline.deliver.egress import Egress, Source
from postline.deliver.outcome import (
    Attempt,
    attempt_record,
    deferred_records,
    dns_reply,
    expired_records,
    handed_back_records,
    suspended_reply,
)
from postline.deliver.paths import SourceLane, SourcePaths
from postline.deliver.port import Connection, Settings, SiteRef, ThrottleGate
from postline.deliver.routing import Route, Routes
from postline.deliver.site import Site, Sites
from postline.deliver.work import Host, WorkItem
from postline.dns.resolver import Resolver
from postline.errors import StoreUnavailable, ThrottleError
from postline.metrics import Metrics
from postline.model import EventType, RecipientState, Reply
from postline.model.times import iso
from postline.schedule.admission import Admission, Grant, Lane
from postline.schedule.backoff import RetryPolicy
from postline.schedule.shares import WorkerShare
from postline.smtp.client import SMTPClient, Timeouts
from postline.store.base import (
    AttemptRecord,
    LeasedMessage,
    LeasedRecipient,
    LeaseRequest,
    NewMessage,
    QueueKey,
    QueueLease,
    Reroute,
    Store,
)
from postline.throttle.adaptive import AdaptiveParams
from postline.throttle.base import ThrottleBackend
from postline.throttle.rules import Limits, ThrottleRules

__all__ = ["DeliveryEngine", "Drained", "Recorder"]

log = logging.getLogger(__name__)

_FAILED = frozenset({RecipientState.BOUNCED, RecipientState.EXPIRED})
_LEASE_CALLS = 2  # lease_many calls running at once
_LEASE_ROWS = 500  # recipients asked for in one lease_many call
_LEASE_QUEUES = 1000  # queues in one lease_many call
_ROUND_GAP = 0.01  # seconds between admission rounds (lets room and ready queues gather)
_RECORD_BATCH = 500  # outcomes per store write
_RECORD_BACKOFF = 1.0  # longest wait between two tries of a batch the store could not take
_RENEW_BACKOFF = 1.0  # longest wait between two tries of a renewal that failed
_UNWRITTEN_LINES = 1000  # outcomes listed one per line when a stop could not write them
_SYNTHETIC = Attempt(synthetic=True)

Connector = Callable[[Host, Source], Awaitable[Connection]]


class _NoRoute:
    """The lane of queues whose domain has no usable route: their leased recipients fail
    at once with the lookup's reply (bounced when permanent, deferred when temporary)."""

    lane_key = "no-route"

    def __init__(self, engine: DeliveryEngine) -> None:
        self.engine = engine
        self.reserved = 0

    def room(self) -> int:
        return 1000

    def put(self, items: Sequence[WorkItem]) -> None:
        routes = self.engine.routes
        for item in items:
            route = routes.get(item.domain)
            reply = route.failure if route is not None else None
            if reply is None:
                reply = dns_reply("temp_fail", item.domain, "the route changed; retried")
            self.engine.finish_without_site(item, reply)


_LOGGED = {
    EventType.DELIVERED: "deliver.delivered",
    EventType.DEFERRED: "deliver.deferred",
    EventType.BOUNCED: "deliver.bounced",
    EventType.EXPIRED: "deliver.expired",
}


_LOCAL_PART = re.compile(r"[^\s<>\"'@:;,()\[\]]+@")


def _log_outcomes(records: Sequence[AttemptRecord]) -> None:
    """One info line per final outcome and per deferral after an attempt (a recipient
    deferred by its throttle without an attempt is not logged): the message id, the
    recipient's domain (never the address: a local part quoted in the reply is masked),
    the reply and the MX host, as text and as
    fields (``[log] format = "json"``)."""
    for r in records:
        action = _LOGGED.get(r.event) if r.event is not None else None
        if action is None or (r.state is RecipientState.QUEUED and not r.counted):
            continue
        domain = r.domain or r.address.rpartition("@")[2].lower()
        text = " ".join((r.text or "").split())[:200]
        if "@" in text:  # replies often quote the address
            text = _LOCAL_PART.sub("***@", text)
        reply = " ".join(str(p) for p in (r.code, r.enhanced, text) if p)
        fields: dict[str, Any] = {
            "action": action,
            "message_id": r.message_id,
            "domain": domain,
            "mx": r.mx,
            "code": r.code,
            "enhanced": r.enhanced,
            "reply": text,
        }
        retry = ""
        if r.state is RecipientState.QUEUED:
            wait = max(0.0, r.next_attempt_at - r.at)
            fields["retry_in"] = round(wait, 1)
            retry = f"; retry in {wait:.0f}s"
        log.info(
            "message %s %s to %s via %s: %s%s",
            r.message_id,
            r.event,
            domain,
            r.mx or "-",
            reply or "-",
            retry,
            extra=fields,
        )


def _log_unwritten(records: Sequence[AttemptRecord]) -> None:
    """A stop ran out of time with outcomes the store did not take: one ERROR with the
    counts, then one WARNING per outcome (message id, recipient index, domain, what it
    was), so that an operator can tell which recipients may get a message twice."""
    states: dict[str, int] = {}
    for r in records:
        what = r.event.value if r.event is not None else "released"
        states[what] = states.get(what, 0) + 1
    log.error(
        "%d outcomes could not be written before stopping (the store did not answer): %s; "
        "their recipients stay leased to this node and are sent again when the lease "
        "ends ([queue] lease_time); those delivered get the message twice",
        len(records),
        ", ".join(f"{n} {what}" for what, n in sorted(states.items())),
        extra={"action": "deliver.stop_unrecorded", "unwritten": len(records), **states},
    )
    for r in records[:_UNWRITTEN_LINES]:
        what = r.event.value if r.event is not None else "released"
        log.warning(
            "outcome not written: message %s recipient %d at %s: %s %s",
            r.message_id,
            r.idx,
            r.domain or r.address.rpartition("@")[2].lower(),
            what,
            " ".join(str(p) for p in (r.code, r.enhanced) if p) or "-",
            extra={
                "action": "deliver.unwritten",
                "message_id": r.message_id,
                "idx": r.idx,
                "domain": r.domain,
                "outcome": what,
                "code": r.code,
            },
        )
    if len(records) > _UNWRITTEN_LINES:
        log.warning(
            "%d more outcomes not written (not listed)",
            len(records) - _UNWRITTEN_LINES,
            extra={"action": "deliver.unwritten"},
        )


@dataclass(frozen=True, slots=True)
class Drained:
    """What :meth:`DeliveryEngine.stop` drained."""

    transactions: int
    """Connections on the wire that finished their work."""
    cut_off: int
    """Connections cut off when the time ran short (their recipients handed back)."""
    outcomes: int
    """Outcomes written during the stop."""
    unwritten: int
    """Outcomes that could not be written (their recipients may be sent again)."""
    handed_back: int
    """Recipients handed back to the queue unsent (buffered, or still leased)."""

    def __str__(self) -> str:
        parts = [
            _count(self.transactions, "connection") + " finished",
            _count(self.outcomes, "outcome") + " written",
            _count(self.handed_back, "recipient") + " handed back",
        ]
        if self.cut_off:
            parts.append(_count(self.cut_off, "connection") + " cut off")
        if self.unwritten:
            parts.append(_count(self.unwritten, "outcome") + " not written")
        return ", ".join(parts)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


class Recorder:
    """Collects outcomes and writes them in batches; never loses one on shutdown.
    Every outcome worth a line is logged as it comes (at ``info``).

    A batch the store cannot take (unavailable: stopped, failing over) stays in memory
    and is written again, with backoff, until it goes in; outcomes that come meanwhile
    wait behind it. Their recipients stay leased by the engine all that time: their leases
    are renewed, never handed back, and not leased again by this node (see
    :class:`DeliveryEngine`)."""

    def __init__(
        self,
        store: Store,
        node_id: str,
        metrics: Metrics,
        on_written: Callable[[Sequence[AttemptRecord]], None] | None = None,
        lock: asyncio.Lock | None = None,
    ) -> None:
        self._store = store
        # Held while writing, shared with the lease renewals of the same recipients: two
        # statements updating one node's rows in different orders would deadlock.
        self._lock = lock or asyncio.Lock()
        self._node_id = node_id
        self._metrics = metrics
        self._on_written = on_written
        self._pending: list[AttemptRecord] = []
        self._batch: list[AttemptRecord] = []  # being written now
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stop = False
        self._writing = 0
        self.written = 0

    @property
    def pending(self) -> int:
        """Outcomes not yet written (waiting, or being written now)."""
        return len(self._pending) + self._writing

    def unwritten(self) -> list[AttemptRecord]:
        """The outcomes not yet written: the batch being written, then those waiting."""
        return [*self._batch, *self._pending]

    def add(self, records: Iterable[AttemptRecord]) -> None:
        recs = list(records)
        if not recs:
            return
        for r in recs:
            if r.event is not None and (r.counted or r.state is not RecipientState.QUEUED):
                self._metrics.attempts.labels(r.event.value).inc()
        if log.isEnabledFor(logging.INFO):
            _log_outcomes(recs)
        self._pending.extend(recs)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch = self._pending[:_RECORD_BATCH]
                del self._pending[:_RECORD_BATCH]
                self._writing = len(batch)
                self._batch = batch
                try:
                    await self._write(batch)
                finally:
                    self._writing = 0
                    self._batch = []
            self._idle.set()
            if self._stop and not self._pending:
                return

    async def _write(self, batch: list[AttemptRecord]) -> None:
        delay = 0.1
        while True:
            try:
                async with self._lock:
                    await asyncio.shield(self._store.record(batch, node_id=self._node_id))
            except asyncio.CancelledError:
                raise
            except StoreUnavailable as exc:  # logged with the store's outage
                self._store.health.failed("record", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RECORD_BACKOFF)
                continue
            except Exception:
                log.exception(
                    "could not record %d outcomes; retrying",
                    len(batch),
                    extra={"action": "deliver.record_failed"},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._store.health.ok()
            self.written += len(batch)
            if self._on_written is not None:
                self._on_written(batch)
            return

    async def flush(self) -> None:
        await self._idle.wait()

    def stop(self) -> None:
        self._stop = True
        self._wake.set()


class DeliveryEngine:
    """Runs the scanner, the timers, admission, the sites and the recorder of one node;
    implements :class:`~postline.deliver.port.EnginePort` for its sites and paths.

    ``connect`` opens an SMTP session (default: :meth:`SMTPClient.connect` with the
    configured timeouts and TLS mode).
    """

    def __init__(
        self,
        *,
        config: Config,
        store: Store,
        resolver: Resolver,
        rules: ThrottleRules,
        throttle: ThrottleBackend,
        metrics: Metrics,
        node_id: str,
        rng: random.Random | None = None,
        verp_secret: bytes = b"",
        connect: Connector | None = None,
        share: WorkerShare | None = None,
    ) -> None:
        self.config = config
        # The queues this engine delivers: its worker's share of the node's domains.
        self.share = share or WorkerShare()
        self.store = store
        self.resolver = resolver
        self.rules = rules
        self.throttle = ThrottleGate(throttle, rules)
        self.metrics = metrics
        self.node_id = node_id
        self.rng = rng or random.Random()
        r = config.retry
        self.policy = RetryPolicy(r.first, r.multiplier, r.max_interval, r.max_age, r.jitter)
        self.timeouts = Timeouts(**config.delivery.timeouts.model_dump())
        self.tls_mode = config.delivery.tls
        self._connect = connect
        self.lease_time = config.queue.lease_time
        lease_margin = min(30.0, self.lease_time / 4)
        self.settings = Settings(
            node_id=node_id,
            idle_timeout=config.delivery.idle_timeout,
            lease_margin=lease_margin,
            # Seconds of sending a site buffers (see site.buffer_limit).
            buffer_window=min(5.0, (self.lease_time - lease_margin) / 2),
            default_connections=10,
            connection_ttl=config.throttle.connection_lease,
            site_retry=max(1.0, min(self.policy.first, 60.0)),
        )
        self.max_lease = config.queue.max_lease
        self.max_leased = self.share.part(config.queue.max_leased)
        self.stopping = False
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:  # made outside a loop: start() sets the running one
            self.loop = asyncio.get_event_loop_policy().get_event_loop()
        self.sites = Sites(self, self.share.part(config.delivery.max_connections))
        self._cancelled: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._writes = asyncio.Lock()  # outcomes and lease renewals, one at a time
        self.recorder = Recorder(
            store, node_id, metrics, on_written=self._settled, lock=self._writes
        )
        b = config.bounce
        self.verp: tuple[bytes, str] | None = (
            (verp_secret, b.domain) if b.domain and verp_secret else None
        )
        self.hard_bounce_ttl = config.suppression.hard_bounce_ttl
        self.on_failed: Callable[[LeasedMessage, AttemptRecord], None] | None = None
        # Every batch of outcomes once written (reputation counts).
        self.on_recorded: Callable[[Sequence[AttemptRecord]], None] | None = None
        # Per-transaction additions to the stored message (List-Unsubscribe, DKIM).
        self.finalizer: Callable[[WorkItem], bytes] | None = None
        # Streams whose messages need one recipient per transaction (per-recipient headers).
        self.per_recipient: Callable[[str], bool] | None = None
        self._failed: dict[tuple[str, int], LeasedMessage] = {}
        # Every recipient leased by this node and not yet settled in the store, with its
        # domain and current lease expiry: renewed until written, forgotten then.
        self._leased: dict[tuple[str, int], tuple[str, float]] = {}
        # Due queues: woken at their due times, admitted to their lanes' rings.
        self.admission: Admission[QueueKey] = Admission(max_quantum=self.max_lease)
        self.due = DueQueues(
            store,
            node_id,
            config.queue.scan_interval,
            self.admission,
            self.share,
            on_due=self._due_now,
            after_scan=self._expire_routes,
        )
        self._asked = 0  # recipients asked for by lease calls now running
        self._leases: set[asyncio.Task[None]] = set()
        self._admit_wake = asyncio.Event()
        self.no_route = _NoRoute(self)
        self.egress = Egress(config)
        self.routes = Routes(config, resolver, rules, self._routed)
        # Source choice, warm-up and provider blocks (one implicit source without
        # [[delivery.sources]]).
        blocks = config.delivery.blocks
        self.paths = SourcePaths(
            self,
            self.egress,
            sites=self.sites,
            rules=rules,
            tenants=store,
            rng=self.rng,
            block_params=AdaptiveParams(
                cut_cooldown=0.0,
                strikes=blocks.suspend_after,
                strike_window=blocks.suspend_window,
                suspend_for=blocks.suspend_for,
            ),
        )
        # The lanes of admission by key: one per destination and MX site.
        self._lanes: dict[str, SourceLane] = {}
        self._stored_reroutes: list[Reroute] = []
        # The queue holds as the store had them at the last read (_load_pauses).
        self._stored_holds: set[tuple[str, str]] = set()
        self._reroute_wake = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        # Leases this node held before it stopped are in nobody's memory now.
        released = await self.store.release_leases(self.node_id, now=time.time())
        if released:
            log.info(
                "handed back %d recipients leased before restart",
                released,
                extra={"action": "deliver.release_on_start"},
            )
        await self._load_reroutes()
        await self._load_pauses()
        self._tasks = [
            self.loop.create_task(self.recorder.run(), name="deliver:recorder"),
            self.loop.create_task(self._renew_loop(), name="deliver:renew"),
            self.loop.create_task(self.due.scan_loop(), name="deliver:scanner"),
            self.loop.create_task(self.due.timer_loop(), name="deliver:timers"),
            self.loop.create_task(self._admit_loop(), name="deliver:admission"),
            self.loop.create_task(self._operator_loop(), name="deliver:operator"),
        ]
        await self.store.listen_due(self.due.announced)

    # -- reroutes (postline.control.reroutes) ----------------------------------------
    async def reroutes_changed(self) -> None:
        """An operator added or removed a reroute on this node: read them now, so the
        action answers once this node follows it."""
        await self._load_reroutes()
        self._reroute_wake.set()

    async def _load_reroutes(self) -> None:
        """Read the stored reroutes and apply those in force (kept as they were when the
        store cannot be read)."""
        try:
            self._stored_reroutes = await self.store.reroutes()
        except StoreUnavailable as exc:  # logged with the store's outage
            self.store.health.failed("scan", exc)
        except Exception:
            log.exception("reading reroutes failed", extra={"action": "deliver.reroutes_failed"})
        now = time.time()
        if self.routes.set_reroutes([r for r in self._stored_reroutes if r.active(now)]):
            log.info(
                "reroutes in force: %s",
                ", ".join(
                    f"{r.domain or r.provider} -> {r.host}:{r.port}" for r in self.routes.reroutes
                )
                or "none",
                extra={"action": "deliver.reroutes"},
            )

    async def _load_pauses(self) -> None:
        """Read the stored queue holds (operator suspensions, tenant pauses) and apply
        what changed in the store since the last read as this node's own actions would:
        a new hold takes the queue out of admission (a tenant's buffered work goes back),
        a lifted one wakes the queue. Changes are taken between two reads of the store,
        not against the holds in force here, so a hold this node applied itself while a
        read was under way is not undone by it. Kept as they were when the store cannot
        be read."""
        try:
            stored = await self.store.paused_queues()
        except StoreUnavailable as exc:  # logged with the store's outage
            self.store.health.failed("scan", exc)
            return
        except Exception:
            log.exception("reading queue holds failed", extra={"action": "deliver.holds_failed"})
            return
        before, self._stored_holds = self._stored_holds, stored
        for tenant_id, domain in stored - before:
            self.set_paused(tenant_id, domain, True)
        for tenant_id, domain in before - stored:
            self.set_paused(tenant_id, domain, False)

    async def _operator_loop(self) -> None:
        """Read the reroutes and the queue holds every ``[queue] scan_interval``, when told
        to, and when a reroute in force ends: every node of a fleet follows an operator
        within that interval (the full queue scan may run less often at depth)."""
        interval = self.config.queue.scan_interval
        while not self.stopping:
            now = time.time()
            ends = [r.until - now for r in self.routes.reroutes]
            timeout = min([interval, *ends])
            self._reroute_wake.clear()
            try:
                await asyncio.wait_for(self._reroute_wake.wait(), max(0.01, timeout))
            except TimeoutError:
                pass
            await self._load_reroutes()
            await self._load_pauses()

    @property
    def leased_count(self) -> int:
        """Recipients this node holds: leased and not yet settled in the store."""
        return len(self._leased)

    @property
    def throttle_healthy(self) -> bool:
        """False while the throttle backend fails its calls (nothing is sent then)."""
        return self.throttle.healthy

    def throttle_reason(self) -> dict[str, str] | None:
        """Why nothing is sent (for /readyz), or None while the throttle backend answers."""
        gate = self.throttle
        if gate.healthy:
            return None
        since = gate.down_since or time.time()
        return {
            "component": "throttle",
            "detail": gate.error,
            "since": iso(since),
        }

    async def stop(self, timeout: float = 30.0) -> Drained:
        """Stop leasing, hand back what waits, let transactions on the wire finish, write
        every outcome and hand back whatever is still leased — all within ``timeout``;
        returns what the stop drained."""
        deadline = time.monotonic() + timeout
        written = self.recorder.written
        handed_back = 0
        self.stopping = True
        self.due.stopping = True
        # Leasing, scanning and waking stop; the recorder and the renewals go on. Lease
        # calls already in the store finish (what they bring is handed back at once).
        for task in self._tasks[2:]:
            task.cancel()
        self.routes.stop()
        if self._leases:
            await asyncio.wait(self._leases, timeout=max(0.1, min(5.0, timeout / 6)))
        self.paths.cancel()
        now = time.time()
        for site in self.sites:
            drained = site.drain()
            handed_back += sum(len(item.recipients) for item in drained)
            self.hand_back(drained, now=now)
            site.wake()
        # Transactions on the wire finish; what is left when time runs short is cut off
        # (its recipients are handed back below: at worst sent once more).
        workers = [t for site in self.sites for t in site.workers]
        flush_time = min(10.0, timeout / 3)
        cut = 0
        if workers:
            _, not_done = await asyncio.wait(
                workers, timeout=max(0.0, deadline - flush_time - time.monotonic())
            )
            cut = len(not_done)
            for task in not_done:
                task.cancel()
            if not_done:
                await asyncio.wait(not_done, timeout=2.0)
        now = time.time()
        for site in self.sites:
            drained = site.drain()
            handed_back += sum(len(item.recipients) for item in drained)
            self.hand_back(drained, now=now)
        self.recorder.stop()
        recorder = self._tasks[0] if self._tasks else None
        if recorder is not None:
            await asyncio.wait([recorder], timeout=max(0.5, deadline - time.monotonic()))
        if self.recorder.pending:
            # The store did not take them in time (it is down): say exactly what is lost,
            # and keep the leases. Handing them back now (should the store answer just
            # then) would make recipients already delivered due at once; left alone they
            # come back one lease time later, as after a crash.
            _log_unwritten(self.recorder.unwritten())
        else:
            # Whatever is still leased to this node (cut-off transactions) is due again
            # at once, not when its lease ends.
            handed_back += await self._release_all(deadline)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=1.0)
        self._tasks = []
        return Drained(
            transactions=len(workers) - cut,
            cut_off=cut,
            outcomes=self.recorder.written - written,
            unwritten=self.recorder.pending,
            handed_back=handed_back,
        )

    async def _release_all(self, deadline: float) -> int:
        """Hand back every lease of this node (at a stop); how many."""
        try:
            released = await asyncio.wait_for(
                self.store.release_leases(self.node_id, now=time.time()),
                max(0.5, deadline - time.monotonic()),
            )
        except StoreUnavailable as exc:
            self.store.health.failed("release", exc)
            log.warning(
                "could not hand back this node's leases (%s); they come back when they expire",
                exc,
                extra={"action": "deliver.stop_release"},
            )
            return 0
        except Exception:
            log.exception(
                "could not hand back this node's leases; they come back when they expire",
                extra={"action": "deliver.stop_release"},
            )
            return 0
        if released:
            log.info(
                "handed back %d recipients on stop",
                released,
                extra={"action": "deliver.release_on_stop"},
            )
        return released

    # -- leases kept in memory --------------------------------------------------------
    def _track_leased(self, items: Iterable[WorkItem]) -> None:
        for item in items:
            for r in item.recipients:
                self._leased[(r.message_id, r.idx)] = (item.domain, item.lease_until)

    def _settled(self, records: Sequence[AttemptRecord]) -> None:
        if self.on_recorded is not None:
            try:
                self.on_recorded(records)
            except Exception:  # an observer must never stop outcomes from settling
                log.exception("outcome observer failed", extra={"action": "deliver.observer"})
        failed = self._failed
        for r in records:
            self._leased.pop((r.message_id, r.idx), None)
            if r.state is RecipientState.QUEUED and r.domain is not None:
                self.due.enter((r.tenant_id, r.domain), r.next_attempt_at)
            elif failed:
                message = failed.pop((r.message_id, r.idx), None)
                if message is not None and self.on_failed is not None:
                    self.on_failed(message, r)
        self._admit_wake.set()

    # -- return path -----------------------------------------------------------------
    def per_transaction(self, limits: Limits, stream: str = "") -> int:
        """Recipients per SMTP transaction: one when each gets its own signed return path
        or headers naming it (List-Unsubscribe on the streams that carry it)."""
        if self.verp is not None:
            return 1
        if self.per_recipient is not None and self.per_recipient(stream):
            return 1
        return limits.recipients_per_transaction or 100

    def outgoing(self, item: WorkItem) -> tuple[str, bytes]:
        """Envelope sender and the bytes to send for a transaction: the stored body,
        with what is added per recipient at send time (see ``finalizer``)."""
        body = item.message.body
        if self.finalizer is not None:
            try:
                body = self.finalizer(item)
            except Exception:  # a broken key must not stop delivery; it is logged loudly
                log.exception(
                    "could not finalize message %s; sent as stored",
                    item.message.id,
                    extra={"action": "deliver.finalize_failed"},
                )
        return self.envelope_sender(item), body

    def envelope_sender(self, item: WorkItem) -> str:
        """MAIL FROM of a transaction: the signed VERP address of its (single) recipient
        when a bounce domain is configured; a DSN keeps its null sender."""
        m = item.message
        if self.verp is None or not m.mail_from or m.source == "dsn" or len(item.recipients) != 1:
            return m.mail_from
        secret, domain = self.verp
        try:
            return verp.return_path(m.id, item.recipients[0].idx, secret, domain)
        except ValueError:
            return m.mail_from

    def _note_failure(self, item: WorkItem, record: AttemptRecord) -> None:
        """Remember the message of a final failure until its record is written, then
        hand both to ``on_failed`` (soft-bounce counting, a DSN to the sender)."""
        if self.on_failed is not None and record.state in _FAILED:
            self._failed[(record.message_id, record.idx)] = item.message

    def lease_expiry(self, item: WorkItem) -> float:
        """When the earliest lease of an item's recipients runs out (renewals included)."""
        leased = self._leased
        return min(
            (
                leased[(r.message_id, r.idx)][1]
                for r in item.recipients
                if (r.message_id, r.idx) in leased
            ),
            default=item.lease_until,
        )

    async def _renew_loop(self) -> None:
        """Extend the leases of everything leased (buffered, on the wire, or waiting to be
        recorded) so that no lease runs out under work in progress, however slow a
        receiver or the store is; a node that dies stops renewing and its work returns
        to the queue one lease time later. A renewal the store could not take is tried
        again within seconds (not a quarter lease later), so leases are extended as soon
        as the store is back from an outage or a failover."""
        interval = max(0.5, self.lease_time / 4)
        wait = interval
        delay = 0.25
        while True:
            await asyncio.sleep(wait)
            if not self._leased:
                wait = interval
                continue
            if await self._renew():
                wait, delay = interval, 0.25
            else:
                wait = min(delay, interval)
                delay = min(delay * 2, _RENEW_BACKOFF)

    async def _renew(self) -> bool:
        """Renew every lease held; False when the store did not take it all."""
        refs = [(m, i, d) for (m, i), (d, _) in self._leased.items()]
        until = time.time() + self.lease_time
        for start in range(0, len(refs), 1000):
            try:
                async with self._writes:
                    renewed = await self.store.renew_leases(
                        self.node_id, refs[start : start + 1000], until=until
                    )
            except StoreUnavailable as exc:  # logged with the store's outage
                self.store.health.failed("renew", exc)
                return False
            except Exception:
                log.exception("lease renewal failed", extra={"action": "deliver.renew"})
                return False
            self.store.health.ok()
            for ref in renewed:
                if ref in self._leased:
                    self._leased[ref] = (self._leased[ref][0], until)
        return True

    # -- the port of sites and source paths (postline.deliver.port) ------------------
    async def connect(self, host: Host, source: Source) -> Connection:
        """An SMTP session with ``host`` from ``source``."""
        if self._connect is not None:
            return await self._connect(host, source)
        return await SMTPClient.connect(
            host.address,
            host.port,
            ehlo_hostname=source.ehlo,
            timeouts=self.timeouts,
            source_address=source.address,
            server_name=host.name,
            tls=self.tls_mode,
        )

    def admit(self, item: WorkItem, now: float) -> bool:
        """Whether ``item`` may be sent (see :meth:`EnginePort.admit
        <postline.deliver.port.EnginePort.admit>`)."""
        if self.is_cancelled(item):
            return False
        margin = self.settings.lease_margin
        if self.tenant_held(item.message.tenant_id):
            # The tenant was held after this was leased: back to the queue, held there.
            self.hand_back([item], now=now)
            return False
        if self.lease_expiry(item) - now < margin:
            # The lease is running out (it could not be renewed): let the queue have the
            # work back before another node may take it.
            self.hand_back([item], now=now)
            return False
        # The last retry is scheduled at the deadline itself: it still goes out, and its
        # reply decides. Only a recipient that sat past its deadline (in a paused queue,
        # behind a suspension) expires without an attempt.
        cutoff = now - margin
        live = [r for r in item.recipients if r.expires_at > cutoff]
        if len(live) < len(item.recipients):
            self.expire(item, [r for r in item.recipients if r.expires_at <= cutoff], now=now)
            if not live:
                return False
            item.recipients = live
        return True

    def record(self, records: Iterable[AttemptRecord]) -> None:
        """Outcomes decided without an attempt (see :mod:`postline.deliver.outcome`)."""
        self.recorder.add(records)

    def barred(self, site: SiteRef) -> bool:
        """True while the site is unreachable, its throttle bucket is suspended or its
        source is blocked by the destination."""
        now = time.time()
        if site.down_until > now or self.sites.suspended_until(site.bucket) > now:
            return True
        paths = self.paths
        return bool(paths.blocked) and paths.is_blocked(site, now)

    def wake_admission(self) -> None:
        """A lane has room again (called by sites as their buffers drain)."""
        self._admit_wake.set()

    # -- throttling ------------------------------------------------------------------
    async def report_throttled(self, site: SiteRef) -> None:
        self.metrics.throttle_events.labels(site.destination.rule.name).inc()
        try:
            await self.throttle.backend.report_throttled(site.bucket)
            state = await self.throttle.backend.state(site.bucket)
        except ThrottleError as exc:
            self.throttle.failed(exc)
            return
        log.info(
            "throttled by %s: rate factor %.2f%s",
            site.bucket,
            state.factor,
            f", suspended for {state.suspended_for:.0f}s" if state.suspended_for > 0 else "",
            extra={"action": "deliver.throttled"},
        )
        if state.suspended_for > 0:
            self.suspend(site, state.suspended_for, [])

    def suspend(self, site: SiteRef, seconds: float, items: Sequence[WorkItem]) -> None:
        """Hold a throttle bucket: the buffered work of every site in it goes back to the
        queue, at once for the pool's other sources to take, or (the implicit source,
        which has no other) deferred until the suspension ends."""
        now = time.time()
        back = list(items)
        back.extend(self.sites.suspend(site.bucket, now + seconds))
        if not site.source.implicit:
            self.hand_back(back, now=now)
            return
        reply = suspended_reply(seconds)
        data = {"reason": "suspended"}
        records = []
        for item in back:
            records.extend(
                deferred_records(
                    item, reply, now=now, until=now + seconds, data=data, owner=self.node_id
                )
            )
        self.recorder.add(records)

    # -- views (postline.deliver.status) --------------------------------------------
    async def throttle_state(self, domain: str) -> dict[str, Any] | None:
        """The throttle state of ``domain``'s route; only what is known already: an
        operator's listing must not wait for DNS."""
        return await status.route_state(
            self.routes.get(domain), self.throttle.backend, self.egress.implicit
        )

    async def sites_of(self, domains: Sequence[str], resolve: float = 0.0) -> dict[str, Any]:
        """The MX site and throttle bucket of each of ``domains`` as this engine knows
        them, with each bucket's state (:func:`status.sites_of
        <postline.deliver.status.sites_of>`). The routes not known yet are looked up,
        waiting at most ``resolve`` seconds in all for them (0: not at all; they are
        known to the next call)."""
        await self.routes.learn(domains, resolve)
        return await status.sites_of(
            {d: self.routes.get(d) for d in domains},
            self.throttle.backend,
            self.egress.implicit,
            self.paths.barred_until,
            time.time(),
        )

    async def pools_of(self, tenant_id: str, tenant_name: str = "") -> list[dict[str, Any]]:
        """The IP pools a tenant's mail can leave from (shared ones and its dedicated
        ones), each with its sources' state (see :meth:`sources_state`)."""
        states = await self.sources_state()
        return status.pools_of(
            self.egress, self.config.delivery.streams, states, tenant_id, tenant_name
        )

    async def sources_state(self) -> list[dict[str, Any]]:
        """Every egress source: name, address, EHLO name, weight, pools, warm-up progress
        (schedule, day of the plan, today's and this hour's count against the caps per
        destination this node sent to today) and the destinations that block it now."""
        return await self.paths.state()

    # -- direct hand-off from ingest -------------------------------------------------
    def budget(self) -> int:
        """Recipients this node may still lease: ``[queue] max_leased`` less what it holds
        and what running lease calls asked for."""
        return self.max_leased - len(self._leased) - self._asked

    def claim(self, messages: Sequence[NewMessage], *, now: float) -> dict[str, dict[int, Any]]:
        """Recipients this engine can start on at once (see ``ingest.Dispatcher``).

        Only for queues with nothing waiting (a queue with a backlog keeps its order
        through the store), whose route is known, whose site has room, that are neither
        barred nor held, and within the node's lease budget.
        """
        claims: dict[str, dict[int, Any]] = {}
        if self.stopping:
            return claims
        budget = self.budget()
        if budget <= 0:
            return claims
        mono = time.monotonic()
        admission = self.admission
        paused = self.due.paused
        for m in messages:
            if m.next_attempt_at > now or (m.tenant_id, "*") in self.due.paused:
                continue
            for r in m.recipients:
                if r.suppressed is not None:
                    continue
                key = (m.tenant_id, r.domain)
                if key in admission or admission.leasing(key):
                    continue
                route = self.routes.get(r.domain)
                if route is None or route.expires < mono:
                    if route is None and not self.share.owns(r.domain):
                        # Fresh mail goes out through the worker that took it; the route of
                        # a domain another worker owns is learnt for the next message.
                        self.routes.look_up(r.domain, None)
                    continue
                target = route.target
                if target is None:
                    continue
                site = self.paths.claim_site(target, m.tenant_id, m.stream, now)
                if site is None:
                    continue
                # Room left on the site: less what other claims and lease calls of its
                # lane are bringing.
                lane = self._lanes.get(target.lane_key)
                leasing = lane.reserved if lane is not None else 0
                if site.capacity() - site.reserved - leasing <= 0 or self.barred(site):
                    continue
                if (m.tenant_id, r.domain) in paused or ("*", r.domain) in paused:
                    continue
                site.reserved += 1
                claims.setdefault(m.id, {})[r.idx] = site
                budget -= 1
                if budget <= 0:
                    return claims
        return claims

    def unclaim(self, claims: Mapping[str, Mapping[int, Any]]) -> None:
        for per_message in claims.values():
            for site in per_message.values():
                site.reserved -= 1

    def take(
        self,
        messages: Sequence[NewMessage],
        claims: Mapping[str, Mapping[int, Any]],
        *,
        lease_until: float,
    ) -> None:
        """Queue claimed recipients on their sites; the store has them leased to us."""
        for m in messages:
            mine = claims.get(m.id)
            if not mine:
                continue
            by_site: dict[Site, list[LeasedRecipient]] = {}
            for r in m.recipients:
                site = mine.get(r.idx)
                if site is None:
                    continue
                site.reserved -= 1
                by_site.setdefault(site, []).append(
                    LeasedRecipient(
                        m.id, r.idx, m.tenant_id, r.address, r.domain, 0, m.created_at, m.expires_at
                    )
                )
            for site, rcpts in by_site.items():
                leased = LeasedMessage(
                    m.id,
                    m.tenant_id,
                    m.mail_from,
                    m.body,
                    m.message_id_header,
                    rcpts,
                    source=m.source,
                    stream=m.stream,
                )
                per_txn = self.per_transaction(site.destination.limits, m.stream)
                by_domain: dict[str, list[LeasedRecipient]] = {}
                for lr in rcpts:
                    by_domain.setdefault(lr.domain, []).append(lr)
                items = [
                    WorkItem(leased, group[i : i + per_txn], domain, lease_until)
                    for domain, group in by_domain.items()
                    for i in range(0, len(group), per_txn)
                ]
                self._track_leased(items)
                if self.stopping:
                    # Shutting down: back to the queue rather than into a drained site.
                    self.hand_back(items, now=time.time())
                else:
                    site.put(items)

    def cancelled(self, message_id: str) -> None:
        """A message was cancelled: its work still buffered here must not go out."""
        now = time.monotonic()
        self._cancelled[message_id] = now + self.lease_time
        if len(self._cancelled) > 10_000:
            for mid in [m for m, until in self._cancelled.items() if until < now]:
                del self._cancelled[mid]

    def is_cancelled(self, item: WorkItem) -> bool:
        """True (and the item forgotten) when its message was cancelled meanwhile."""
        until = self._cancelled.get(item.message.id)
        if until is None:
            return False
        if until < time.monotonic():
            del self._cancelled[item.message.id]
            return False
        for r in item.recipients:
            self._leased.pop((r.message_id, r.idx), None)
        return True

    def set_paused(self, tenant_id: str, domain: str, paused: bool) -> None:
        """Keep the pause list of direct hand-offs in step with the API at once."""
        if domain == "*":
            self.hold_tenant(tenant_id, paused)
            return
        if paused:
            self.due.paused.add((tenant_id, domain))
            self.admission.discard((tenant_id, domain))
        else:
            self.due.paused.discard((tenant_id, domain))
            if tenant_id == "*":
                self.due.rescan()
            else:
                self.due.enter((tenant_id, domain), 0.0)

    def hold_tenant(self, tenant_id: str, held: bool) -> None:
        """Hold every queue of a tenant (or lift the hold): its work buffered here goes
        back to the queue without an attempt counted (its lease ends, it keeps ageing), and
        the store leases none of it until the hold is lifted, which rescans the queue."""
        if held:
            self.due.paused.add((tenant_id, "*"))
            for key in self.admission.queues():
                if key[0] == tenant_id:
                    self.admission.discard(key)
            now = time.time()
            for site in self.sites:
                self.hand_back(site.drain_tenant(tenant_id), now=now)
        else:
            self.due.paused.discard((tenant_id, "*"))
            self.due.rescan()

    def tenant_held(self, tenant_id: str) -> bool:
        """True while every queue of the tenant is held (a reputation pause)."""
        return (tenant_id, "*") in self.due.paused

    # -- due queues (postline.deliver.due) -------------------------------------------
    def notify(self, queues: Iterable[QueueKey]) -> None:
        """Work became due now in these queues (called by ingest)."""
        self.due.notify(queues)

    def schedule(self, key: QueueKey, at: float) -> None:
        """Wake ``key`` at ``at`` (now when it has passed)."""
        self.due.enter(key, at)

    def _due_now(self, key: QueueKey) -> None:
        """``key`` has due work: into its lane's ring (its route looked up first when not
        known)."""
        if self.stopping:
            return
        domain = key[1]
        route = self.routes.get(domain)
        if route is None or route.expires < time.monotonic():
            self.routes.look_up(domain, key)
            if route is None:
                return
        self.admission.ready(key, self._lane_of(route))
        self._admit_wake.set()

    def _routed(self, route: Route, keys: set[QueueKey]) -> None:
        """A route looked up in the background: the queues that waited for it join its
        lane's ring."""
        lane = self._lane_of(route)
        for key in keys:
            self.admission.ready(key, lane)
        self._admit_wake.set()

    def _expire_routes(self) -> None:
        """Forget expired routes, idle sites and the lanes no queue waits for."""
        now = time.monotonic()
        self.routes.expire(now)
        has_lane = self.admission.has_lane
        self.sites.forget_idle(now, lambda s: has_lane(s.lane_key))
        for key in [k for k, lane in self._lanes.items() if not lane.reserved and not has_lane(k)]:
            del self._lanes[key]

    # -- admission -------------------------------------------------------------------
    async def _admit_loop(self) -> None:
        """Rounds of admission (see :mod:`postline.schedule.admission`): lease what the
        lanes can take now, at most ``_LEASE_CALLS`` store calls at once."""
        while not self.stopping:
            self._admit_wake.clear()
            grants: list[Grant[QueueKey]] = []
            if len(self._leases) < _LEASE_CALLS:
                budget = self.budget()
                if budget > 0 and len(self.admission):
                    grants = self.admission.plan(
                        budget, max_rows=_LEASE_ROWS, max_queues=_LEASE_QUEUES
                    )
            if grants:
                self._asked += sum(g.limit for g in grants)
                task = self.loop.create_task(self._lease(grants), name="deliver:lease")
                self._leases.add(task)
                task.add_done_callback(self._lease_done)
                await asyncio.sleep(_ROUND_GAP)
                continue
            if not len(self.admission) and not self._leases:
                # Nothing is ready: sleep until a queue becomes ready (an idle node
                # with millions deferred stays idle).
                await self._admit_wake.wait()
            else:
                try:
                    await asyncio.wait_for(self._admit_wake.wait(), 0.5)
                except TimeoutError:
                    pass
            await asyncio.sleep(_ROUND_GAP)

    def _lease_done(self, task: asyncio.Task[None]) -> None:
        self._leases.discard(task)
        self._admit_wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "lease round failed",
                exc_info=task.exception(),
                extra={"action": "deliver.lease_failed"},
            )

    async def _lease(self, grants: list[Grant[QueueKey]]) -> None:
        """One lease call for a round's grants; its work goes to the grants' lanes."""
        asked = sum(g.limit for g in grants)
        now = time.time()
        requests = [LeaseRequest(g.key[0], g.key[1], g.limit) for g in grants]
        try:
            results = await self.store.lease_many(
                requests, now=now, lease_time=self.lease_time, owner=self.node_id
            )
        except Exception as exc:
            self._asked -= asked
            for g in grants:
                self.admission.done(g, drained=False)
            if isinstance(exc, StoreUnavailable):  # logged with the store's outage
                self.store.health.failed("lease", exc)
            else:
                log.exception("lease failed", extra={"action": "deliver.lease_failed"})
            await asyncio.sleep(1.0)
            return
        self.store.health.ok()
        self._asked -= asked
        until = now + self.lease_time
        for grant, got in zip(grants, results, strict=True):
            self.admission.done(grant, drained=got.drained)
            if got.drained and got.next_due is not None:
                self.due.enter(grant.key, got.next_due)
            if got.count:
                self._hand_over(grant, got, until)

    def _hand_over(self, grant: Grant[QueueKey], got: QueueLease, until: float) -> None:
        """Give leased work to the lane of its domain's route now (where it was granted,
        unless the route changed meanwhile)."""
        domain = grant.key[1]
        route = self.routes.get(domain)
        target = route.target if route is not None else None
        items = []
        leased = self._leased
        for m in got.messages:
            rcpts = m.recipients
            if leased and any((r.message_id, r.idx) in leased for r in rcpts):
                # Leased again while this node still holds them (their lease ran out
                # while the store was away, their outcome is not written yet, or they
                # are still buffered or on the wire): the lease is extended, nothing is
                # sent twice; the outcome kept here settles them.
                rcpts = []
                for r in m.recipients:
                    ref = (r.message_id, r.idx)
                    if ref in leased:
                        leased[ref] = (leased[ref][0], max(leased[ref][1], until))
                    else:
                        rcpts.append(r)
                if not rcpts:
                    continue
            if target is not None:
                per_txn = self.per_transaction(target.base.limits, m.stream)
            else:
                per_txn = len(rcpts)
            for i in range(0, len(rcpts), per_txn):
                items.append(WorkItem(m, rcpts[i : i + per_txn], domain, until))
        self._track_leased(items)
        if self.stopping or route is None:
            self.hand_back(items, now=time.time())
            return
        lane = self._lane_of(route)
        if lane is not grant.lane and grant.key in self.admission:
            self.admission.ready(grant.key, lane)
        if target is not None:
            self.paths.place(target, items)
        else:
            self.no_route.put(items)

    def _lane_of(self, route: Route) -> Lane:
        """The lane of a route: its destination's sources, or the no-route lane."""
        target = route.target
        if target is None:
            return self.no_route
        lane = self._lanes.get(target.lane_key)
        if lane is None:
            lane = self._lanes[target.lane_key] = SourceLane(self.paths, target)
        else:
            lane.target = target
        return lane

    # -- outcomes --------------------------------------------------------------------
    def settle(
        self,
        site: SiteRef,
        item: WorkItem,
        replies: Sequence[Reply],
        host: Host | None,
        local_ip: str | None,
        *,
        after_dot: bool = False,
    ) -> None:
        now = time.time()
        records = []
        paths = self.paths
        named = not site.source.implicit  # blocks strike, outcomes name the source
        attempt = Attempt(host, local_ip, site.source.name if named else None, after_dot)
        elsewhere = None
        if named:
            message = item.message

            def elsewhere(r: LeasedRecipient) -> bool:
                return paths.retry_elsewhere(site, message, r)

        blocked = False
        for r, reply in zip(item.recipients, replies, strict=True):
            record, block = attempt_record(
                item,
                r,
                reply,
                attempt,
                now=now,
                policy=self.policy,
                rng=self.rng,
                owner=self.node_id,
                hard_bounce_ttl=self.hard_bounce_ttl,
                elsewhere=elsewhere,
            )
            blocked = blocked or block
            self._note_failure(item, record)
            records.append(record)
        self.recorder.add(records)
        if blocked and named:
            paths.strike(site)

    def finish_without_site(self, item: WorkItem, reply: Reply) -> None:
        now = time.time()
        records = []
        for r in item.recipients:
            record, _ = attempt_record(
                item,
                r,
                reply,
                _SYNTHETIC,
                now=now,
                policy=self.policy,
                rng=self.rng,
                owner=self.node_id,
                hard_bounce_ttl=self.hard_bounce_ttl,
            )
            self._note_failure(item, record)
            records.append(record)
        self.recorder.add(records)

    def expire(self, item: WorkItem, recipients: Sequence[LeasedRecipient], *, now: float) -> None:
        records = expired_records(
            item, recipients, now=now, max_age=self.policy.max_age, owner=self.node_id
        )
        for record in records:
            self._note_failure(item, record)
        self.recorder.add(records)

    def hand_back(self, items: Sequence[WorkItem], *, now: float) -> None:
        """Hand leased work back to the queue without counting an attempt."""
        self.recorder.add(handed_back_records(items, now=now, owner=self.node_id))
