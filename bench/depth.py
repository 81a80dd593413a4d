#!/usr/bin/env python3
"""Deep queues: one node with millions queued against the same node with a shallow queue.

Each case fills a SQLite store (through ``SQLiteStore.enqueue``, the path ingest takes,
counters and indexes included) with campaign mail — messages of ``--per-message``
recipients, each in another domain — then runs ``postline serve`` on it with a static
route to a recording sink (``python -m postline.sim.sink``, its own process) and measures:

* start: ``/readyz`` after the process starts, first delivery after ready;
* delivery: recipients/s and the node's CPU per delivered recipient (from /proc, a window
  with no other requests), peak RSS (VmHWM);
* while delivering: ``GET /v1/queues`` and ``GET /metrics`` (median of 20), one
  ``POST /v1/messages`` at a time (p99 of 200);
* SIGTERM → exit: every recipient the sink saw is recorded delivered (``unrecorded``, must
  be 0: else a restart sends it again) and nothing is left leased; then a restart:
  recipients the sink sees twice (must be 0);
* ``kill -9`` mid-delivery: the recipients the node held leased that the sink had already
  seen — what its restart sends again (``kill_resend``) — beside the bound (the
  connection limit — transactions on the wire — plus the largest number of outcomes
  waiting to be written, sampled from ``postline_outcomes_pending`` before the kill).

    .venv/bin/python bench/depth.py                      # 10 M over 100 k domains vs 20 k
    .venv/bin/python bench/depth.py --deep 1000000 --deep-domains 10000   # quicker
    .venv/bin/python bench/depth.py --workers 2         # the node runs 2 worker processes
    .venv/bin/python bench/depth.py --fleet 2           # PostgreSQL: 2 nodes, 2 M queued

``--fleet N`` runs N nodes on one PostgreSQL (the machine's binaries, fsync on) holding
``--fleet-queued`` recipients, restarts every node in turn with SIGTERM while they
deliver (a rolling restart), then kills one with ``kill -9``; it reports the recipients
sent twice after the rolling restart (must be 0), the stop times, and what the killed node
would send again (its leased recipients the sink had already seen), beside its bound.

The deep store is built once and kept in ``--cache`` (default ``/var/tmp/postline-depth``);
each run works on a copy. With ``--workers N`` CPU and memory are the sums over the
node's processes. Final line: ``depth workers=… deep_queued=… cpu_ratio=… rss_mb=…
unrecorded=… restart_dups=… kill_resend=… kill_bound=… queues_ms=… metrics_ms=… post_p99_ms=…
ready_s=… first_s=… stop_s=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from postline.model.ids import new_id
from postline.store.base import NewMessage, NewRecipient, Store
from postline.store.sqlite.backend import SQLiteStore
from postline.tenants import generate_key, hash_key, key_prefix

POSTLINE = Path(sys.executable).with_name("postline")
TICKS = os.sysconf("SC_CLK_TCK")
CONNECTIONS = 20

NODE = """
data_dir = "{data}"
node_id = "depth"
[api]
listen = "{api}"
[submission]
listen = "127.0.0.1:0"
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
[node]
workers = {workers}
[log]
level = "warning"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- filling a store -------------------------------------------------------------------
async def fill(db: Path, total: int, domains: int, per_message: int) -> str:
    """A SQLite store with ``total`` queued recipients over ``domains`` domains; returns an
    API key of its tenant."""
    return await fill_store(SQLiteStore(db, max_rows=50_000), total, domains, per_message)


async def add_tenant(store: Store, name: str) -> tuple[str, str]:
    """A new tenant of an open store with one API key: (tenant id, key)."""
    tenant = await store.create_tenant(name)
    key = generate_key()
    await store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
    return tenant.id, key


async def tenant_key(store: Store, name: str = "bench") -> str:
    """Open ``store``, add a tenant with one API key, close it; the key."""
    await store.open()
    try:
        return (await add_tenant(store, name))[1]
    finally:
        await store.close()


