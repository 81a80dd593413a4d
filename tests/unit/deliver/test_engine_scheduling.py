"""The engine's scheduling with a fake SMTP session: no sockets.

A real engine on a temporary SQLite store with a real :class:`MemoryThrottleBackend`
and a static route to an address (no DNS); only the SMTP session is a stand-in, given
through the engine's ``connect``. Due queues enter, are leased, sent and recorded, and
retries and scheduled sends wait in the timers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from postline.config import load_config
from postline.deliver.egress import Source
from postline.deliver.engine import DeliveryEngine
from postline.deliver.port import Connection
from postline.deliver.work import Host
from postline.dns.resolver import Resolver
from postline.metrics import Metrics
from postline.model import Reply
from postline.smtp.client import TransactionResult
from postline.store.base import NewMessage, NewRecipient, QueueKey
from postline.store.sqlite.backend import SQLiteStore
from postline.throttle.memory import MemoryThrottleBackend
from postline.throttle.rules import ThrottleRules

CONFIG = """
[queue]
scan_interval = "1h"
[[delivery.routes]]
domain = "*"
host = "192.0.2.1"
"""


class Session:
    """An SMTP session answering ``reply`` to every recipient."""

    def __init__(self, reply: Reply, log: list[tuple[str, list[str]]]) -> None:
        self.reply = reply
        self.log = log
        self.usable = True
        self.local_address = ("10.0.0.1", 40000)

    async def send(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionResult:
        self.log.append((mail_from, list(recipients)))
        replies = tuple(self.reply for _ in recipients)
        return TransactionResult(Reply(250, "ok"), replies, self.reply)

    async def quit(self) -> None:
        self.usable = False

    def abort(self) -> None:
        self.usable = False


class Node:
    def __init__(self, engine: DeliveryEngine, store: SQLiteStore, tenant: str) -> None:
        self.engine = engine
        self.store = store
        self.tenant = tenant
        self.reply = Reply(250, "ok", "2.0.0", "DATA")
        self.sent: list[tuple[str, list[str]]] = []
        self.hosts: list[Host] = []

    async def connect(self, host: Host, source: Source) -> Connection:
        self.hosts.append(host)
        return Session(self.reply, self.sent)

    async def enqueue(self, mid: str, *rcpts: str, at: float | None = None) -> QueueKey:
        now = time.time()
        message = NewMessage(
            id=mid,
            tenant_id=self.tenant,
            mail_from="s@y.test",
            body=b"Subject: hi\r\n\r\nhello\r\n",
            recipients=[NewRecipient(i, r, r.split("@")[1]) for i, r in enumerate(rcpts)],
            created_at=now,
            next_attempt_at=at if at is not None else now,
            expires_at=now + 86400,
        )
        await self.store.enqueue([message])
        return (self.tenant, rcpts[0].split("@")[1])


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    config = load_config(text=CONFIG, environ={})
    store = SQLiteStore(tmp_path / "postline.db")
    await store.open()
    tenant = await store.create_tenant("acme")
    holder: list[Node] = []

    async def connect(host: Host, source: Source) -> Connection:
        return await holder[0].connect(host, source)

    engine = DeliveryEngine(
        config=config,
        store=store,
        resolver=Resolver(),
        rules=ThrottleRules.load([]),
        throttle=MemoryThrottleBackend(),
        metrics=Metrics(),
        node_id="node-1",
        connect=connect,
    )
    holder.append(Node(engine, store, tenant.id))
    await engine.start()
    try:
        yield holder[0]
    finally:
        await engine.stop(timeout=5.0)
        await store.close()


async def _until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_queue_due_now_is_leased_sent_and_recorded(node: Node) -> None:
    key = await node.enqueue("m1", "a@x.test", "b@x.test")
    node.engine.notify([key])
    await _until(lambda: node.engine.recorder.written == 2)
    assert node.sent == [("s@y.test", ["a@x.test", "b@x.test"])]
    assert node.hosts[0] == Host("192.0.2.1", "192.0.2.1", 25)
    await _until(lambda: node.engine.leased_count == 0)
    view = await node.store.get_message(node.tenant, "m1")
    assert view is not None
    assert {r.state.value for r in view.recipients} == {"delivered"}


async def test_a_deferral_waits_in_the_timers_until_its_retry(node: Node) -> None:
    node.reply = Reply(451, "greylisted", "4.7.1", "RCPT")
    key = await node.enqueue("m1", "a@x.test")
    before = time.time()
    node.engine.notify([key])
    await _until(lambda: node.engine.recorder.written == 1)
    await _until(lambda: key in node.engine.due.wakeups)
    at = node.engine.due.wakeups.next_at()
    assert at is not None and at >= before + node.engine.policy.first * 0.99
    assert node.engine.leased_count == 0


async def test_a_scheduled_send_is_not_leased_before_its_time(node: Node) -> None:
    later = time.time() + 3600
    key = await node.enqueue("m1", "a@x.test", at=later)
    node.engine.schedule(key, later)
    at = node.engine.due.wakeups.next_at()
    assert key in node.engine.due.wakeups and at is not None and abs(at - later) < 1.0
    await asyncio.sleep(0.2)
    assert node.sent == [] and node.engine.leased_count == 0
    # Due now: it enters at once and goes out.
    node.engine.schedule(key, time.time())
    assert key not in node.engine.due.wakeups


async def test_a_paused_queue_waits_and_enters_again_when_resumed(node: Node) -> None:
    key = await node.enqueue("m1", "a@x.test")
    await node.store.set_paused(node.tenant, "x.test", True, now=time.time())
    node.engine.set_paused(node.tenant, "x.test", True)
    node.engine.notify([key])
    await asyncio.sleep(0.3)
    assert node.sent == [] and node.engine.leased_count == 0
    await node.store.set_paused(node.tenant, "x.test", False, now=time.time())
    node.engine.set_paused(node.tenant, "x.test", False)  # enters as due now
    await _until(lambda: node.engine.recorder.written == 1)
    assert node.sent == [("s@y.test", ["a@x.test"])]
