"""Fleet webhooks: two ``postline serve`` nodes on one PostgreSQL serve one endpoint.

Both nodes take API requests, so the endpoint's events are recorded by both; only the
node holding the endpoint's lease sends them, one batch at a time. The receiver (in this
test's event loop, 0.15 s per answer) tracks how many POSTs it holds between arrival and
answer. The holder is killed with SIGKILL while the receiver holds one POST for 1 s, past
a renewal of the lease: the lease is not handed back, so the other node takes the
endpoint over once the lease runs out, sends the batch that was cut short again under the
same ``webhook-id``, then the rest.

``[webhooks] lease_time`` is 12 s, not shorter: a node starts a POST only while its lease
has at least ``timeout`` + 5 s left (``LEASE_MARGIN`` in ``webhooks/dispatch.py``), and
renews it every third of its time, so with ``timeout = 2s`` a lease under 10.5 s stalls
sending before each renewal, and one of 7 s or less is refused at start.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from standardwebhooks.webhooks import Webhook as Verifier

from postline.sim.receiver import Received, WebhookReceiver
from postline.store.postgres.backend import PostgresStore
from postline.tenants import generate_key, hash_key, key_prefix
from support import pgserver
from support.node import NodeProcess, free_port, node_toml, wait_for

pg_server = pgserver.pg_server
pg_dsn = pgserver.pg_dsn

LEASE_TIME = 12.0
CLAIM_EVERY = 1.0  # the dispatcher claims endpoints every max(1 s, 4 * poll_interval)
BATCH_SIZE = 10
ANSWER_DELAY = 0.15  # seconds the receiver takes per POST...
CUT = 30  # ...but 1 s for this one (0-based): the holder is killed while it waits
HOLD = 1.0
BEFORE_KILL = 500  # messages submitted before the kill, half through each node
AFTER_KILL = 100  # submitted through the survivor after the kill


class _Requests(list[Received]):
    """The receiver's log of requests, noting which ones await their answer."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[int, asyncio.Task[Any] | None] = {}
        self.most_at_once = 0
        self.overlaps: list[tuple[int, int]] = []
        """(earlier, later): request ``later`` arrived while ``earlier`` was unanswered."""

    def append(self, item: Received) -> None:  # a request arrived
        n = len(self)
        self.overlaps += [(m, n) for m in self.waiting]
        self.waiting[n] = asyncio.current_task()
        self.most_at_once = max(self.most_at_once, len(self.waiting))
        super().append(item)

    def __setitem__(self, index: Any, item: Any) -> None:  # request ``index`` was answered
        super().__setitem__(index, item)
        self.waiting.pop(index, None)

    def abandon(self, task: asyncio.Task[Any] | None) -> None:
        """The connection served by ``task`` ended: its request will not be answered."""
        for n, owner in list(self.waiting.items()):
            if owner is task:
                del self.waiting[n]


@dataclass
class ConcurrencyReceiver(WebhookReceiver):
    """A :class:`WebhookReceiver` that counts the POSTs it holds at once."""

    received: list[Received] = field(default_factory=_Requests)

    @property
    def requests(self) -> _Requests:
        assert isinstance(self.received, _Requests)
        return self.received

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await super()._serve(reader, writer)
        finally:
            self.requests.abandon(asyncio.current_task())


def _config(tmp: Path, name: str, dsn: str) -> Path:
    # Endpoint secrets are sealed with [domains] key_secret: the same on every node.
    extra = f"""
[domains]
key_secret = "fleet-webhooks-test-secret"
[delivery]
enabled = false
[webhooks]
allow_http = true
allow_networks = ["127.0.0.0/8"]
timeout = "2s"
poll_interval = "0.05s"
retry_base = "0.1s"
retry_max = "0.5s"
lease_time = "{LEASE_TIME:g}s"
"""
    path = tmp / name / "node.toml"
    path.parent.mkdir(parents=True)
    text = node_toml(
        path.parent / "data", extra, api=f"127.0.0.1:{free_port()}", top_extra=f'store = "{dsn}"'
    ).replace('node_id = "test-node"', f'node_id = "{name}"')
    path.write_text(text.replace("[submission]\n", "[submission]\nenabled = false\n"))
    return path


