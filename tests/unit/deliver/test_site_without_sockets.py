"""A site at work through the engine's port, with a fake SMTP session: no sockets.

The site is real (buffer, workers, connection slots, rate and slot calls to a real
:class:`MemoryThrottleBackend`); the port records what the site tells the engine, and
holds a throttled bucket the way the engine does (through :meth:`Sites.suspend`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence

from postline.config import load_config
from postline.deliver.egress import Egress, Source
from postline.deliver.port import Connection, Settings, SiteRef, ThrottleGate
from postline.deliver.site import Site, Sites
from postline.deliver.work import Host, WorkItem
from postline.metrics import Metrics
from postline.model import Reply
from postline.smtp.client import TransactionResult
from postline.store.base import AttemptRecord, LeasedMessage, LeasedRecipient
from postline.throttle.memory import MemoryThrottleBackend
from postline.throttle.rules import ThrottleRules

OK = Reply(250, "ok", "2.0.0", "DATA")
HOSTS = [Host("mx1.x.test", "192.0.2.1", 25), Host("mx2.x.test", "192.0.2.2", 25)]


class FakeConnection:
    """An SMTP session that accepts every recipient (or answers ``reply`` to each)."""

    def __init__(
        self,
        host: Host,
        reply: Reply = OK,
        open_now: list[int] | None = None,
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        self.host = host
        self.reply = reply
        self.sent: list[tuple[str, list[str], bytes]] = []
        self.usable = True
        self.local_address = ("10.0.0.1", 40000)
        self.ended = ""
        self._open = open_now
        self._gate = gate

    async def send(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionResult:
        if self._gate is not None:
            await self._gate.acquire()  # one permit per transaction
        await asyncio.sleep(0.01)
        self.sent.append((mail_from, list(recipients), data))
        replies = tuple(self.reply for _ in recipients)
        return TransactionResult(
            Reply(250, "ok"), replies, self.reply if self.reply.positive else None
        )

    async def quit(self) -> None:
        self.usable = False
        self.ended = "quit"
        if self._open is not None:
            self._open[0] -= 1

    def abort(self) -> None:
        self.usable = False
        self.ended = "abort"
        if self._open is not None:
            self._open[0] -= 1


class Port:
    """The engine's side of the port, recording what the sites tell it."""

    def __init__(
        self,
        rules: ThrottleRules,
        *,
        refuse: BaseException | None = None,
        reply: Reply = OK,
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        self.settings = Settings(
            node_id="node-1",
            idle_timeout=0.1,
            lease_margin=1.0,
            buffer_window=5.0,
            default_connections=10,
            connection_ttl=30.0,
            site_retry=5.0,
        )
        self.throttle = ThrottleGate(MemoryThrottleBackend(), rules)
        self.metrics = Metrics()
        self.stopping = False
        self.refuse = refuse
        self.reply = reply
        self.gate = gate
        self.sites: Sites | None = None
        self.throttled: list[str] = []
        self.connections: list[FakeConnection] = []
        self.open_now = [0]
        self.most_open = 0
        self.settled: list[tuple[WorkItem, list[Reply], Host | None]] = []
        self.released: list[WorkItem] = []
        self.woken = 0

    async def connect(self, host: Host, source: Source) -> Connection:
        await asyncio.sleep(0)
        if self.refuse is not None:
            raise self.refuse
        conn = FakeConnection(host, self.reply, self.open_now, self.gate)
        self.connections.append(conn)
        self.open_now[0] += 1
        self.most_open = max(self.most_open, self.open_now[0])
        return conn

    def outgoing(self, item: WorkItem) -> tuple[str, bytes]:
        return item.message.mail_from, item.message.body

    def admit(self, item: WorkItem, now: float) -> bool:
        return True

    def is_cancelled(self, item: WorkItem) -> bool:
        return False

    def lease_expiry(self, item: WorkItem) -> float:
        return item.lease_until

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
        self.settled.append((item, list(replies), host))

    def hand_back(self, items: Sequence[WorkItem], *, now: float) -> None:
        self.released.extend(items)

    def record(self, records: Iterable[AttemptRecord]) -> None:
        pass

    async def report_throttled(self, site: SiteRef) -> None:
        self.throttled.append(site.bucket)
        self.suspend(site, 60.0, [])

    def suspend(self, site: SiteRef, seconds: float, items: Sequence[WorkItem]) -> None:
        self.released.extend(items)
        if self.sites is not None:
            self.released.extend(self.sites.suspend(site.bucket, time.time() + seconds))

    def barred(self, site: SiteRef) -> bool:
        now = time.time()
        suspended = self.sites is not None and self.sites.suspended_until(site.bucket) > now
        return site.down_until > now or suspended

    def wake_admission(self) -> None:
        self.woken += 1


def _source() -> Source:
    return Egress(load_config(text="", environ={})).sources[0]


def _items(n: int, rcpts: int = 1) -> list[WorkItem]:
    out = []
    for m in range(n):
        mid = f"m{m}"
        rs = [
            LeasedRecipient(mid, i, "t1", f"u{i}@x.test", "x.test", 0, 0.0, time.time() + 3600)
            for i in range(rcpts)
        ]
        msg = LeasedMessage(mid, "t1", "s@y.test", b"body", f"<{mid}@y.test>", rs)
        out.append(WorkItem(msg, rs, "x.test", time.time() + 300))
    return out


def _site(port: Port, rules: ThrottleRules) -> tuple[Sites, Site]:
    sites = Sites(port, max_connections=20)
    port.sites = sites
    dest = rules.match("x.test", ("mx1.x.test",), "mx:x.test")
    return sites, sites.site_of(dest, "mx:x.test", list(HOSTS), _source())


async def _until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_buffered_work_is_sent_and_settled_and_the_slot_given_back() -> None:
    rules = ThrottleRules.load([])
    port = Port(rules)
    sites, site = _site(port, rules)
    items = _items(3, rcpts=2)
    site.put(items)
    await _until(lambda: len(port.settled) == 3)
    assert sorted(i.message.id for i, _, _ in port.settled) == ["m0", "m1", "m2"]
    assert all(replies == [OK, OK] and host == HOSTS[0] for _, replies, host in port.settled)
    sent = [s for c in port.connections for s in c.sent]
    assert sorted(r for _, rcpts, _ in sent for r in rcpts) == ["u0@x.test"] * 3 + ["u1@x.test"] * 3
    # Idle connections end (QUIT) and give their slots back.
    await _until(lambda: not site.workers)
    assert all(c.ended == "quit" for c in port.connections)
    assert sites.workers[site.bucket] == 0 and sites.budget() == 20
    assert not site.buffer and site.sent == 3


async def test_a_bucket_connection_limit_holds_across_workers() -> None:
    rules = ThrottleRules.load([{"name": "one", "domains": ["x.test"], "connections": 1}])
    port = Port(rules)
    _, site = _site(port, rules)
    assert site.destination.limits.connections == 1
    site.put(_items(5))
    await _until(lambda: len(port.settled) == 5)
    assert port.most_open == 1
    await _until(lambda: not site.workers)


async def test_no_host_talks_everything_buffered_shares_the_failure() -> None:
    rules = ThrottleRules.load([])
    port = Port(rules, refuse=OSError("connection refused"))
    _, site = _site(port, rules)
    items = _items(3)
    site.put(items)
    await _until(lambda: len(port.settled) == 3)
    assert {i.message.id for i, _, _ in port.settled} == {i.message.id for i in items}
    for _, replies, host in port.settled:
        assert host is None and replies[0].code == 421 and replies[0].transient
    assert site.down_until > time.time()
    assert port.barred(site) and site.room() == 0


async def test_room_follows_the_buffer_and_draining_wakes_admission() -> None:
    rules = ThrottleRules.load([])
    port = Port(rules)
    port.stopping = True  # no workers: the buffer only fills
    _, site = _site(port, rules)
    room = site.room()
    assert room == site.max_buffer() > 0
    site.put(_items(room))
    assert site.room() == 0 and site.capacity() == 0
    drained = site.drain()
    assert len(drained) == room and port.woken == 1 and site.room() == room


async def test_room_is_given_in_useful_sizes_and_not_without_a_connection() -> None:
    rules = ThrottleRules.load([{"name": "two", "domains": ["x.test"], "connections": 2}])
    port = Port(rules)
    port.stopping = True  # no workers: the buffer only fills
    sites, site = _site(port, rules)
    cap = site.max_buffer()
    assert cap == 100  # 50 per connection of the bucket
    site.put(_items(cap - 26))
    assert site.room() == 26 and site.capacity() == 26
    site.put(_items(2))
    # Less than a quarter of the buffer free: nothing until more has gone out.
    assert site.capacity() == 24 and site.room() == 0
    site.drain()
    assert site.room() == cap
    # The node's connection budget is spent elsewhere: a site without a connection of
    # its own takes nothing (its work could not leave).
    for _ in range(sites.max_connections):
        sites.reserve("another-bucket")
    assert site.room() == 0
    sites.release("another-bucket")
    assert site.room() == cap


async def test_sites_of_one_bucket_share_its_connection_limit() -> None:
    # Scope "rule": both MX sites are one bucket, limited to two connections in all.
    rules = ThrottleRules.load(
        [{"name": "two", "domains": ["*.test"], "scope": "rule", "connections": 2}]
    )
    gate = asyncio.Semaphore(0)
    port = Port(rules, gate=gate)
    sites, first = _site(port, rules)
    dest = rules.match("y.test", ("mx1.y.test",), "mx:y.test")
    second = sites.site_of(dest, "mx:y.test", list(HOSTS), _source())
    assert first.bucket == second.bucket and first is not second
    first.put(_items(6))
    second.put(_items(6))
    await _until(lambda: len(port.connections) == 2)
    await asyncio.sleep(0.1)  # no third connection, however much waits
    assert len(port.connections) == 2 and sites.workers[first.bucket] == 2
    state = await port.throttle.backend.state(first.bucket)
    assert state.connections == 2
    for _ in range(12):
        gate.release()
    await _until(lambda: len(port.settled) == 12)
    assert port.most_open == 2
    await _until(lambda: not first.workers and not second.workers)
    assert sites.workers[first.bucket] == 0 and sites.budget() == sites.max_connections
    assert (await port.throttle.backend.state(first.bucket)).connections == 0


async def test_a_throttling_reply_holds_the_site_and_hands_back_what_it_buffered() -> None:
    rules = ThrottleRules.load([{"name": "one", "domains": ["x.test"], "connections": 1}])
    slow_down = Reply(421, "too many messages, slow down", "4.7.0", "DATA")
    port = Port(rules, reply=slow_down)
    sites, site = _site(port, rules)
    items = _items(5)
    site.put(items)
    await _until(lambda: port.throttled != [])
    # The reply was settled for the one item sent; the bucket is suspended and the rest
    # of the buffer went back to the queue unsent.
    assert [i.message.id for i, _, _ in port.settled] == ["m0"]
    assert port.settled[0][1] == [slow_down]
    assert port.throttled == [site.bucket]
    assert sorted(i.message.id for i in port.released) == ["m1", "m2", "m3", "m4"]
    assert not site.buffer
    assert sites.suspended_until(site.bucket) > time.time() + 50
    assert port.barred(site) and site.room() == 0
    await _until(lambda: not site.workers)
    assert len(port.connections) == 1 and port.connections[0].ended == "quit"
    assert sum(len(c.sent) for c in port.connections) == 1


async def test_on_stop_work_waiting_for_the_rate_is_handed_back_and_slots_given_up() -> None:
    # One message a minute: the first goes out, the second waits for the rate.
    rules = ThrottleRules.load(
        [{"name": "slow", "domains": ["x.test"], "messages": 1, "period": "1m", "connections": 1}]
    )
    port = Port(rules)
    sites, site = _site(port, rules)
    items = _items(4)
    site.put(items)
    await _until(lambda: len(port.settled) == 1)
    await asyncio.sleep(0.1)
    assert len(port.settled) == 1 and len(site.buffer) == 2  # one waits in the worker
    port.stopping = True
    # The item waiting for the rate goes back (within a second); the buffer is the
    # engine's to drain.
    await _until(lambda: len(port.released) == 1, timeout=3.0)
    assert port.released[0].message.id == "m1"
    leftover = site.drain()
    assert [i.message.id for i in leftover] == ["m2", "m3"]
    await _until(lambda: not site.workers)
    assert sites.workers[site.bucket] == 0 and sites.budget() == sites.max_connections
    assert (await port.throttle.backend.state(site.bucket)).connections == 0
    assert port.connections[0].ended == "quit"
