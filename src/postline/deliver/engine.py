"""The delivery engine: per-domain leasing into per-site ready queues, and outcomes.

    scanner ──(due domains)──▶ domain loop ──(lease, sized by the site's room)──▶ Site
    ingest ───(notify)────────▶                                                   │
                                     recorder ◀──(outcomes, batched)──────────────┘

* The **scanner** asks the store which domains have due recipients every
  ``[queue] scan_interval``; ingest also wakes a domain at once when it enqueues.
* A **domain loop** resolves the domain's route (static route or MX), finds the
  :class:`~postline.deliver.site.Site` for it and leases only as many recipients as the
  site has room for. Mail for a domain whose MX lookup failed permanently bounces here;
  a temporary DNS failure defers it.
* **Sites** send (see :mod:`postline.deliver.site`). With ``[[delivery.sources]]`` each
  source has its own sites and buckets, and :mod:`postline.deliver.paths` picks the source
  of every item (pool by stream or tenant, weight, warm-up caps, provider blocks).
* The **recorder** writes outcomes in batches (group commit) right after the replies.
"""

from __future__ import annotations

import asyncio
import heapq
import ipaddress
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from postline.bounce import classify_reply, verp
from postline.bounce.policy import suppresses
from postline.config import Config
from postline.deliver.egress import Egress, Source
from postline.deliver.outcome import Decision, decide, dns_reply
from postline.deliver.paths import SourcePaths, Target
from postline.deliver.site import Host, Site, WorkItem, make_record
from postline.dns.resolver import Resolver
from postline.errors import ThrottleError
from postline.metrics import Metrics
from postline.model import EventType, RecipientState, Reply
from postline.schedule.backoff import RetryPolicy, next_attempt
from postline.smtp.client import Timeouts
from postline.store.base import (
    AttemptRecord,
    LeasedMessage,
    LeasedRecipient,
    NewMessage,
    Store,
)
from postline.throttle.base import ThrottleBackend
from postline.throttle.rules import Destination, Limits, ThrottleRules
from postline.units import format_duration

__all__ = ["DeliveryEngine"]

log = logging.getLogger(__name__)

_FAILED = frozenset({RecipientState.BOUNCED, RecipientState.EXPIRED})
_TICK = 0.25  # wake-up times of a domain closer than this share one timer


def _bounce_fields(data: dict[str, object], reply: Reply, remote: str | None) -> None:
    """The fields every ``bounced`` event has, synchronous or not."""
    data["async"] = False
    data["status"] = reply.enhanced
    data["diagnostic"] = " ".join(str(p) for p in (reply.code, reply.enhanced, reply.text) if p)
    data["remote_mta"] = remote


def _expired(data: dict[str, object]) -> None:
    """An expiry is its own bounce category; the last reply's stays as ``reply_category``."""
    if "category" in data:
        data["reply_category"] = data["category"]
    data["category"] = "expired"
    data["hard"] = False


ROUTE_TTL = 30.0


@dataclass(frozen=True, slots=True)
class _Route:
    site: Site | None
    """The site of the only source (no ``[[delivery.sources]]``)."""
    failure: Reply | None
    expires: float
    target: Target | None = None
    """With several sources: where the mail goes; a site per source on demand."""


class _DomainState:
    __slots__ = ("again", "task")

    def __init__(self) -> None:
        self.again = False
        self.task: asyncio.Task[None] | None = None