async def _tenant(dsn: str) -> str:
    store = PostgresStore(dsn)
    await store.open()
    try:
        tenant = await store.create_tenant("fleet")
        key = generate_key()
        await store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
        return key
    finally:
        await store.close()


@asynccontextmanager
async def _fleet(
    tmp: Path, dsn: str, key: str
) -> AsyncIterator[tuple[dict[str, NodeProcess], dict[str, httpx.AsyncClient]]]:
    names = ("node-1", "node-2")
    nodes = {
        n: NodeProcess(c, c.with_name("node.log")) for n in names for c in [_config(tmp, n, dsn)]
    }
    async with AsyncExitStack() as stack:
        for node in nodes.values():
            stack.push_async_callback(asyncio.to_thread, node.kill)
        await asyncio.gather(*(asyncio.to_thread(node.start, 60.0) for node in nodes.values()))
        clients = {
            name: await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=f"http://{node.ready['api']}",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=30,
                )
            )
            for name, node in nodes.items()
        }
        yield nodes, clients


async def _submit(api: httpx.AsyncClient, start: int, n: int) -> None:
    messages = [
        {"from": "a@fleet-sender.test", "to": [f"u{i}@d.test"], "subject": f"m{i}", "text": "t"}
        for i in range(start, start + n)
    ]
    r = await api.post("/v1/messages/batch", json={"messages": messages})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == n, r.text


async def _event_ids(api: httpx.AsyncClient) -> list[int]:
    out: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/events", params=params)).json()
        out += [int(e["id"]) for e in page["events"]]
        if not page["events"]:
            return out
        cursor = page["next_cursor"]


async def _lease(dsn: str, hook_id: str) -> tuple[str | None, float | None]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT lease_owner, lease_until FROM webhooks WHERE id = $1", hook_id
        )
    finally:
        await conn.close()
    assert row is not None
    return row[0], row[1]


async def _batches_sent(api: httpx.AsyncClient) -> int:
    """Batches this node had answered 2xx (its /metrics)."""
    text = (await api.get("/metrics")).text
    found = re.search(r'^postline_webhook_batches_total\{outcome="ok"\} (\S+)$', text, re.M)
    return int(float(found.group(1))) if found else 0


def _ok(received: list[Received]) -> list[Received]:
    return [r for r in received if 200 <= r.status < 300]


def _ids(post: Received) -> list[int]:
    return [int(e["id"]) for e in post.events()]


