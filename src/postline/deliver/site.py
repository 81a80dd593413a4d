"""A ready queue per destination: leased mail waiting for a connection to one MX site.

A *site* is one egress source × one throttle bucket × one set of MX hosts (several
domains hosted by the same provider share a site and its connections; each source of a
pool has its own sites, buckets and limits). The sites of a pool's sources towards one
destination make up one lane of admission (:class:`~postline.deliver.paths.SourceLane`),
whose room is the sum of theirs (:meth:`Site.room`). The site keeps
a small, bounded buffer of leased work, opens connections up to the bucket's connection
limit, sends each item when the bucket's rate allows, and reports every outcome to the
engine. A slow or blocked site only ever holds its own buffer, so it never delays
another destination.

:class:`Sites` keeps every site of an engine, by key and by throttle bucket, with what
they share: the node's connection budget, the connection slots held per bucket and the
buckets suspended by throttling. Sites reach the engine only through
:class:`~postline.deliver.port.EnginePort`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence

from postline.deliver.egress import Source
from postline.deliver.port import Connection, EnginePort
from postline.deliver.work import Host, WorkItem
from postline.errors import ThrottleError
from postline.model import Reply
from postline.smtp.client import SMTPClientError
from postline.throttle.rules import Destination, Limits

__all__ = ["FENCE_MARGIN", "Site", "Sites", "Slot", "buffer_limit"]

log = logging.getLogger(__name__)


def buffer_limit(limits: Limits, workers: int, default_connections: int, window: float) -> int:
    """How much leased work may wait for one site: a few seconds of sending, and never
    more than can be sent well within the lease (or it would go back unsent).

    ``workers``: connection slots this node holds in the bucket (other nodes of a fleet
    may hold the rest); ``window``: the seconds of sending to buffer (at most 5).
    """
    conns = limits.connections or default_connections
    cap = conns * 50
    if limits.rate is not None:
        # This node's share of the bucket's rate: the slots it holds out of the limit, at
        # least one slot's worth.
        rate = limits.rate * min(1.0, max(1, workers) / conns)
        cap = min(cap, max(int(rate * window), 10))
    return max(1, min(cap, 5000))


FENCE_MARGIN = 0.25
"""The share of a connection lease a holder gives up at its end: a slot is trusted until
``ttl * (1 - FENCE_MARGIN)`` after the call that last confirmed it was sent."""


class Slot:
    """One connection slot a worker holds: the lease, until when it is proven, and the
    connection that uses it.

    The backend lets a lease expire ``ttl`` after it ran the call that granted or last
    renewed it, on its clock. The holder cannot know when that was, but not earlier than
    when it sent the call: so it trusts the slot until ``ttl`` minus a margin
    (:data:`FENCE_MARGIN`) after sending it, on its own monotonic clock, and closes the
    connection at that deadline unless a renewal confirmed the slot since. The margin
    absorbs the closing and the two clocks running at different rates (a few percent at
    most). A node cut off from the backend therefore stops using a slot before the
    backend gives it to anyone else; with the Redis backend's epochs
    (:mod:`postline.throttle.redis`) the same holds when the backend lost its leases.
    """

    __slots__ = ("client", "confirmed_at", "deadline", "lapsed", "lease", "ttl")

    def __init__(self, lease: str, ttl: float, sent: float) -> None:
        self.lease = lease
        self.ttl = ttl
        self.client: Connection | None = None
        self.lapsed = False
        self.confirmed_at = sent
        self.deadline = sent + ttl * (1.0 - FENCE_MARGIN)

    def confirm(self, sent: float) -> None:
        """A renewal sent at ``sent`` (monotonic) was granted."""
        self.confirmed_at = sent
        self.deadline = max(self.deadline, sent + self.ttl * (1.0 - FENCE_MARGIN))

    def remaining(self) -> float:
        """Seconds the slot stays proven (0.0 once lapsed)."""
        if self.lapsed:
            return 0.0
        return max(0.0, self.deadline - time.monotonic())

    def proven(self) -> bool:
        return self.remaining() > 0.0

    def fence(self) -> None:
        """The slot can no longer be proven: stop using it, closing its connection now."""
        self.lapsed = True
        if self.client is not None:
            self.client.abort()


class Sites:
    """Every site of one engine, by key and by throttle bucket, and what they share: the
    node's connection budget (``[delivery] max_connections``), the connection slots held
    per bucket and the buckets suspended by throttling."""

    def __init__(self, port: EnginePort, max_connections: int) -> None:
        self.port = port
        self.by_key: dict[str, Site] = {}
        self._by_bucket: dict[str, set[Site]] = {}
        self.max_connections = max_connections
        self._open = 0
        self.workers: Counter[str] = Counter()
        """Connection slots held (workers running) per bucket on this node."""
        self._suspended: dict[str, float] = {}

    def __iter__(self) -> Iterator[Site]:
        return iter(self.by_key.values())

    def __len__(self) -> int:
        return len(self.by_key)

    def site_of(
        self,
        dest: Destination,
        site_name: str,
        hosts: list[Host],
        source: Source,
        lane_key: str | None = None,
    ) -> Site:
        """The site of ``dest`` (whose key names the source, if any) at ``site_name``, in
        the lane named ``lane_key`` (by default the site's own key)."""
        key = f"{dest.key}|{site_name}"
        site = self.by_key.get(key)
        if site is None:
            site = Site(self, key, dest, hosts, source, lane_key or key)
            self.by_key[key] = site
            self._by_bucket.setdefault(site.bucket, set()).add(site)
        else:
            site.hosts = hosts  # MX answers change; preference order is refreshed
        site.last_used = time.monotonic()
        return site

    def forget_idle(self, now: float, in_use: Callable[[Site], bool]) -> None:
        """Drop sites idle for five minutes (no worker, buffer or claim) unless
        ``in_use`` says otherwise (their lane waits in admission)."""
        idle = [
            k
            for k, s in self.by_key.items()
            if not s.workers
            and not s.buffer
            and not s.reserved
            and now - s.last_used > 300
            and not in_use(s)
        ]
        for key in idle:
            site = self.by_key.pop(key)
            self._by_bucket.get(site.bucket, set()).discard(site)

    # -- connection budget (all sites of this node) ------------------------------------
    def budget(self) -> int:
        """Connections this node may still open."""
        return self.max_connections - self._open

    def reserve(self, bucket: str) -> None:
        self._open += 1
        self.workers[bucket] += 1

    def release(self, bucket: str) -> None:
        self._open -= 1
        self.workers[bucket] -= 1
        # A slot of a shared bucket came free: sites waiting for one get their turn.
        for site in self._by_bucket.get(bucket, ()):
            if site.buffer and not self.port.barred(site):
                site.spawn()

    def others_waiting(self, site: Site) -> bool:
        """True when another site of the same bucket has work but no connection."""
        return any(
            other is not site and other.buffer and not other.workers
            for other in self._by_bucket.get(site.bucket, ())
        )

    # -- suspended buckets -----------------------------------------------------------
    def suspend(self, bucket: str, until: float) -> list[WorkItem]:
        """Suspend ``bucket`` until ``until``; the buffered work of its sites, taken out."""
        self._suspended[bucket] = max(self._suspended.get(bucket, 0.0), until)
        drained: list[WorkItem] = []
        for other in self.by_key.values():
            if other.bucket == bucket:
                drained.extend(other.drain())
        return drained

    def suspended_until(self, bucket: str) -> float:
        """When the adaptive suspension of ``bucket`` ends (0.0: not suspended)."""
        return self._suspended.get(bucket, 0.0)


class Site:
    def __init__(
        self,
        sites: Sites,
        key: str,
        destination: Destination,
        hosts: Sequence[Host],
        source: Source,
        lane_key: str,
    ) -> None:
        self.sites = sites
        self.port = sites.port
        self.key = key
        self.lane_key = lane_key
        """The lane of admission this site belongs to."""
        self.source = source
        self.bucket = destination.key
        self.destination = destination
        self.hosts = list(hosts)
        self.buffer: deque[WorkItem] = deque()
        self.workers: set[asyncio.Task[None]] = set()
        self.idle = 0
        self.down_until = 0.0
        self.last_used = time.monotonic()
        self._work = asyncio.Event()
        self._rng = random.Random()
        self.sent = 0
        self.reserved = 0
        self.denied_until = 0.0

    # -- buffer ----------------------------------------------------------------------
    def max_buffer(self) -> int:
        """How much leased work may wait here: :func:`buffer_limit`, written out (this
        runs for every recipient handed over)."""
        limits = self.destination.limits
        settings = self.port.settings
        conns = limits.connections or settings.default_connections
        cap = conns * 50
        if limits.rate is not None:
            busy = max(1, self.sites.workers[self.bucket])
            rate = limits.rate * min(1.0, busy / conns)
            cap = min(cap, max(int(rate * settings.buffer_window), 10))
        return max(1, min(cap, 5000))

    def capacity(self) -> int:
        if not self.workers and self.denied_until > time.monotonic():
            # Every slot of the bucket is held elsewhere (other nodes): leasing more here
            # would only park work that another node could send.
            return 0
        return self.max_buffer() - len(self.buffer)

    # -- its part of a lane's room (postline.schedule.admission) ----------------------
    def room(self) -> int:
        """What admission may lease for this site now: nothing while it is barred (down,
        suspended, blocked) or could not get a connection; otherwise its buffer room,
        once at least a quarter of the buffer is free (leases come in useful sizes)."""
        if self.port.barred(self) or (not self.workers and self.sites.budget() <= 0):
            return 0
        cap = self.max_buffer()
        free = self.capacity()
        return free if free >= max(1, min(cap // 4, 50)) else 0

    def put(self, items: Sequence[WorkItem]) -> None:
        self.buffer.extend(items)
        self.last_used = time.monotonic()
        self.spawn()
        self._work.set()

    def _take(self) -> WorkItem | None:
        if not self.buffer:
            return None
        item = self.buffer.popleft()
        if self.capacity() > 0:
            self.port.wake_admission()
        return item

    def spawn(self) -> None:
        sites = self.sites
        limit = self.destination.limits.connections or self.port.settings.default_connections
        # One more connection when work waits that the idle ones cannot absorb; the
        # connection limit belongs to the throttle bucket, which several sites may share.
        while (
            self.buffer
            and sites.workers[self.bucket] < limit
            and len(self.buffer) > self.idle
            and sites.budget() > 0
            and not self.port.stopping
        ):
            task = asyncio.get_running_loop().create_task(self._worker(), name=f"site:{self.key}")
            self.workers.add(task)
            task.add_done_callback(self._worker_done)
            sites.reserve(self.bucket)
            if len(self.buffer) <= len(self.workers):
                break

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self.workers.discard(task)
        self.sites.release(self.bucket)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "delivery worker for %s failed",
                self.key,
                exc_info=task.exception(),
                extra={"action": "deliver.worker_failed"},
            )
        if self.buffer and not self.port.stopping and not self.port.barred(self):
            self.spawn()

    def wake(self) -> None:
        self._work.set()

    async def _next(self, timeout: float) -> WorkItem | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            item = self._take()
            if item is not None:
                return item
            remaining = deadline - loop.time()
            if self.port.stopping or remaining <= 0:
                return None
            self._work.clear()
            self.idle += 1
            try:
                await asyncio.wait_for(self._work.wait(), remaining)
            except TimeoutError:
                return None
            finally:
                self.idle -= 1

    def drain(self) -> list[WorkItem]:
        items = list(self.buffer)
        self.buffer.clear()
        self.port.wake_admission()
        return items

    def drain_tenant(self, tenant_id: str) -> list[WorkItem]:
        """Take one tenant's items out of the buffer (the others keep their order)."""
        items = [i for i in self.buffer if i.message.tenant_id == tenant_id]
        if items:
            self.buffer = deque(i for i in self.buffer if i.message.tenant_id != tenant_id)
        return items

    # -- one connection --------------------------------------------------------------
    async def _connect(self) -> tuple[Connection | None, Reply | None, Host | None]:
        """Try the hosts in preference order; the first session wins."""
        port = self.port
        last: Reply | None = None
        all_permanent = True
        for host in self.hosts:
            try:
                client = await port.connect(host, self.source)
            except SMTPClientError as exc:
                last = exc.reply
                if not exc.reply.permanent:
                    all_permanent = False
                if port.throttle.is_throttling(self.destination, exc.reply):
                    await port.report_throttled(self)
                log.debug(
                    "connect to %s (%s) failed: %s",
                    host.name,
                    host.address,
                    exc.reply,
                    extra={"action": "deliver.connect_failed"},
                )
                continue
            except OSError as exc:
                last = Reply(
                    421, f"connection to {host.address} failed: {exc}", "4.4.1", "CONNECT", True
                )
                all_permanent = False
                continue
            return client, None, host
        if last is not None and not all_permanent and last.permanent:
            # One host refused for good, another only for now: the destination is not
            # permanently refusing, so nobody bounces on that host's word alone.
            last = Reply(451, last.text, "4.4.1", last.command, True)
        return None, last, None

    async def _worker(self) -> None:
        """Connections one after another while work waits, each under its own slot.

        A slot is held for one connection (up to ``messages_per_connection`` messages)
        and then given up for a moment, so that other nodes sharing the bucket — which
        retry every few hundred milliseconds — get their turn.
        """
        port = self.port
        while not port.stopping:
            slot = await self._acquire()
            if slot is None:
                # Every slot is held (possibly by other nodes): back off, jittered.
                self.denied_until = time.monotonic() + 1.0
                await asyncio.sleep(self._rng.uniform(0.1, 0.5))
                return
            try:
                again = await self._connection(slot)
            finally:
                try:
                    await port.throttle.backend.release_connection(self.bucket, slot.lease)
                except ThrottleError:
                    pass  # the lease expires by itself
            if not again or not self.buffer:
                return
            await asyncio.sleep(self._rng.uniform(0.05, 0.25))

    async def _acquire(self) -> Slot | None:
        port = self.port
        ttl = port.settings.connection_ttl
        sent = time.monotonic()
        try:
            lease = await port.throttle.backend.acquire_connection(
                self.bucket, self.destination.limits.connections, port.settings.node_id, ttl=ttl
            )
        except ThrottleError as exc:
            port.throttle.failed(exc)
            return None
        port.throttle.ok()
        return None if lease is None else Slot(lease, ttl, sent)

    async def _connection(self, slot: Slot) -> bool:
        """One SMTP connection's worth of work; True when it ended only because it was
        full (``messages_per_connection``) and more work waits.

        Nothing is sent, and no connection opened, unless the slot is proven (see
        :class:`Slot`); the keeper closes the connection the moment it no longer is.
        """
        port = self.port
        host: Host | None = None
        per_conn = self.destination.limits.messages_per_connection or 100
        sent = 0
        keeper = asyncio.create_task(self._keep(slot), name=f"lease:{self.key}")
        try:
            while not port.stopping and slot.proven():
                item = await self._next(port.settings.idle_timeout)
                if item is None:
                    return False
                if not slot.proven():
                    # The slot lapsed (or the backend is away): it may be someone else's
                    # now, so this connection ends and the item waits for another.
                    port.hand_back([item], now=time.time())
                    return False
                if not await self._admit(item):
                    continue
                if not slot.proven():
                    # Waiting for the rate may outlast the slot (the backend was away).
                    port.hand_back([item], now=time.time())
                    return False
                if slot.client is not None and not slot.client.usable:
                    await self._hang_up(slot)
                if slot.client is None:
                    try:
                        # Connecting may not outlive the slot: nobody could close it then.
                        async with asyncio.timeout(slot.remaining()):
                            client, failure, host = await self._connect()
                    except TimeoutError:
                        port.hand_back([item], now=time.time())
                        return False
                    if client is None:
                        assert failure is not None
                        self._site_down(item, failure)
                        return False
                    slot.client = client
                    port.metrics.connections.inc()
                    if not slot.proven():
                        port.hand_back([item], now=time.time())
                        return False
                assert host is not None
                await self._send(slot.client, host, item)
                sent += 1
                if sent >= per_conn:
                    # Hand the slot to another site of the bucket, or to another node.
                    return not self.sites.others_waiting(self)
            return False
        finally:
            keeper.cancel()
            if slot.client is not None:
                await asyncio.shield(self._hang_up(slot))

    async def _keep(self, slot: Slot) -> None:
        """Renew the connection slot every third of its lifetime while the worker runs,
        however long one transaction takes, retrying a failed renewal every second; at the
        slot's deadline without a confirmed renewal, or when the backend says the lease is
        gone, the connection is closed at once (:meth:`Slot.fence`)."""
        port = self.port
        ttl = port.settings.connection_ttl
        renew_at = slot.confirmed_at + ttl / 3
        while True:
            await asyncio.sleep(max(0.0, min(renew_at, slot.deadline) - time.monotonic()))
            if time.monotonic() >= slot.deadline:
                slot.fence()
                return
            sent = time.monotonic()
            try:
                async with asyncio.timeout(slot.remaining()):
                    renewed = await port.throttle.backend.renew_connection(
                        self.bucket, slot.lease, ttl
                    )
            except TimeoutError:
                slot.fence()
                return
            except ThrottleError as exc:
                port.throttle.failed(exc)
                renew_at = time.monotonic() + 1.0
                continue
            port.throttle.ok()
            if not renewed:
                slot.fence()
                return
            slot.confirm(sent)
            renew_at = sent + ttl / 3

    async def _hang_up(self, slot: Slot) -> None:
        """QUIT (or drop a broken session or one whose slot is no longer proven), then
        give the receiver a moment to see the close: providers count concurrent
        connections on their side of the wire, and a new connection must not overlap the
        one just ended."""
        client, slot.client = slot.client, None
        if client is None:
            return
        self.port.metrics.connections.dec()
        if client.usable and slot.proven():
            await client.quit()
        else:
            client.abort()
        await asyncio.sleep(0.05)

    async def _admit(self, item: WorkItem) -> bool:
        """Wait for the rate limit; False when the item was handed back instead."""
        port = self.port
        if not port.admit(item, time.time()):
            return False
        while True:
            try:
                delay = await port.throttle.backend.try_acquire(
                    self.bucket, self.destination.limits, len(item.recipients)
                )
                if delay > 0:
                    status = await port.throttle.backend.state(self.bucket)
                    if status.suspended_for > 0:
                        port.suspend(self, status.suspended_for, [item])
                        return False
            except ThrottleError as exc:
                # Fail closed: without the shared limits nothing is sent.
                port.throttle.failed(exc)
                delay = 1.0
            else:
                port.throttle.ok()
            if port.is_cancelled(item):
                return False
            if delay <= 0:
                return True
            if port.stopping or port.lease_expiry(item) - time.time() < port.settings.lease_margin:
                port.hand_back([item], now=time.time())
                return False
            await asyncio.sleep(min(delay, 1.0))

    async def _send(self, client: Connection, host: Host, item: WorkItem) -> None:
        port = self.port
        rcpts = [r.address for r in item.recipients]
        started = time.monotonic()
        try:
            mail_from, body = port.outgoing(item)
            result = await client.send(mail_from, rcpts, body)
        except SMTPClientError as exc:
            port.metrics.attempt_seconds.observe(time.monotonic() - started)
            replies = [exc.reply] * len(rcpts)
            port.settle(
                self, item, replies, host, client.local_address[0], after_dot=exc.after_data_dot
            )
            return
        port.metrics.attempt_seconds.observe(time.monotonic() - started)
        self.sent += 1
        replies = list(result.outcomes())
        port.settle(self, item, replies, host, client.local_address[0])
        if any(port.throttle.is_throttling(self.destination, r) for r in replies):
            await port.report_throttled(self)

    def _site_down(self, item: WorkItem, reply: Reply) -> None:
        """No host would talk: the item and everything buffered share the failure."""
        port = self.port
        items = [item, *self.drain()]
        if reply.transient:
            self.down_until = time.time() + port.settings.site_retry
        else:
            self.down_until = 0.0
        for it in items:
            port.settle(self, it, [reply] * len(it.recipients), None, None)
        log.info(
            "destination %s unreachable: %s",
            self.key,
            reply,
            extra={"action": "deliver.site_down"},
        )
