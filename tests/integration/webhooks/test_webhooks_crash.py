"""Webhooks survive ``kill -9``: every event reaches the endpoint at least once.

A ``postline serve`` subprocess (SQLite store, delivery off, so its only events are
``accepted``) sends a few hundred events in batches of 10 to a receiver in this test's
event loop that takes 0.15 s per answer. The node is killed with SIGKILL while the receiver
holds its ninth POST for 1 s, then started again on the same data dir. Afterwards every event of
``GET /v1/events`` was answered 2xx at least once, every body carries a valid Standard
Webhooks signature, each run of the node sent its batches in event-id order, and the
only events received twice are the batch that was in flight when the node died, sent
again under the same ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook as Verifier

from postline.sim.receiver import Received, WebhookReceiver
from support.node import cli_tenant, node_toml, served, wait_for

MESSAGES = 300
BATCH_SIZE = 10
ANSWER_DELAY = 0.15  # seconds the receiver takes per POST...
CUT = 8  # ...but 1 s for this one (0-based): the node is killed while it waits
HOLD = 1.0

CONFIG = """
[delivery]
enabled = false
[webhooks]
allow_http = true
allow_networks = ["127.0.0.0/8"]
timeout = "2s"
poll_interval = "0.05s"
retry_base = "0.1s"
retry_max = "0.5s"
"""


async def _submit(api: httpx.AsyncClient, start: int, n: int) -> None:
    messages = [
        {"from": "a@acme.test", "to": [f"u{i}@d.test"], "subject": f"m{i}", "text": "t"}
        for i in range(start, start + n)
    ]
    r = await api.post("/v1/messages/batch", json={"messages": messages})
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == n, r.text


async def _event_ids(api: httpx.AsyncClient) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = (await api.get("/v1/events", params=params)).json()
        out += [e["id"] for e in page["events"]]
        if not page["events"]:
            return out
        cursor = page["next_cursor"]


def _ok(received: list[Received]) -> list[Received]:
    return [r for r in received if 200 <= r.status < 300]


def _ids(post: Received) -> list[int]:
    return [int(e["id"]) for e in post.events()]


async def test_kill9_while_batches_are_in_flight_loses_no_event(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(node_toml(tmp_path / "data", CONFIG))
    key = await cli_tenant(config)
    receiver = WebhookReceiver(script=lambda n: (200, HOLD if n == CUT else ANSWER_DELAY))
    await receiver.start()
    t0 = time.monotonic()
    try:
        async with served(config, key) as (node, api):
            r = await api.post("/v1/webhooks", json={"url": receiver.url, "batch_size": BATCH_SIZE})
            assert r.status_code == 201, r.text
            hook_id, secret = r.json()["id"], r.json()["secret"]
            for start in range(0, MESSAGES, 100):
                await _submit(api, start, 100)
            await wait_for(lambda: len(receiver.received) > CUT, timeout=20, interval=0.005)
            assert node.proc is not None
            await asyncio.to_thread(node.kill)  # SIGKILL, then reap
            assert node.proc.returncode == -9
            killed_at = time.monotonic() - t0
            # The node died before the answer: the batch was cut short.
            got = receiver.received
            assert len(got) == CUT + 1 and got[CUT].status == 0, "killed too late"
            assert all(p.status == 200 for p in got[:CUT])

        restart = time.time()
        async with served(config, key) as (node, api):
            expected = await _event_ids(api)
            assert len(expected) == MESSAGES

            def all_received() -> bool:
                got = {e for p in _ok(receiver.received) for e in _ids(p)}
                return got >= {int(e) for e in expected}

            await wait_for(all_received, timeout=30)
            done_at = time.monotonic() - t0

            async def caught_up() -> bool:
                state = (await api.get(f"/v1/webhooks/{hook_id}")).json()
                return bool(state["last_event_id"] == expected[-1])

            await wait_for(caught_up, timeout=10)
            state = (await api.get(f"/v1/webhooks/{hook_id}")).json()
            await asyncio.to_thread(node.terminate)
    finally:
        await receiver.close()
    log = config.with_name("node.log").read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]

    received = list(receiver.received)
    verifier = Verifier(secret)
    for post in received:
        verifier.verify(post.body, post.headers)  # raises on a bad signature
    ok = _ok(received)
    assert all(1 <= len(p.events()) <= BATCH_SIZE for p in ok)
    first_run = [p for p in ok if p.at < restart]
    second_run = [p for p in ok if p.at >= restart]
    assert first_run and second_run

    # No event missing, none made up.
    delivered = [e for p in ok for e in _ids(p)]
    assert set(delivered) == {int(e) for e in expected}
    # Within each run of the node, batches arrived in event-id order, none twice.
    for run in (first_run, second_run):
        ids = [e for p in run for e in _ids(p)]
        assert ids == sorted(set(ids)), ids

    # The batch cut short by the kill is the first one sent after the restart, with the
    # same id and the same events. The receiver answered the dead node's POST too (its 2xx
    # came too late to be recorded), so those events, and only those, arrived twice.
    cut_short = received[CUT]
    answered_dead = 200 <= cut_short.status < 300
    assert first_run[-1] is (cut_short if answered_dead else received[CUT - 1])
    assert second_run[0] is received[CUT + 1]
    assert second_run[0].headers["webhook-id"] == cut_short.headers["webhook-id"]
    assert _ids(second_run[0]) == _ids(cut_short)
    duplicates = len(delivered) - len(set(delivered))
    assert duplicates == (len(_ids(cut_short)) if answered_dead else 0)
    webhook_ids = [p.headers["webhook-id"] for p in ok]
    assert len(webhook_ids) - len(set(webhook_ids)) == (1 if answered_dead else 0)
    # Nothing left pending or retrying; every batch logged ok.
    assert state["oldest_pending_event_id"] is None and state["retrying"] is None
    assert state["deliveries"]["failed"] == state["deliveries"]["dead"] == 0
    print(
        f"\nwebhooks crash: {MESSAGES} events in batches of {BATCH_SIZE}; kill -9 at "
        f"{killed_at:.2f}s with POST {CUT + 1} in flight; "
        f"its 2xx reached the receiver: {answered_dead}; restart; all received at "
        f"{done_at:.2f}s in {len(ok)} POSTs answered 2xx; events received twice: {duplicates}"
    )