async def fill_store(store: Store, total: int, domains: int, per_message: int) -> str:
    await store.open()
    try:
        tenant_id, key = await add_tenant(store, "bulk")
        now = time.time()
        body_text = "Hello,\r\n" + ("This month's offer, in a few lines of text.\r\n" * 30)
        pending: list[asyncio.Task[Any]] = []
        batch: list[NewMessage] = []
        made = 0
        m = 0
        t0 = time.monotonic()
        while made < total:
            n = min(per_message, total - made)
            mid = new_id()
            header = f"<{mid}@shop.example>"
            body = (
                f"From: Shop <news@shop.example>\r\nSubject: Offer {m}\r\n"
                f"Message-ID: {header}\r\nMIME-Version: 1.0\r\n"
                f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body_text}"
            ).encode()
            rcpts = []
            for i in range(n):
                d = (made + i) % domains
                rcpts.append(NewRecipient(i, f"c{made + i}@d{d:06d}.example", f"d{d:06d}.example"))
            batch.append(
                NewMessage(
                    id=mid,
                    tenant_id=tenant_id,
                    mail_from="news@shop.example",
                    body=body,
                    recipients=rcpts,
                    created_at=now,
                    next_attempt_at=now,
                    expires_at=now + 3 * 86400,
                    message_id_header=header,
                    subject=f"Offer {m}",
                )
            )
            made += n
            m += 1
            if sum(len(x.recipients) for x in batch) >= 10_000:
                pending.append(asyncio.create_task(store.enqueue(batch)))
                batch = []
                if len(pending) >= 4:
                    await pending.pop(0)
            if made % 500_000 < n:
                rate = made / (time.monotonic() - t0)
                print(f"  filled {made:,} ({rate:,.0f}/s)", flush=True)
        if batch:
            pending.append(asyncio.create_task(store.enqueue(batch)))
        for task in pending:
            await task
        return key
    finally:
        await store.close()


def prepared(cache: Path, total: int, domains: int, per_message: int, work: Path) -> str:
    """A copy of the store for (total, domains, per_message) in ``work``; built and cached
    on first use. Returns the tenant's API key."""
    name = f"q{total}-d{domains}-m{per_message}"
    cached = cache / f"{name}.db"
    key_file = cache / f"{name}.key"
    if not cached.exists() or not key_file.exists():
        cache.mkdir(parents=True, exist_ok=True)
        building = cache / f"{name}.building.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{building}{suffix}").unlink(missing_ok=True)
        print(f"building {name} in {cache} ...", flush=True)
        t0 = time.monotonic()
        key = asyncio.run(fill(building, total, domains, per_message))
        building.rename(cached)
        key_file.write_text(key)
        print(f"built in {time.monotonic() - t0:.0f}s", flush=True)
    data = work / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    shutil.copyfile(cached, data / "postline.db")
    return key_file.read_text().strip()


# -- processes -------------------------------------------------------------------------
class SinkProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "postline.sim.sink"], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.port = int(info["smtp"].rsplit(":", 1)[1])
        self.control = f"http://{info['control']}"

    def stats(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.control}/stats", timeout=10).json())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@dataclass