async def test_one_node_at_a_time_and_a_dead_holders_endpoint_moves_on(
    tmp_path: Path, pg_dsn: str
) -> None:
    key = await _tenant(pg_dsn)
    receiver = ConcurrencyReceiver(script=lambda n: (200, HOLD if n == CUT else ANSWER_DELAY))
    await receiver.start()
    requests = receiver.requests
    t0 = time.monotonic()
    try:
        async with _fleet(tmp_path, pg_dsn, key) as (nodes, clients):
            r = await clients["node-1"].post(
                "/v1/webhooks", json={"url": receiver.url, "batch_size": BATCH_SIZE}
            )
            assert r.status_code == 201, r.text
            hook_id, secret = r.json()["id"], r.json()["secret"]
            for i, start in enumerate(range(0, BEFORE_KILL, 50)):
                await _submit(clients[f"node-{i % 2 + 1}"], start, 50)
            # Kill the holder while the receiver holds POST number CUT.
            await wait_for(lambda: len(requests) > CUT, timeout=30, interval=0.005)
            holder, _ = await _lease(pg_dsn, hook_id)
            # The holder is one worker of a node: "node-2.0" is worker 0 of node-2.
            node = holder.split(".")[0]
            assert node in nodes, holder
            survivor = next(n for n in nodes if n != node)
            # Only the holder sent anything so far.
            assert await _batches_sent(clients[survivor]) == 0
            victim = nodes[node]
            assert victim.proc is not None
            await asyncio.to_thread(victim.kill)  # SIGKILL: the lease is not handed back
            assert victim.proc.returncode == -9
            killed_at = time.time()
            assert len(requests) == CUT + 1 and requests[CUT].status == 0, "killed too late"
            first_post = requests[0].at
            owner, lease_until = await _lease(pg_dsn, hook_id)
            assert owner == holder and lease_until is not None and lease_until > killed_at
            # The holder had renewed its lease since its first POST.
            assert lease_until > first_post + LEASE_TIME

            api = clients[survivor]
            await _submit(api, BEFORE_KILL, AFTER_KILL)
            await wait_for(lambda: len(requests) > CUT + 1, timeout=LEASE_TIME + 10)
            took_over = requests[CUT + 1].at
            expected: list[int] = []

            async def all_received() -> bool:
                nonlocal expected
                expected = await _event_ids(api)
                got = {e for p in _ok(requests) for e in _ids(p)}
                return len(expected) == BEFORE_KILL + AFTER_KILL and got >= set(expected)

            await wait_for(all_received, timeout=30, interval=0.2)
            done_at = time.monotonic() - t0

            async def caught_up() -> bool:
                state = (await api.get(f"/v1/webhooks/{hook_id}")).json()
                return bool(state["last_event_id"] == str(expected[-1]))

            await wait_for(caught_up, timeout=10)
            owner, _ = await _lease(pg_dsn, hook_id)
            sent_by_survivor = await _batches_sent(api)
            # A clean stop, unlike the kill, hands the endpoint back at once.
            await asyncio.to_thread(nodes[survivor].terminate)
            assert await _lease(pg_dsn, hook_id) == (None, None)
    finally:
        await receiver.close()
    for name in nodes:
        log = (tmp_path / name / "node.log").read_text()
        assert "Traceback" not in log and " ERROR " not in log, f"{name}: {log[-3000:]}"

    received = list(requests)
    # Never two POSTs in flight to the endpoint.
    assert requests.overlaps == [] and requests.most_at_once == 1, requests.overlaps
    verifier = Verifier(secret)
    for post in received:
        verifier.verify(post.body, post.headers)  # raises on a bad signature

    # The survivor took over only once the dead node's lease had run out, and soon after.
    assert owner.split(".")[0] == survivor, owner
    assert lease_until <= took_over <= lease_until + CLAIM_EVERY + 3, (lease_until, took_over)
    # Its first POST was the batch cut short by the kill, under the same id.
    cut_short, resent = received[CUT], received[CUT + 1]
    assert resent.headers["webhook-id"] == cut_short.headers["webhook-id"]
    assert _ids(resent) == _ids(cut_short)
    # Everything after the kill came from the survivor (the dead node sent nothing more).
    ok = _ok(received)
    assert sent_by_survivor == len([p for p in ok if p.at > killed_at])

    # Every event arrived; in order, except the resent batch.
    delivered = [e for p in ok for e in _ids(p)]
    assert set(delivered) == set(expected)
    answered_dead = 200 <= cut_short.status < 300
    once = [e for p in ok if p is not cut_short for e in _ids(p)]
    assert once == sorted(set(once)) == expected
    # No webhook-id answered 2xx twice, except the cut-short batch when the receiver also
    # answered the dead node's POST (at least once: a receiver dedupes by webhook-id).
    webhook_ids = [p.headers["webhook-id"] for p in ok]
    repeated = {w for w in webhook_ids if webhook_ids.count(w) > 1}
    assert repeated == ({cut_short.headers["webhook-id"]} if answered_dead else set())
    duplicates = len(delivered) - len(set(delivered))
    assert duplicates == (len(_ids(cut_short)) if answered_dead else 0)
    print(
        f"\nfleet webhooks: {len(expected)} events, {len(ok)} POSTs answered 2xx, at most "
        f"{requests.most_at_once} in flight; {holder} killed {killed_at - first_post:.1f}s "
        f"after the first POST with POST {CUT + 1} in flight; {survivor} took over "
        f"{took_over - lease_until:.2f}s after the lease ran out "
        f"({took_over - killed_at:.1f}s after the kill); its 2xx reached the receiver: "
        f"{answered_dead}; events received twice: {duplicates}; all done at {done_at:.1f}s"
    )
