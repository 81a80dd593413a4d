#!/usr/bin/env python3
"""Retention: a node's store stays flat while mail keeps flowing.

A node (``postline serve``) takes mail at a steady rate over ``POST /v1/messages/batch``
and delivers it to a recording sink, with short retention horizons (``--bodies``,
``--messages``, ``--events``), for several times the longest horizon. The store's size
on disk is sampled every few seconds (SQLite: the database file and its write-ahead log;
PostgreSQL: ``pg_database_size``). After the first horizon (plus the time for the cleaner
to catch up) the size must stay within ±15 % of its mean.

Bytes per message: *in flight* is the growth of the store over the first ``--bodies``
seconds (everything kept: body, recipient, events) per message taken; *at rest* the
steady size per message retained (rate × ``--messages``).

    .venv/bin/python bench/retention.py                       # SQLite and PostgreSQL
    .venv/bin/python bench/retention.py --backend sqlite --duration 600

Final line: ``retention <backend>=<spread>% … in_flight=<bytes>/msg at_rest=<bytes>/msg``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from depth import CONNECTIONS, Node, SinkProcess, free_port, tenant_key
from postline.store.postgres.backend import PostgresStore
from postline.store.sqlite.backend import SQLiteStore

NODE = """
data_dir = "{data}"
node_id = "retention"
{store}
[api]
listen = "{api}"
[submission]
enabled = false
[inbound]
enabled = false
[delivery]
helo_hostname = "node.postline.test"
tls = "disabled"
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = {sink}
[[throttle.rules]]
name = "relay"
connections = {connections}
[retention]
bodies = "{bodies}s"
messages = "{messages}s"
events = "{events}s"
interval = "2s"
event_partition = "60s"
[log]
level = "warning"
"""


def batch(n: int, offset: int, size: int) -> bytes:
    text = "Your order is on its way. " * (size // 26)
    return json.dumps(
        {
            "messages": [
                {
                    "from": "Shop <orders@shop.example>",
                    "to": [f"customer{offset + i}@domain{(offset + i) % 50}.example"],
                    "subject": f"Your order #{offset + i} has shipped",
                    "text": text,
                    "tags": ["orders"],
                    "metadata": {"order": offset + i},
                }
                for i in range(n)
            ]
        }
    ).encode()


class Load(threading.Thread):
    """POSTs batches of 100 at ``rate`` messages per second until stopped."""

    def __init__(self, api: str, key: str, rate: float, size: int) -> None:
        super().__init__(daemon=True)
        self.api, self.key, self.rate, self.size = api, key, rate, size
        self.sent = 0
        self.errors = 0
        self.stop = threading.Event()

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        start = time.monotonic()
        with httpx.Client(base_url=f"http://{self.api}", headers=headers, timeout=60) as c:
            while not self.stop.is_set():
                due = start + (self.sent + 100) / self.rate
                wait = due - time.monotonic()
                if wait > 0:
                    self.stop.wait(wait)
                r = c.post("/v1/messages/batch", content=batch(100, self.sent, self.size))
                if r.status_code == 202:
                    self.sent += 100
                else:
                    self.errors += 1


async def _fresh_partitions(dsn: str) -> None:
    """The template database was made with day partitions: drop them (empty), so the
    node makes its own of --event-partition width."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass AND c.relname <> 'events_default'"
        )
        for (name,) in rows:
            await conn.execute(f'DROP TABLE "{name}"')
    finally:
        await conn.close()


async def _size(store: SQLiteStore | PostgresStore) -> int:
    return await store.size_on_disk()


