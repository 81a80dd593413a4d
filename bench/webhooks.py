#!/usr/bin/env python3
"""Webhook dispatch: events per second from the store to a local receiver, and the node's
CPU per event.

A node (``postline serve``, SQLite, delivery off) takes ``--events`` messages of one
recipient each (one ``accepted`` event each) while its only webhook endpoint is disabled;
then the endpoint is enabled and the clock runs until the receiver (this process,
HTTP/1.1 keep-alive, checking every signature) has every event. Figures: events per
second, and the node's CPU (user + system, from /proc) per event over that window.

    .venv/bin/python bench/webhooks.py [--events 200000] [--batch-size 100]

Final line: ``webhooks events_per_s=… cpu_us_per_event=… batch_size=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from depth import Node, free_port, tenant_key
from postline.sim.receiver import WebhookReceiver
from postline.store.sqlite.backend import SQLiteStore

NODE = """
data_dir = "{data}"
node_id = "webhooks"
[api]
listen = "{api}"
[submission]
enabled = false
[inbound]
enabled = false
[delivery]
enabled = false
[webhooks]
allow_http = true
allow_networks = ["127.0.0.0/8"]
poll_interval = "100ms"
[log]
level = "warning"
"""


def _batch(n: int, offset: int) -> bytes:
    return json.dumps(
        {
            "messages": [
                {
                    "from": "Shop <orders@shop.example>",
                    "to": [f"customer{offset + i}@domain{(offset + i) % 50}.example"],
                    "subject": f"Order #{offset + i}",
                    "text": "Your order is on its way.",
                    "tags": ["orders"],
                    "metadata": {"order": offset + i},
                }
                for i in range(n)
            ]
        }
    ).encode()


async def run(args: argparse.Namespace) -> dict[str, float]:
    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    key = await tenant_key(SQLiteStore(work / "data" / "postline.db"))
    api = f"127.0.0.1:{free_port()}"
    config = work / "node.toml"
    config.write_text(NODE.format(data=work / "data", api=api))
    node = Node(config, work / "node.log", api)
    receiver = WebhookReceiver()
    await receiver.start()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        node.start()
        await asyncio.to_thread(node.wait_ready)
        async with httpx.AsyncClient(base_url=f"http://{api}", headers=headers, timeout=120) as c:
            r = await c.post(
                "/v1/webhooks", json={"url": receiver.url, "batch_size": args.batch_size}
            )
            r.raise_for_status()
            hook = r.json()
            receiver.secret = hook["secret"]
            (
                await c.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": False})
            ).raise_for_status()
            for offset in range(0, args.events, 1000):
                n = min(1000, args.events - offset)
                r = await c.post(
                    "/v1/messages/batch",
                    content=_batch(n, offset),
                    headers={"Content-Type": "application/json"},
                )
                r.raise_for_status()
            print(f"{args.events:,} events recorded; sending", flush=True)
            cpu0, t0 = node.cpu(), time.monotonic()
            (await c.patch(f"/v1/webhooks/{hook['id']}", json={"enabled": True})).raise_for_status()
            while sum(receiver.by_type.values()) < args.events:
                await asyncio.sleep(0.05)
                if time.monotonic() - t0 > args.timeout:
                    raise TimeoutError(f"only {sum(receiver.by_type.values())} events arrived")
            elapsed = time.monotonic() - t0
            cpu = node.cpu() - cpu0
    finally:
        node.kill()
        await receiver.close()
    return {
        "events": args.events,
        "batch_size": args.batch_size,
        "seconds": round(elapsed, 2),
        "events_per_s": round(args.events / elapsed),
        "cpu_us_per_event": round(cpu / args.events * 1e6, 1),
        "posts": len(receiver.received),
        "bad_signatures": receiver.bad_signatures,
        "duplicates": receiver.duplicates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/postline-webhooks"))
    args = parser.parse_args()
    out = asyncio.run(run(args))
    print(json.dumps(out))
    print(
        f"webhooks events_per_s={out['events_per_s']} cpu_us_per_event={out['cpu_us_per_event']}"
        f" batch_size={out['batch_size']}"
    )


if __name__ == "__main__":
    main()