class Node:
    config: Path
    log: Path
    api: str
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    rss_samples: list[int] = field(default_factory=list)

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTLINE_")}
        self.started = time.time()
        self.proc = subprocess.Popen(
            [str(POSTLINE), "serve", "--config", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("ab"),
            env=env,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        """The node's processes: the one started, and its workers when it has some."""
        out = [self.pid]
        try:
            children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text()
        except OSError:
            return out
        return out + [int(p) for p in children.split()]

    def cpu(self) -> float:
        """User + system CPU seconds of the node's processes so far."""
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / TICKS

    def status(self, name: str) -> int:
        """A /proc status figure (VmRSS, VmHWM) summed over the node's processes."""
        total = 0
        for pid in self.pids():
            try:
                lines = Path(f"/proc/{pid}/status").read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                if line.startswith(name + ":"):
                    total += int(line.split()[1]) * 1024
        return total

    def wait_ready(self, timeout: float = 600.0) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            assert self.proc.poll() is None, f"node died; {self.log}"
            try:
                if httpx.get(f"http://{self.api}/readyz", timeout=2).status_code == 200:
                    return time.time() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError("the node never became ready")

    def terminate(self, timeout: float = 120.0) -> float:
        assert self.proc is not None
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        return time.monotonic() - t0

    def kill(self) -> None:
        """``kill -9`` of the whole node (its workers too)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_more(sink: SinkProcess, n: int, total: int, timeout: float = 120) -> None:
    """Until ``n`` more recipients arrived, or all ``total`` did."""
    s = sink.stats()
    left = total - s["unique"]
    if left > 0:
        wait_delivered(sink, s["recipients"] + min(n, left), timeout)


def wait_delivered(
    sink: SinkProcess, at_least: int, timeout: float, interval: float = 0.1
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        s = sink.stats()
        if s["recipients"] >= at_least:
            return s
        if time.monotonic() > deadline:
            raise TimeoutError(f"the sink got {s['recipients']}, not {at_least}")
        time.sleep(interval)


# -- one case ----------------------------------------------------------------------------
def run_case(
    label: str, total: int, key: str, work: Path, sink: SinkProcess, window: float, workers: int
) -> dict[str, Any]:
    api = f"127.0.0.1:{free_port()}"
    config = work / "node.toml"
    config.write_text(
        NODE.format(
            data=work / "data", api=api, sink=sink.port, connections=CONNECTIONS, workers=workers
        )
    )
    out: dict[str, Any] = {"case": label}
    headers = {"Authorization": f"Bearer {key}"}
    base = sink.stats()

    # 1. start, first delivery, steady delivery, probes, SIGTERM.
    node = Node(config, work / "node.log", api)
    node.start()
    out["ready_s"] = node.wait_ready()
    ready_at = time.monotonic()
    wait_delivered(sink, base["recipients"] + 1, 60, interval=0.01)
    out["first_s"] = time.monotonic() - ready_at
    time.sleep(1)  # past the start-up burst
    c0, s0, t0 = node.cpu(), sink.stats()["recipients"], time.monotonic()
    peak_pending = 0.0
    # Until the window ends, or before the queue runs dry (a shallow queue does quickly).
    end = base["recipients"] + int(total * 0.9)
    while time.monotonic() - t0 < window and sink.stats()["recipients"] < end:
        time.sleep(0.25)
        node.rss_samples.append(node.status("VmRSS"))
    c1, s1, t1 = node.cpu(), sink.stats()["recipients"], time.monotonic()
    out["rate"] = (s1 - s0) / (t1 - t0)
    out["cpu_us_per_rcpt"] = (c1 - c0) / max(1, s1 - s0) * 1e6
    with httpx.Client(base_url=f"http://{api}", headers=headers, timeout=60) as client:
        queues, metrics_ms = [], []
        for _ in range(20):
            t = time.perf_counter()
            r = client.get("/v1/queues", params={"limit": 100})
            queues.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, r.text
            t = time.perf_counter()
            m = client.get("/metrics")
            metrics_ms.append((time.perf_counter() - t) * 1000)
            peak_pending = max(peak_pending, metric(m.text, "postline_outcomes_pending"))
        out["queues_ms"] = statistics.median(queues)
        out["metrics_ms"] = statistics.median(metrics_ms)
        out["leased"] = metric(m.text, "postline_leased_recipients")
        posts = []
        for i in range(200):
            t = time.perf_counter()
            r = client.post(
                "/v1/messages",
                json={
                    "from": "Shop <orders@shop.example>",
                    "to": [f"buyer{i}@fresh{i % 7}.example"],
                    "subject": "Your order",
                    "text": "It shipped.",
                },
            )
            posts.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 202, r.text
            time.sleep(0.02)
        posts.sort()
        out["post_p50_ms"] = posts[len(posts) // 2]
        out["post_p99_ms"] = posts[int(len(posts) * 0.99) - 1]
    node.rss_samples.append(node.status("VmRSS"))
    out["rss_mb"] = node.status("VmHWM") / 2**20
    out["stop_s"] = node.terminate()
    before_stop = sink.stats()
    # A clean stop writes every outcome and hands back every lease: each recipient the sink
    # saw is recorded delivered (else it would be sent again), nothing stays leased.
    conn = sqlite3.connect(work / "data" / "postline.db")
    try:
        (delivered,) = conn.execute(
            "SELECT coalesce(sum(n), 0) FROM recipient_counts WHERE state = 'delivered'"
        ).fetchone()
        (leased,) = conn.execute(
            "SELECT count(*) FROM recipients WHERE lease_owner IS NOT NULL"
        ).fetchone()
    finally:
        conn.close()
    out["unrecorded"] = before_stop["unique"] - base["unique"] - delivered
    out["leased_after_stop"] = leased

    # 2. restart after the clean stop: nothing may be sent twice.
    node = Node(config, work / "node.log", api)
    node.start()
    node.wait_ready()
    posted = 200
    left = total + posted - (before_stop["unique"] - base["unique"])
    wait_delivered(sink, before_stop["recipients"] + min(20_000, left), 120)
    peak_pending = 0.0
    with httpx.Client(base_url=f"http://{api}", timeout=60) as client:
        for _ in range(20):
            peak_pending = max(
                peak_pending, metric(client.get("/metrics").text, "postline_outcomes_pending")
            )
            time.sleep(0.1)
    after_restart = sink.stats()
    out["restart_dups"] = after_restart["duplicates"] - base["duplicates"]

    # 3. kill -9 mid-delivery: what the node held leased and the sink had already seen is
    # sent again after the restart (read from the store while the node is down).
    node.kill()
    out["kill_bound"] = CONNECTIONS + int(peak_pending)
    conn = sqlite3.connect(work / "data" / "postline.db")
    try:
        held = conn.execute(
            "SELECT m.message_id_header, r.address FROM recipients r"
            " JOIN messages m ON m.id = r.message_id"
            " WHERE r.state = 'queued' AND r.lease_owner LIKE 'depth%'"
        ).fetchall()
    finally:
        conn.close()
    out["kill_leased"] = len(held)
    out["kill_resend"] = httpx.post(
        f"{sink.control}/seen", json=[list(h) for h in held], timeout=60
    ).json()["seen"]
    node = Node(config, work / "node.log", api)
    node.start()
    node.wait_ready()
    left = total + posted - (sink.stats()["unique"] - base["unique"])
    if left > 0:
        wait_delivered(sink, sink.stats()["recipients"] + min(20_000, left), 120)
    else:
        time.sleep(5)  # everything was delivered before the kill: wait for any re-send
    out["kill_dups"] = sink.stats()["duplicates"] - after_restart["duplicates"]
    out["stop2_s"] = node.terminate()
    return out


# -- a fleet on PostgreSQL ---------------------------------------------------------------
FLEET_NODE = """
data_dir = "{data}"
node_id = "{name}"
store = "{dsn}"
[api]
listen = "{api}"
[submission]
enabled = false
[inbound]
enabled = false
[delivery]
helo_hostname = "{name}.postline.test"
tls = "disabled"
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = {sink}
[[throttle.rules]]
name = "relay"
connections = {connections}
[log]
level = "warning"
"""


async def _leased_seen(dsn: str, owner: str, sink: SinkProcess) -> tuple[int, int]:
    """(recipients ``owner`` still holds leased, how many of them the sink has seen)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT m.message_id_header, r.address FROM recipients r"
            " JOIN messages m ON m.id = r.message_id"
            " WHERE r.state = 'queued' AND r.lease_owner = $1",
            owner,
        )
    finally:
        await conn.close()
    pairs = [[r[0], r[1]] for r in rows]
    seen = httpx.post(f"{sink.control}/seen", json=pairs, timeout=60).json()["seen"]
    return len(pairs), int(seen)


async def _delivered_in_store(dsn: str) -> tuple[int, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        delivered = await conn.fetchval("SELECT count(*) FROM recipients WHERE state = 'delivered'")
        leased = await conn.fetchval(
            "SELECT count(*) FROM recipients WHERE state = 'queued' AND lease_owner IS NOT NULL"
        )
        return int(delivered), int(leased)
    finally:
        await conn.close()


def run_fleet(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from postline.store.postgres.backend import PostgresStore
    from support.pgserver import PgServer, find_bin_dir

    bin_dir = find_bin_dir()
    if bin_dir is None:
        print("depth fleet skipped: no PostgreSQL binaries")
        print("depth fleet skipped=1")
        return
    work = args.work / "fleet"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    server = PgServer(bin_dir, fsync=True)
    server.start()
    sink = SinkProcess()
    nodes: list[Node] = []
    try:
        dsn = asyncio.run(server.create_postline_database())
        t0 = time.monotonic()
        asyncio.run(
            fill_store(PostgresStore(dsn), args.fleet_queued, args.fleet_domains, args.per_message)
        )
        print(f"filled {args.fleet_queued:,} in {time.monotonic() - t0:.0f}s", flush=True)
        configs = []
        for i in range(args.fleet):
            name = f"depth-{i + 1}"
            api = f"127.0.0.1:{free_port()}"
            config = work / f"{name}.toml"
            config.write_text(
                FLEET_NODE.format(
                    data=work / name, name=name, dsn=dsn, api=api, sink=sink.port,
                    connections=CONNECTIONS,
                )
            )  # fmt: skip
            configs.append((config, api))
        out: dict[str, Any] = {"case": "fleet", "nodes": args.fleet, "queued": args.fleet_queued}
        for config, api in configs:
            node = Node(config, config.with_suffix(".log"), api)
            node.start()
            nodes.append(node)
        out["ready_s"] = max(n.wait_ready() for n in nodes)
        wait_more(sink, 20_000, args.fleet_queued)
        s0, t0 = sink.stats()["recipients"], time.monotonic()
        time.sleep(args.window)
        out["rate"] = (sink.stats()["recipients"] - s0) / (time.monotonic() - t0)
        with httpx.Client(base_url=f"http://{configs[0][1]}", timeout=60) as client:
            metrics_ms = []
            for _ in range(10):
                t = time.perf_counter()
                client.get("/metrics")
                metrics_ms.append((time.perf_counter() - t) * 1000)
            out["metrics_ms"] = statistics.median(metrics_ms)
        stops = []
        for i, (config, api) in enumerate(configs):
            stops.append(nodes[i].terminate())
            nodes[i] = Node(config, config.with_suffix(".log"), api)
            nodes[i].start()
            nodes[i].wait_ready()
            wait_more(sink, 10_000, args.fleet_queued)
        out["stop_s"] = max(stops)
        after_roll = sink.stats()
        out["roll_dups"] = after_roll["duplicates"]
        # kill -9 of one node mid-delivery: what it held and the sink had seen is sent again.
        nodes[0].kill()
        held, seen = asyncio.run(_leased_seen(dsn, "depth-1", sink))
        out["kill_leased"], out["kill_resend"] = held, seen
        out["kill_bound"] = CONNECTIONS + _RECORD_BATCH_BOUND
        nodes[0] = Node(configs[0][0], configs[0][0].with_suffix(".log"), configs[0][1])
        nodes[0].start()
        nodes[0].wait_ready()
        wait_more(sink, 10_000, args.fleet_queued)
        for node in nodes:
            node.terminate()
        nodes = []
        delivered, leased = asyncio.run(_delivered_in_store(dsn))
        final = sink.stats()
        out["unrecorded"] = final["unique"] - delivered
        out["leased_after_stop"] = leased
        out["dups_total"] = final["duplicates"]
        print(json.dumps(out), flush=True)
        print(
            f"depth fleet nodes={args.fleet} queued={args.fleet_queued} "
            f"roll_dups={out['roll_dups']} kill_resend={out['kill_resend']} "
            f"kill_bound={out['kill_bound']} stop_s={out['stop_s']:.1f} "
            f"leased_after_stop={leased} unrecorded={out['unrecorded']} "
            f"rate={out['rate']:.0f} metrics_ms={out['metrics_ms']:.1f}"
        )
    finally:
        for node in nodes:
            node.kill()
        sink.stop()
        server.stop()


_RECORD_BATCH_BOUND = 500  # outcomes one write carries (deliver.engine._RECORD_BATCH)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deep", type=int, default=10_000_000)
    ap.add_argument("--deep-domains", type=int, default=100_000)
    ap.add_argument("--shallow", type=int, default=20_000)
    ap.add_argument("--shallow-domains", type=int, default=200)
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--window", type=float, default=20.0, help="seconds of CPU measurement")
    ap.add_argument("--cache", type=Path, default=Path("/var/tmp/postline-depth"))
    ap.add_argument("--work", type=Path, default=Path("/var/tmp/postline-depth/work"))
    ap.add_argument("--workers", type=int, default=1, help="[node] workers of the SQLite node")
    ap.add_argument("--fleet", type=int, default=0, help="nodes on PostgreSQL (0: SQLite cases)")
    ap.add_argument("--fleet-queued", type=int, default=2_000_000)
    ap.add_argument("--fleet-domains", type=int, default=20_000)
    args = ap.parse_args()
    if args.fleet:
        run_fleet(args)
        return

    cases = [
        ("shallow", args.shallow, args.shallow_domains),
        ("deep", args.deep, args.deep_domains),
    ]
    sink = SinkProcess()
    results = []
    try:
        for label, total, domains in cases:
            work = args.work / label
            work.mkdir(parents=True, exist_ok=True)
            key = prepared(args.cache, total, domains, args.per_message, work)
            print(f"== {label}: {total:,} queued over {domains:,} domains", flush=True)
            r = run_case(label, total, key, work, sink, args.window, args.workers)
            r["queued"] = total
            results.append(r)
            print(json.dumps(r), flush=True)
    finally:
        sink.stop()
    shallow, deep = results
    cols = [
        "queued", "ready_s", "first_s", "rate", "cpu_us_per_rcpt", "rss_mb", "leased",
        "queues_ms", "metrics_ms", "post_p50_ms", "post_p99_ms", "stop_s", "unrecorded",
        "leased_after_stop", "restart_dups", "kill_resend", "kill_bound",
    ]  # fmt: skip
    print("| case | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for r in results:
        cells = [f"{r[c]:,.0f}" if isinstance(r[c], float) and r[c] >= 100 else f"{r[c]:.3g}"
                 if isinstance(r[c], float) else f"{r[c]:,}" for c in cols]  # fmt: skip
        print(f"| {r['case']} | " + " | ".join(cells) + " |")
    ratio = deep["cpu_us_per_rcpt"] / shallow["cpu_us_per_rcpt"]
    print(
        f"depth workers={args.workers} deep_queued={deep['queued']} cpu_ratio={ratio:.2f} "
        f"rss_mb={deep['rss_mb']:.0f} "
        f"unrecorded={deep['unrecorded']} restart_dups={deep['restart_dups']} "
        f"kill_resend={deep['kill_resend']} "
        f"kill_bound={deep['kill_bound']} queues_ms={deep['queues_ms']:.1f} "
        f"metrics_ms={deep['metrics_ms']:.1f} post_p99_ms={deep['post_p99_ms']:.1f} "
        f"ready_s={deep['ready_s']:.1f} first_s={deep['first_s']:.2f} stop_s={deep['stop_s']:.1f}"
    )


if __name__ == "__main__":
    main()