def run_case(backend: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = None
    if backend == "postgres":
        from support.pgserver import PgServer, find_bin_dir

        bin_dir = find_bin_dir()
        if bin_dir is None:
            return {"backend": backend, "skipped": "no PostgreSQL binaries"}
        server = PgServer(bin_dir, fsync=True)
        server.start()
        dsn = asyncio.run(server.create_postline_database())
        asyncio.run(_fresh_partitions(dsn))
        store_line = f'store = "{dsn}"'
        # The node's partition width: a store opened first makes the partitions ahead.
        meter: SQLiteStore | PostgresStore = PostgresStore(dsn, event_partition=60)
        key = asyncio.run(tenant_key(PostgresStore(dsn, event_partition=60)))
    else:
        db = work / "data" / "postline.db"
        store_line = ""
        key = asyncio.run(tenant_key(SQLiteStore(db)))
        meter = SQLiteStore(db)
    sink = SinkProcess()
    api = f"127.0.0.1:{free_port()}"
    config = work / "node.toml"
    config.write_text(
        NODE.format(
            data=work / "data", store=store_line, api=api, sink=sink.port,
            connections=CONNECTIONS, bodies=args.bodies, messages=args.messages,
            events=args.events,
        )
    )  # fmt: skip
    node = Node(config, work / "node.log", api)
    samples: list[tuple[float, int, int]] = []
    try:
        node.start()
        node.wait_ready()
        loop = asyncio.new_event_loop()
        if backend == "sqlite":
            # Size from the files alone: no second connection to the node's store.
            def size() -> int:
                return sum(p.stat().st_size for p in db.parent.glob("postline.db*") if p.is_file())
        else:
            loop.run_until_complete(meter.open())

            def size() -> int:
                return loop.run_until_complete(_size(meter))

        load = Load(api, key, args.rate, args.size)
        t0 = time.monotonic()
        load.start()
        while (elapsed := time.monotonic() - t0) < args.duration:
            samples.append((elapsed, size(), load.sent))
            line = f"  t={elapsed:5.0f}s size={samples[-1][1] / 1e6:7.1f} MB sent={load.sent:,}"
            print(line, flush=True)
            time.sleep(args.sample)
        load.stop.set()
        load.join(30)
        if backend == "postgres":
            loop.run_until_complete(meter.close())
        loop.close()
        delivered = int(sink.stats().get("recipients", 0))
    finally:
        node.kill()
        sink.stop()
        if server is not None:
            server.stop()
    settle = max(args.messages, args.events) + args.settle
    steady = [s for t, s, _ in samples if t >= settle]
    first = [(t, s, n) for t, s, n in samples if t <= args.bodies]
    in_flight = (first[-1][1] - first[0][1]) / max(1, first[-1][2] - first[0][2])
    mean = statistics.mean(steady)
    spread = max(abs(max(steady) - mean), abs(min(steady) - mean)) / mean * 100
    return {
        "backend": backend,
        "rate": args.rate,
        "sent": load.sent,
        "errors": load.errors,
        "delivered": delivered,
        "steady_samples": len(steady),
        "steady_mean_mb": round(mean / 1e6, 1),
        "steady_min_mb": round(min(steady) / 1e6, 1),
        "steady_max_mb": round(max(steady) / 1e6, 1),
        "spread_pct": round(spread, 1),
        "in_flight_bytes_per_msg": round(in_flight),
        "at_rest_bytes_per_msg": round(mean / (args.rate * args.messages)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rate", type=float, default=300.0, help="messages per second")
    parser.add_argument("--size", type=int, default=2000, help="text bytes per message")
    parser.add_argument("--bodies", type=int, default=30, help="seconds")
    parser.add_argument("--messages", type=int, default=60, help="seconds")
    parser.add_argument("--events", type=int, default=60, help="seconds")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds per backend")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds after a horizon")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--work", type=Path, default=Path("/var/tmp/postline-retention"))
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    results = []
    for backend in backends:
        print(f"== {backend}: {args.rate:g} msgs/s for {args.duration:g} s", flush=True)
        out = run_case(backend, args, args.work / backend)
        print(json.dumps(out), flush=True)
        results.append(out)
    figures = " ".join(
        f"{r['backend']}={r['spread_pct']}% in_flight={r['in_flight_bytes_per_msg']}/msg "
        f"at_rest={r['at_rest_bytes_per_msg']}/msg"
        for r in results
        if "spread_pct" in r
    )
    print(f"retention {figures}")


if __name__ == "__main__":
    main()
