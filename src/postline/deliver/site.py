"""A ready queue per destination: leased mail waiting for a connection to one MX site.

A *site* is one egress source × one throttle bucket × one set of MX hosts (several
domains hosted by the same provider share a site and its connections; with several
sources configured, each source has its own sites, buckets and limits). The site keeps
a small, bounded buffer of leased work, opens connections up to the bucket's connection
limit, sends each item when the bucket's rate allows, and reports every outcome to the
engine. A slow or blocked site only ever holds its own buffer, so it never delays
another destination.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING

from postline.deliver.egress import Source
from postline.deliver.work import Host, WorkItem
from postline.errors import ThrottleError
from postline.model import Reply
from postline.smtp.client import SMTPClient, SMTPClientError
from postline.throttle.rules import Destination, Limits

if TYPE_CHECKING:
    from postline.deliver.engine import DeliveryEngine

__all__ = ["Site", "buffer_limit"]

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


class Site:
    def __init__(
        self,
        engine: DeliveryEngine,
        key: str,
        destination: Destination,
        hosts: Sequence[Host],
        source: Source,
    ) -> None:
        self.engine = engine
        self.key = key
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
        self._space = asyncio.Event()
        self._space.set()
        self._rng = random.Random()
        self.sent = 0
        self.reserved = 0
        self.denied_until = 0.0

    # -- buffer ----------------------------------------------------------------------
    def max_buffer(self) -> int:
        """How much leased work may wait here: :func:`buffer_limit`, written out (this
        runs for every recipient handed over)."""
        limits = self.destination.limits
        conns = limits.connections or self.engine.default_connections
        cap = conns * 50
        if limits.rate is not None:
            held = max(1, self.engine.bucket_workers[self.bucket])
            rate = limits.rate * min(1.0, held / conns)
            cap = min(cap, max(int(rate * self.engine.buffer_window), 10))
        return max(1, min(cap, 5000))

    def capacity(self) -> int:
        if not self.workers and self.denied_until > time.monotonic():
            # Every slot of the bucket is held elsewhere (other nodes): leasing more here
            # would only park work that another node could send.
            return 0
        return self.max_buffer() - len(self.buffer)

    # -- as a lane of admission (postline.schedule.admission) ------------------------
    @property
    def lane_key(self) -> str:
        return self.key

    def room(self) -> int:
        """What admission may lease for this site now: nothing while it is held (down,
        suspended, blocked) or could not get a connection; otherwise its buffer room,
        once at least a quarter of the buffer is free (leases come in useful sizes)."""
        engine = self.engine
        if engine.held(self) or (not self.workers and engine.connection_budget() <= 0):
            return 0
        cap = self.max_buffer()
        free = self.capacity()
        return free if free >= max(1, min(cap // 4, 50)) else 0

    async def wait_space(self, timeout: float) -> None:
        self._space.clear()
        if self.capacity() > 0:
            return
        try:
            await asyncio.wait_for(self._space.wait(), timeout)
        except TimeoutError:
            pass

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
            self._space.set()
            self.engine.wake_admission()
        return item

    def spawn(self) -> None:
        limit = self.destination.limits.connections or self.engine.default_connections
        # One more connection when work waits that the idle ones cannot absorb; the
        # connection limit belongs to the throttle bucket, which several sites may share.
        while (
            self.buffer
            and self.engine.bucket_workers[self.bucket] < limit
            and len(self.buffer) > self.idle
            and self.engine.connection_budget() > 0
            and not self.engine.stopping
        ):
            task = self.engine.loop.create_task(self._worker(), name=f"site:{self.key}")
            self.workers.add(task)
            task.add_done_callback(self._worker_done)
            self.engine.reserve_connection(self.bucket)
            if len(self.buffer) <= len(self.workers):
                break

    def _worker_done(self, task: asyncio.Task[None]) -> None:
        self.workers.discard(task)
        self.engine.release_connection(self.bucket)
        if not task.cancelled() and task.exception() is not None:
            log.error(
                "delivery worker for %s failed",
                self.key,
                exc_info=task.exception(),
                extra={"action": "deliver.worker_failed"},
            )
        if self.buffer and not self.engine.stopping and not self.engine.held(self):
            self.spawn()

    def wake(self) -> None:
        self._work.set()

    async def _next(self, timeout: float) -> WorkItem | None:
        loop = self.engine.loop
        deadline = loop.time() + timeout
        while True:
            item = self._take()
            if item is not None:
                return item
            remaining = deadline - loop.time()
            if self.engine.stopping or remaining <= 0:
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
        self._space.set()
        self.engine.wake_admission()
        return items

    def drain_tenant(self, tenant_id: str) -> list[WorkItem]:
        """Take one tenant's items out of the buffer (the others keep their order)."""
        items = [i for i in self.buffer if i.message.tenant_id == tenant_id]
        if items:
            self.buffer = deque(i for i in self.buffer if i.message.tenant_id != tenant_id)
            self._space.set()
        return items

    # -- one connection --------------------------------------------------------------
    async def _connect(self) -> tuple[SMTPClient | None, Reply | None, Host | None]:
        """Try the hosts in preference order; the first session wins."""
        last: Reply | None = None
        all_permanent = True
        for host in self.hosts:
            try:
                client = await SMTPClient.connect(
                    host.address,
                    host.port,
                    ehlo_hostname=self.source.ehlo,
                    timeouts=self.engine.timeouts,
                    source_address=self.source.address,
                    server_name=host.name,
                    tls=self.engine.tls_mode,
                )
            except SMTPClientError as exc:
                last = exc.reply
                if not exc.reply.permanent:
                    all_permanent = False
                if self.engine.is_throttling(self.destination, exc.reply):
                    await self.engine.report_throttled(self)
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
        engine = self.engine
        while not engine.stopping:
            lease = await self._acquire()
            if lease is None:
                # Every slot is held (possibly by other nodes): back off, jittered.
                self.denied_until = time.monotonic() + 1.0
                await asyncio.sleep(self._rng.uniform(0.1, 0.5))
                return
            try:
                again = await self._connection(lease)
            finally:
                try:
                    await engine.throttle.release_connection(self.bucket, lease)
                except ThrottleError:
                    pass  # the lease expires by itself
            if not again or not self.buffer:
                return
            await asyncio.sleep(self._rng.uniform(0.05, 0.25))

    async def _acquire(self) -> str | None:
        engine = self.engine
        try:
            lease = await engine.throttle.acquire_connection(
                self.bucket,
                self.destination.limits.connections,
                engine.node_id,
                ttl=engine.connection_ttl,
            )
        except ThrottleError as exc:
            engine.throttle_failed(exc)
            return None
        engine.throttle_ok()
        return lease

    async def _connection(self, lease: str) -> bool:
        """One SMTP connection's worth of work; True when it ended only because it was
        full (``messages_per_connection``) and more work waits."""
        engine = self.engine
        client: SMTPClient | None = None
        host: Host | None = None
        per_conn = self.destination.limits.messages_per_connection or 100
        sent = 0
        lapsed = asyncio.Event()
        keeper = asyncio.create_task(self._keep(lease, lapsed), name=f"lease:{self.key}")
        try:
            while not engine.stopping and not lapsed.is_set():
                item = await self._next(engine.idle_timeout)
                if item is None:
                    return False
                if lapsed.is_set():
                    # The slot lapsed (or the backend is away): it may be someone else's
                    # now, so this connection ends and the item waits for another.
                    engine.release([item], now=time.time())
                    return False
                if not await self._admit(item):
                    continue
                if client is not None and not client.usable:
                    await self._hang_up(client)
                    client = None
                if client is None:
                    client, failure, host = await self._connect()
                    if client is None:
                        assert failure is not None
                        self._site_down(item, failure)
                        return False
                    engine.metrics.connections.inc()
                assert host is not None
                await self._send(client, host, item)
                sent += 1
                if sent >= per_conn:
                    # Hand the slot to another site of the bucket, or to another node.
                    return not engine.others_waiting(self)
            return False
        finally:
            keeper.cancel()
            if client is not None:
                await asyncio.shield(self._hang_up(client))

    async def _keep(self, lease: str, lapsed: asyncio.Event) -> None:
        """Renew the connection slot every third of its lifetime while the worker runs,
        however long one transaction takes; a lease that could not be renewed ends it."""
        ttl = self.engine.connection_ttl
        while True:
            await asyncio.sleep(ttl / 3)
            try:
                renewed = await self.engine.throttle.renew_connection(self.bucket, lease, ttl)
            except ThrottleError as exc:
                self.engine.throttle_failed(exc)
                renewed = False
            if not renewed:
                lapsed.set()
                return

    async def _hang_up(self, client: SMTPClient) -> None:
        """QUIT (or drop a broken session), then give the receiver a moment to see the
        close: providers count concurrent connections on their side of the wire, and a
        new connection must not overlap the one just ended."""
        self.engine.metrics.connections.dec()
        if client.usable:
            await client.quit()
        else:
            client.abort()
        await asyncio.sleep(0.05)

    async def _admit(self, item: WorkItem) -> bool:
        """Wait for the rate limit; False when the item was handed back instead."""
        engine = self.engine
        if engine.is_cancelled(item):
            return False
        now = time.time()
        if engine.tenant_held(item.message.tenant_id):
            # The tenant was paused after this was leased: back to the queue, held there.
            engine.release([item], now=now)
            return False
        if engine.lease_expiry(item) - now < engine.lease_margin:
            # The lease is running out (it could not be renewed): let the queue have the
            # work back before another node may take it.
            engine.release([item], now=now)
            return False
        # The last retry is scheduled at the deadline itself: it still goes out, and its
        # reply decides. Only a recipient that sat past its deadline (in a paused queue,
        # behind a suspension) expires without an attempt.
        cutoff = now - engine.lease_margin
        live = [r for r in item.recipients if r.expires_at > cutoff]
        if len(live) < len(item.recipients):
            engine.expire(item, [r for r in item.recipients if r.expires_at <= cutoff], now=now)
            if not live:
                return False
            item.recipients = live
        while True:
            try:
                delay = await engine.throttle.try_acquire(
                    self.bucket, self.destination.limits, len(item.recipients)
                )
                if delay > 0:
                    status = await engine.throttle.state(self.bucket)
                    if status.suspended_for > 0:
                        engine.suspend(self, status.suspended_for, [item])
                        return False
            except ThrottleError as exc:
                # Fail closed: without the shared limits nothing is sent.
                engine.throttle_failed(exc)
                delay = 1.0
            else:
                engine.throttle_ok()
            if engine.is_cancelled(item):
                return False
            if delay <= 0:
                return True
            if engine.stopping or engine.lease_expiry(item) - time.time() < engine.lease_margin:
                engine.release([item], now=time.time())
                return False
            await asyncio.sleep(min(delay, 1.0))

    async def _send(self, client: SMTPClient, host: Host, item: WorkItem) -> None:
        engine = self.engine
        rcpts = [r.address for r in item.recipients]
        started = time.monotonic()
        try:
            mail_from, body = engine.outgoing(item)
            result = await client.send(mail_from, rcpts, body)
        except SMTPClientError as exc:
            engine.metrics.attempt_seconds.observe(time.monotonic() - started)
            replies = [exc.reply] * len(rcpts)
            engine.finish(
                self, item, replies, host, client.local_address[0], after_dot=exc.after_data_dot
            )
            return
        engine.metrics.attempt_seconds.observe(time.monotonic() - started)
        self.sent += 1
        replies = list(result.outcomes())
        engine.finish(self, item, replies, host, client.local_address[0])
        if any(engine.is_throttling(self.destination, r) for r in replies):
            await engine.report_throttled(self)

    def _site_down(self, item: WorkItem, reply: Reply) -> None:
        """No host would talk: the item and everything buffered share the failure."""
        engine = self.engine
        items = [item, *self.drain()]
        if reply.transient:
            self.down_until = time.time() + engine.site_retry
        else:
            self.down_until = 0.0
        for it in items:
            engine.finish(self, it, [reply] * len(it.recipients), None, None)
        log.info(
            "destination %s unreachable: %s",
            self.key,
            reply,
            extra={"action": "deliver.site_down"},
        )