class Recorder:
    """Collects outcomes and writes them in batches; never loses one on shutdown."""

    def __init__(
        self,
        store: Store,
        node_id: str,
        metrics: Metrics,
        on_written: Callable[[Sequence[AttemptRecord]], None] | None = None,
    ) -> None:
        self._store = store
        self._node_id = node_id
        self._metrics = metrics
        self._on_written = on_written
        self._pending: list[AttemptRecord] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stop = False
        self.written = 0

    def add(self, records: Iterable[AttemptRecord]) -> None:
        recs = list(records)
        if not recs:
            return
        for r in recs:
            if r.event is not None and (r.counted or r.state is not RecipientState.QUEUED):
                self._metrics.attempts.labels(r.event.value).inc()
        self._pending.extend(recs)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                batch, self._pending = self._pending, []
                await self._write(batch)
            self._idle.set()
            if self._stop and not self._pending:
                return

    async def _write(self, batch: list[AttemptRecord]) -> None:
        delay = 0.1
        while True:
            try:
                await asyncio.shield(self._store.record(batch, node_id=self._node_id))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "could not record %d outcomes; retrying",
                    len(batch),
                    extra={"action": "deliver.record_failed"},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
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
    """Runs the scanner, the domain loops, the sites and the recorder of one node."""

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
    ) -> None:
        self.config = config
        self.store = store
        self.resolver = resolver
        self.rules = rules
        self.throttle = throttle
        self.metrics = metrics
        self.node_id = node_id
        self.rng = rng or random.Random()
        r = config.retry
        self.policy = RetryPolicy(r.first, r.multiplier, r.max_interval, r.max_age, r.jitter)
        self.timeouts = Timeouts(**config.delivery.timeouts.model_dump())
        self.helo_hostname = config.hostname
        self.source_address = config.delivery.source_address or None
        self.tls_mode = config.delivery.tls
        self.idle_timeout = config.delivery.idle_timeout
        self.lease_time = config.queue.lease_time
        self.lease_margin = min(30.0, self.lease_time / 4)
        # Seconds of sending a site buffers (see site.buffer_limit).
        self.buffer_window = min(5.0, (self.lease_time - self.lease_margin) / 2)
        self.max_lease = config.queue.max_lease
        self.connection_ttl = config.throttle.connection_lease
        self.site_retry = max(1.0, min(self.policy.first, 60.0))
        self.default_connections = 10
        self.max_connections = config.delivery.max_connections
        self.stopping = False
        self.loop = asyncio.get_event_loop_policy().get_event_loop()
        self.sites: dict[str, Site] = {}
        self._routes: dict[str, _Route] = {}
        self._domains: dict[str, _DomainState] = {}
        self._open = 0
        self.bucket_workers: Counter[str] = Counter()
        self.bucket_sites: dict[str, set[Site]] = {}
        self._suspended: dict[str, float] = {}
        self._paused: set[tuple[str, str]] = set()
        self._cancelled: dict[str, float] = {}
        self.throttle_healthy = True
        self._tasks: list[asyncio.Task[None]] = []
        self.recorder = Recorder(store, node_id, metrics, on_written=self._settled)
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
        # domain and current lease expiry: renewed while held, forgotten once written.
        self._held: dict[tuple[str, int], tuple[str, float]] = {}
        self._scan_wake = asyncio.Event()
        self._timer_wake = asyncio.Event()
        self._timers: list[tuple[float, str]] = []
        self._wake_at: dict[str, float] = {}
        # Later wake-up times per domain (rounded to _TICK), behind the one in _timers.
        self._later: dict[str, set[float]] = {}
        self.egress = Egress(config)
        self._source = self.egress.sources[0]
        # Source choice, warm-up and provider blocks: only with [[delivery.sources]].
        self.paths: SourcePaths | None = (
            SourcePaths(self, self.egress) if self.egress.explicit else None
        )

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
        self._tasks = [
            self.loop.create_task(self.recorder.run(), name="deliver:recorder"),
            self.loop.create_task(self._scan_loop(), name="deliver:scanner"),
            self.loop.create_task(self._renew_loop(), name="deliver:renew"),
            self.loop.create_task(self._timer_loop(), name="deliver:timers"),
        ]
        await self.store.listen_due(self._announced)

    def _announced(self, domains: frozenset[str]) -> None:
        """Another node queued mail (or a scheduled time came): wake those domains."""
        if not domains:
            self._scan_wake.set()
            return
        self.notify(domains)

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop leasing, let transactions in progress finish, hand back the rest."""
        self.stopping = True
        self._scan_wake.set()
        for task in self._tasks[1:]:
            task.cancel()
        if self.paths is not None:
            self.paths.cancel()
        for site in self.sites.values():
            site.wake()
        pending = [s.task for s in self._domains.values() if s.task is not None]
        for site in self.sites.values():
            pending.extend(site.workers)
        if pending:
            _, not_done = await asyncio.wait(pending, timeout=timeout)
            for task in not_done:
                task.cancel()
            if not_done:
                await asyncio.wait(not_done, timeout=2.0)
        now = time.time()
        for site in self.sites.values():
            self.release(site.drain(), now=now)
        self.recorder.stop()
        if self._tasks:
            await asyncio.wait([self._tasks[0]], timeout=timeout)
        for task in self._tasks:
            if not task.done():
                task.cancel()
        self._tasks = []

    # -- leases held in memory --------------------------------------------------------
    def hold_items(self, items: Iterable[WorkItem]) -> None:
        self._hold(items)

    def _hold(self, items: Iterable[WorkItem]) -> None:
        for item in items:
            for r in item.recipients:
                self._held[(r.message_id, r.idx)] = (item.domain, item.lease_until)

    def _settled(self, records: Sequence[AttemptRecord]) -> None:
        if self.on_recorded is not None:
            try:
                self.on_recorded(records)
            except Exception:  # an observer must never stop outcomes from settling
                log.exception("outcome observer failed", extra={"action": "deliver.observer"})
        failed = self._failed
        for r in records:
            self._held.pop((r.message_id, r.idx), None)
            if r.state is RecipientState.QUEUED and r.domain is not None:
                self.schedule(r.domain, r.next_attempt_at)
            elif failed:
                message = failed.pop((r.message_id, r.idx), None)
                if message is not None and self.on_failed is not None:
                    self.on_failed(message, r)

    # -- return path -----------------------------------------------------------------
    def per_transaction(self, site: Site, stream: str = "") -> int:
        """Recipients per SMTP transaction: one when each gets its own signed return path
        or headers naming it (List-Unsubscribe on the streams that carry it)."""
        return self.per_transaction_of(site.destination.limits, stream)

    def per_transaction_of(self, limits: Limits, stream: str = "") -> int:
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

    def _suppression(self, state: RecipientState, data: Mapping[str, object]) -> str | None:
        if state is RecipientState.BOUNCED and suppresses(
            str(data.get("category")), data.get("hard") is True
        ):
            return "hard_bounce"
        return None

    def lease_expiry(self, item: WorkItem) -> float:
        """When the earliest lease of an item's recipients runs out (renewals included)."""
        held = self._held
        return min(
            (
                held[(r.message_id, r.idx)][1]
                for r in item.recipients
                if (r.message_id, r.idx) in held
            ),
            default=item.lease_until,
        )

    async def _renew_loop(self) -> None:
        """Extend the leases of everything held (buffered, on the wire, or waiting to be
        recorded) so that no lease runs out under work in progress, however slow a
        receiver or the store is; a node that dies stops renewing and its work returns
        to the queue one lease time later."""
        interval = max(0.5, self.lease_time / 4)
        while True:
            await asyncio.sleep(interval)
            if not self._held:
                continue
            refs = [(m, i, d) for (m, i), (d, _) in self._held.items()]
            until = time.time() + self.lease_time
            for start in range(0, len(refs), 1000):
                try:
                    renewed = await self.store.renew_leases(
                        self.node_id, refs[start : start + 1000], until=until
                    )
                except Exception:
                    log.exception("lease renewal failed", extra={"action": "deliver.renew"})
                    break
                for ref in renewed:
                    if ref in self._held:
                        self._held[ref] = (self._held[ref][0], until)

    # -- connection budget (all sites of this node) ------------------------------------
    def connection_budget(self) -> int:
        return self.max_connections - self._open

    def reserve_connection(self, bucket: str) -> None:
        self._open += 1
        self.bucket_workers[bucket] += 1

    def release_connection(self, bucket: str) -> None:
        self._open -= 1
        self.bucket_workers[bucket] -= 1
        # A slot of a shared bucket came free: sites waiting for one get their turn.
        for site in self.bucket_sites.get(bucket, ()):
            if site.buffer and not self.held(site):
                site.spawn()

    def others_waiting(self, site: Site) -> bool:
        """True when another site of the same bucket has work but no connection."""
        return any(
            other is not site and other.buffer and not other.workers
            for other in self.bucket_sites.get(site.bucket, ())
        )

    def held(self, site: Site) -> bool:
        """True while the site is unreachable or its throttle bucket is suspended."""
        now = time.time()
        if site.down_until > now or self._suspended.get(site.bucket, 0.0) > now:
            return True
        paths = self.paths
        return paths is not None and bool(paths.blocked) and paths.is_blocked(site, now)

    def suspended_until(self, bucket: str) -> float:
        """When the adaptive suspension of ``bucket`` ends (0.0: not suspended)."""
        return self._suspended.get(bucket, 0.0)

    # -- direct hand-off from ingest -------------------------------------------------
    def claim(self, messages: Sequence[NewMessage], *, now: float) -> dict[str, dict[int, Any]]:
        """Recipients this engine can start on at once (see ``ingest.Dispatcher``).

        Only for domains whose route is known, whose site has room, that are neither
        held nor paused, and with no lease round running: a domain with a backlog keeps
        its order through the queue.
        """
        claims: dict[str, dict[int, Any]] = {}
        if self.stopping:
            return claims
        mono = time.monotonic()
        for m in messages:
            if m.next_attempt_at > now or (m.tenant_id, "*") in self._paused:
                continue
            for r in m.recipients:
                if r.domain in self._domains or r.suppressed is not None:
                    continue
                route = self._routes.get(r.domain)
                if route is None or route.expires < mono:
                    continue
                site = route.site
                if site is None:
                    if route.target is None or self.paths is None:
                        continue
                    site = self.paths.claim_site(route.target, m.tenant_id, m.stream, now)
                    if site is None:
                        continue
                if site.capacity() - site.reserved <= 0 or self.held(site):
                    continue
                if (m.tenant_id, r.domain) in self._paused or ("*", r.domain) in self._paused:
                    continue
                site.reserved += 1
                claims.setdefault(m.id, {})[r.idx] = site
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
                per_txn = self.per_transaction(site, m.stream)
                by_domain: dict[str, list[LeasedRecipient]] = {}
                for lr in rcpts:
                    by_domain.setdefault(lr.domain, []).append(lr)
                items = [
                    WorkItem(leased, group[i : i + per_txn], domain, lease_until)
                    for domain, group in by_domain.items()
                    for i in range(0, len(group), per_txn)
                ]
                self._hold(items)
                if self.stopping:
                    # Shutting down: back to the queue rather than into a drained site.
                    self.release(items, now=time.time())
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
            self._held.pop((r.message_id, r.idx), None)
        return True

    def set_paused(self, tenant_id: str, domain: str, paused: bool) -> None:
        """Keep the pause list of direct hand-offs in step with the API at once."""
        if domain == "*":
            self.hold_tenant(tenant_id, paused)
            return
        if paused:
            self._paused.add((tenant_id, domain))
        else:
            self._paused.discard((tenant_id, domain))
            self.activate(domain)

    def hold_tenant(self, tenant_id: str, held: bool) -> None:
        """Hold (or release) every queue of a tenant: its work buffered here goes back to
        the queue without an attempt counted (its lease ends, it keeps ageing), and the
        store leases none of it until released; a release rescans the queue."""
        if held:
            self._paused.add((tenant_id, "*"))
            now = time.time()
            for site in self.sites.values():
                self.release(site.drain_tenant(tenant_id), now=now)
        else:
            self._paused.discard((tenant_id, "*"))
            self._scan_wake.set()

    def tenant_held(self, tenant_id: str) -> bool:
        """True while every queue of the tenant is held (a reputation pause)."""
        return (tenant_id, "*") in self._paused

    # -- waking domains --------------------------------------------------------------
    def notify(self, domains: Iterable[str]) -> None:
        """Work became due now for these domains (called by ingest)."""
        for domain in domains:
            self.activate(domain)

    def activate(self, domain: str) -> None:
        if self.stopping:
            return
        state = self._domains.get(domain)
        if state is not None:
            state.again = True
            return
        state = _DomainState()
        self._domains[domain] = state
        state.task = self.loop.create_task(
            self._domain_loop(domain, state), name=f"domain:{domain}"
        )

    def schedule(self, domain: str, at: float) -> None:
        """Wake ``domain`` at ``at`` (now when it has passed)."""
        if at <= time.time():
            self.activate(domain)
            return
        at = math.ceil(at / _TICK) * _TICK
        current = self._wake_at.get(domain)
        if current is not None and current <= at:
            if at > current:
                # Kept for when the earlier wake-up has fired: each due time wakes the
                # domain, not only the first one known.
                self._later.setdefault(domain, set()).add(at)
            return
        if current is not None:
            self._later.setdefault(domain, set()).add(current)
        self._wake_at[domain] = at
        heapq.heappush(self._timers, (at, domain))
        if self._timers[0][1] == domain:
            self._timer_wake.set()

    async def _timer_loop(self) -> None:
        """Activate domains when the retries and scheduled sends this node knows of fall
        due: nothing is polled between full scans."""
        while not self.stopping:
            now = time.time()
            while self._timers and self._timers[0][0] <= now:
                at, domain = heapq.heappop(self._timers)
                if self._wake_at.get(domain) == at:
                    del self._wake_at[domain]
                    self.activate(domain)
                    later = self._later.get(domain)
                    if later:
                        later = {t for t in later if t > now}
                        if later:
                            nxt = min(later)
                            later.discard(nxt)
                            self._later[domain] = later
                            self._wake_at[domain] = nxt
                            heapq.heappush(self._timers, (nxt, domain))
                        else:
                            del self._later[domain]
                    elif later is not None:
                        del self._later[domain]
            timeout = min(60.0, self._timers[0][0] - now) if self._timers else 60.0
            self._timer_wake.clear()
            try:
                await asyncio.wait_for(self._timer_wake.wait(), max(0.0, timeout))
            except TimeoutError:
                pass

    async def _scan_loop(self) -> None:
        """Full scans of the queue, paged by domain: at start, every ``[queue]
        scan_interval`` and when told to. They find what no wake-up announced — leases
        of a node that died, mail other nodes deferred — and re-arm the timers."""
        interval = self.config.queue.scan_interval
        while not self.stopping:
            try:
                after = ""
                while True:
                    page = await self.store.due_domains(limit=5000, after=after)
                    for d in page:
                        self.schedule(d.domain, d.next_attempt_at)
                    if len(page) < 5000:
                        break
                    after = page[-1].domain
                self._paused = await self.store.paused_queues()
            except Exception:
                log.exception("queue scan failed", extra={"action": "deliver.scan_failed"})
            self._expire_routes()
            try:
                await asyncio.wait_for(self._scan_wake.wait(), interval)
            except TimeoutError:
                pass
            self._scan_wake.clear()

    def _expire_routes(self) -> None:
        now = time.monotonic()
        for domain in [d for d, r in self._routes.items() if r.expires < now]:
            del self._routes[domain]
        idle = [
            k
            for k, s in self.sites.items()
            if not s.workers and not s.buffer and now - s.last_used > 300
        ]
        for key in idle:
            site = self.sites.pop(key)
            self.bucket_sites.get(site.bucket, set()).discard(site)

    async def _domain_loop(self, domain: str, state: _DomainState) -> None:
        try:
            while not self.stopping:
                state.again = False
                more = await self._lease_round(domain)
                if not more and not state.again:
                    return
        except Exception:
            log.exception(
                "domain loop for %s failed", domain, extra={"action": "deliver.domain_failed"}
            )
        finally:
            self._domains.pop(domain, None)

    async def _lease_round(self, domain: str) -> bool:
        """Lease once for ``domain``; True when there may be more due right now."""
        route = await self.route(domain)
        now = time.time()
        if route.failure is not None:
            leased = await self.store.lease(
                domain,
                now=now,
                limit=self.max_lease,
                lease_time=self.lease_time,
                owner=self.node_id,
            )
            self._fail_without_site(leased, route.failure, domain)
            return len(leased) > 0
        site = route.site
        if site is None:
            assert route.target is not None
            assert self.paths is not None
            return await self.paths.lease_round(domain, route.target)
        if self.held(site):
            self.schedule(domain, max(site.down_until, self._suspended.get(site.bucket, 0.0)))
            return False
        room = site.capacity()
        if room <= 0:
            await site.wait_space(1.0)
            return True
        want = min(room, self.max_lease)
        leased = await self.store.lease(
            domain, now=now, limit=want, lease_time=self.lease_time, owner=self.node_id
        )
        if not leased:
            return False
        items = []
        count = 0
        until = now + self.lease_time
        for m in leased:
            count += len(m.recipients)
            per_txn = self.per_transaction(site, m.stream)
            for i in range(0, len(m.recipients), per_txn):
                items.append(WorkItem(m, m.recipients[i : i + per_txn], domain, until))
        self._hold(items)
        site.put(items)
        return count >= want

    # -- routing ---------------------------------------------------------------------
    async def route(self, domain: str) -> _Route:
        cached = self._routes.get(domain)
        if cached is not None and cached.expires > time.monotonic():
            return cached
        route = await self._resolve(domain)
        self._routes[domain] = route
        return route

    async def _resolve(self, domain: str) -> _Route:
        expires = time.monotonic() + ROUTE_TTL
        static = self._static_route(domain)
        if static is not None:
            host, port = static
            try:
                ipaddress.ip_address(host)
                addresses: Sequence[str] = (host,)
            except ValueError:
                addresses = await self.resolver.addresses(host)
            if not addresses:
                reply = dns_reply("temp_fail", domain, f"route host {host} has no address")
                return _Route(None, reply, time.monotonic() + 5.0)
            hosts = [Host(host, a, port) for a in addresses]
            site_name = f"route:{host}:{port}"
            return self._route_to(domain, (host,), site_name, hosts, expires)
        mx = await self.resolver.mx(domain)
        if mx.status != "ok":
            reply = dns_reply(mx.status, domain, mx.detail)
            ttl = 5.0 if mx.status == "temp_fail" else ROUTE_TTL
            return _Route(None, reply, time.monotonic() + ttl)
        port = self.config.delivery.smtp_port
        hosts = [Host(h.name, a, port) for h in mx.hosts for a in h.addresses]
        names = tuple(h.name for h in mx.hosts)
        return self._route_to(domain, names, mx.site, hosts, expires)

    def _route_to(
        self,
        domain: str,
        mx: tuple[str, ...],
        site_name: str,
        hosts: list[Host],
        expires: float,
    ) -> _Route:
        dest = self.rules.match(domain, mx, site_name)
        if self.paths is None:
            return _Route(self.site_of(dest, site_name, hosts, self._source), None, expires)
        return _Route(None, None, expires, Target(domain, mx, site_name, hosts, dest))

    def _static_route(self, domain: str) -> tuple[str, int] | None:
        for r in self.config.delivery.routes:
            if r.domain == domain or r.domain == "*":
                return r.host, r.port
        return None

    def site_of(self, dest: Destination, site_name: str, hosts: list[Host], source: Source) -> Site:
        """The site of ``dest`` (whose key names the source, if any) at ``site_name``."""
        key = f"{dest.key}|{site_name}"
        site = self.sites.get(key)
        if site is None:
            site = Site(self, key, dest, hosts, source)
            self.sites[key] = site
            self.bucket_sites.setdefault(site.bucket, set()).add(site)
            self.bucket_sites.setdefault(site.bucket, set()).add(site)
        else:
            site.hosts = hosts  # MX answers change; preference order is refreshed
        site.last_used = time.monotonic()
        return site

    # -- throttling ------------------------------------------------------------------
    def is_throttling(self, destination: Destination, reply: Reply) -> bool:
        return self.rules.is_throttling(destination, reply)

    def throttle_failed(self, exc: Exception) -> None:
        """The throttle backend failed a call: nothing is sent until it answers again."""
        if self.throttle_healthy:
            log.error(
                "throttle backend unavailable, sending paused: %s",
                exc,
                extra={"action": "deliver.throttle_down"},
            )
        self.throttle_healthy = False

    def throttle_ok(self) -> None:
        if not self.throttle_healthy:
            log.warning("throttle backend back", extra={"action": "deliver.throttle_up"})
        self.throttle_healthy = True

    async def report_throttled(self, site: Site) -> None:
        self.metrics.throttle_events.labels(site.destination.rule.name).inc()
        try:
            await self.throttle.report_throttled(site.bucket)
            status = await self.throttle.state(site.bucket)
        except ThrottleError as exc:
            self.throttle_failed(exc)
            return
        log.info(
            "throttled by %s: rate factor %.2f%s",
            site.bucket,
            status.factor,
            f", suspended for {status.suspended_for:.0f}s" if status.suspended_for > 0 else "",
            extra={"action": "deliver.throttled"},
        )
        if status.suspended_for > 0:
            self.suspend(site, status.suspended_for, [])

    def suspend(self, site: Site, seconds: float, items: Sequence[WorkItem]) -> None:
        """Hold a throttle bucket: the buffered work of every site in it goes back to the
        queue until the suspension ends (with several sources: at once, for the pool's
        other sources to take)."""
        now = time.time()
        self._suspended[site.bucket] = max(self._suspended.get(site.bucket, 0.0), now + seconds)
        held = list(items)
        for other in self.sites.values():
            if other.bucket == site.bucket:
                held.extend(other.drain())
        if self.paths is not None:
            self.release(held, now=now)
            return
        reply = Reply(
            451,
            f"destination suspended for {seconds:.0f}s after repeated throttling replies",
            "4.7.0",
            "THROTTLE",
            True,
        )
        records = []
        for item in held:
            for r in item.recipients:
                records.append(
                    make_record(
                        item,
                        r,
                        state=RecipientState.QUEUED,
                        event=EventType.DEFERRED,
                        at=now,
                        reply=reply,
                        next_attempt_at=now + seconds,
                        counted=False,
                        data={"reason": "suspended"},
                        owner=self.node_id,
                    )
                )
        self.recorder.add(records)

    async def throttle_state(self, domain: str) -> dict[str, Any] | None:
        # Only what is known already: an operator's listing must not wait for DNS.
        route = self._routes.get(domain)
        if route is None:
            return None
        if route.site is None:
            if route.target is None:
                return None
            target = route.target
            sources = {}
            for name, site in sorted(target.sites.items()):
                sources[name] = await self._site_state(site)
            return {"rule": target.base.rule.name, "sources": sources}
        return await self._site_state(route.site)

    async def pools_of(self, tenant_id: str, tenant_name: str = "") -> list[dict[str, Any]]:
        """The IP pools a tenant's mail can leave from (shared ones and its dedicated
        ones), each with its sources' state (see :meth:`sources_state`)."""
        states = {s["name"]: s for s in await self.sources_state()}
        streams: dict[str, list[str]] = {}
        for stream, pool_name in self.config.delivery.streams.items():
            streams.setdefault(pool_name, []).append(stream)
        out = []
        for pool in self.egress.pools.values():
            if pool.tenant and pool.tenant not in (tenant_id, tenant_name):
                continue
            out.append(
                {
                    "name": pool.name,
                    "dedicated": bool(pool.tenant),
                    "streams": sorted(streams.get(pool.name, [])),
                    "sources": [states[s.name] for s in pool.sources if s.name in states],
                }
            )
        return out

    async def sources_state(self) -> list[dict[str, Any]]:
        """Every egress source: name, address, EHLO name, weight, pools, warm-up progress
        (schedule, day of the plan, today's and this hour's count against the caps per
        destination this node sent to today) and the destinations that block it now."""
        if self.paths is not None:
            return await self.paths.state()
        only = self._source
        return [
            {
                "name": only.name,
                "address": only.address,
                "ehlo": only.ehlo,
                "weight": only.weight,
                "pools": list(only.pools),
                "warmup": None,
                "blocked": [],
            }
        ]

    async def _site_state(self, site: Site) -> dict[str, Any]:
        try:
            status = await self.throttle.state(site.bucket)
        except ThrottleError:
            return {"rule": site.destination.rule.name, "unavailable": True}
        limits = site.destination.limits
        return {
            "rule": site.destination.rule.name,
            "key": site.destination.key,
            "rate_limit": limits.rate,
            "rate_factor": round(status.factor, 3),
            "connections": status.connections,
            "connection_limit": limits.connections,
            "suspended_for": round(status.suspended_for, 1),
            "buffered": len(site.buffer),
        }

    # -- outcomes --------------------------------------------------------------------
    def finish(
        self,
        site: Site,
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
        blocked = False
        for r, reply in zip(item.recipients, replies, strict=True):
            attempts = r.attempts + 1
            d = decide(
                reply,
                attempts=attempts,
                expires_at=r.expires_at,
                now=now,
                policy=self.policy,
                rng=self.rng,
            )
            data: dict[str, object] = {"attempt": attempts, "command": reply.command}
            if host is not None:
                data["ip"] = host.address
                data["port"] = host.port
            if local_ip:
                data["local_ip"] = local_ip
            if paths is not None:
                data["source"] = site.source.name
            if reply.synthetic:
                data["synthetic"] = True
            if after_dot:
                data["after_data_dot"] = True
            if not reply.positive:
                self._classify(reply, host, data)
                if paths is not None and data.get("category") == "spam_block":
                    blocked = True
                    d = self._blocked_from(site, item, r, d, data, attempts, now)
                if d.state is RecipientState.EXPIRED:
                    _expired(data)
                elif d.state is RecipientState.BOUNCED:
                    _bounce_fields(data, reply, host.name if host else None)
            record = make_record(
                item,
                r,
                state=d.state,
                event=d.event,
                at=now,
                reply=reply,
                next_attempt_at=d.next_attempt_at,
                mx=host.name if host else None,
                data=data,
                owner=self.node_id,
                suppress=self._suppression(d.state, data),
                suppress_until=now + self.hard_bounce_ttl if self.hard_bounce_ttl else None,
            )
            self._note_failure(item, record)
            records.append(record)
        self.recorder.add(records)
        if blocked and paths is not None:
            paths.strike(site)

    def _blocked_from(
        self,
        site: Site,
        item: WorkItem,
        r: LeasedRecipient,
        d: Decision,
        data: dict[str, object],
        attempts: int,
        now: float,
    ) -> Decision:
        """A block reply (blocklist, IP reputation) judges the source, not the recipient:
        when another source of the pool may send there, the recipient is retried from it
        instead of bouncing."""
        assert self.paths is not None
        if d.state is not RecipientState.BOUNCED:
            return d
        if not self.paths.retry_elsewhere(site, item.message, r):
            return d
        when = next_attempt(
            attempts, now=now, expires_at=r.expires_at, policy=self.policy, rng=self.rng
        )
        if when is None:
            return d
        data["retry_elsewhere"] = True
        return Decision(RecipientState.QUEUED, EventType.DEFERRED, when)

    def _classify(self, reply: Reply, host: Host | None, data: dict[str, object]) -> None:
        """Bounce category and hard/soft verdict of a failure, from the shared rules."""
        try:
            verdict = classify_reply(reply, host.name if host else None)
        except Exception:  # a classifier problem must never lose an outcome
            log.exception("bounce classification failed", extra={"action": "deliver.classify"})
            return
        data["category"] = verdict.category.value
        data["hard"] = verdict.hard

    def _fail_without_site(
        self, leased: Sequence[LeasedMessage], reply: Reply, domain: str
    ) -> None:
        until = time.time() + self.lease_time
        for m in leased:
            item = WorkItem(m, m.recipients, domain, until)
            self._hold([item])
            self.finish_without_site(item, reply)

    def finish_without_site(self, item: WorkItem, reply: Reply) -> None:
        now = time.time()
        records = []
        for r in item.recipients:
            attempts = r.attempts + 1
            d = decide(
                reply,
                attempts=attempts,
                expires_at=r.expires_at,
                now=now,
                policy=self.policy,
                rng=self.rng,
            )
            data: dict[str, object] = {
                "attempt": attempts,
                "command": reply.command,
                "synthetic": True,
            }
            self._classify(reply, None, data)
            if d.state is RecipientState.EXPIRED:
                _expired(data)
            elif d.state is RecipientState.BOUNCED:
                _bounce_fields(data, reply, None)
            record = make_record(
                item,
                r,
                state=d.state,
                event=d.event,
                at=now,
                reply=reply,
                next_attempt_at=d.next_attempt_at,
                data=data,
                owner=self.node_id,
                suppress=self._suppression(d.state, data),
                suppress_until=now + self.hard_bounce_ttl if self.hard_bounce_ttl else None,
            )
            self._note_failure(item, record)
            records.append(record)
        self.recorder.add(records)

    def expire(self, item: WorkItem, recipients: Sequence[Any], *, now: float) -> None:
        reply = Reply(
            451,
            f"not delivered within {format_duration(self.policy.max_age)}",
            "4.4.7",
            "QUEUE",
            True,
        )
        records = [
            make_record(
                item,
                r,
                state=RecipientState.EXPIRED,
                event=EventType.EXPIRED,
                at=now,
                reply=reply,
                counted=False,
                data={"reason": "max_age", "category": "expired", "hard": False},
                owner=self.node_id,
            )
            for r in recipients
        ]
        for record in records:
            self._note_failure(item, record)
        self.recorder.add(records)

    def release(self, items: Sequence[WorkItem], *, now: float) -> None:
        """Hand leased work back to the queue without counting an attempt."""
        self.recorder.add(
            make_record(
                item,
                r,
                state=RecipientState.QUEUED,
                event=None,
                at=now,
                reply=None,
                next_attempt_at=now,
                counted=False,
                owner=self.node_id,
            )
            for item in items
            for r in item.recipients
        )
