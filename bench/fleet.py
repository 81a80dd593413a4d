#!/usr/bin/env python3
"""Fleet scaling on this box: 1, 2 and 3 nodes on one PostgreSQL and one Redis.

Each case starts N ``postline serve`` nodes on a fresh PostgreSQL database (fsync on:
every 202 is durable) and one Redis, routes all mail to a counting sink (Postfix's
``smtp-sink`` when installed, else a small aiosmtpd sink), submits the messages through
the nodes' HTTP APIs round-robin (batches of 1000) and waits until the fleet's store says
every recipient is delivered. Baseline in the same run: one node on SQLite.

    .venv/bin/python bench/fleet.py [-n 20000] [--workers 2]

CPU per message is counted per tier (the nodes with their worker processes, PostgreSQL,
Redis, the sink).

Final line: ``fleet sqlite_1=…/s postgres_1=…/s postgres_2=…/s postgres_3=…/s``
(end-to-end msgs/s, from the first request to the last delivery).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from postline.config import load_config  # noqa: E402
from postline.store import create_store  # noqa: E402
from postline.tenants import generate_key, hash_key, key_prefix  # noqa: E402
from support.pgserver import PgServer, find_bin_dir  # noqa: E402
from support.redisserver import RedisServer  # noqa: E402

POSTLINE = str(Path(sys.executable).with_name("postline"))

SINK = textwrap.dedent(
    """
    import asyncio, sys
    from aiosmtpd.smtp import SMTP
    class H:
        async def handle_DATA(self, server, session, envelope):
            return "250 2.0.0 OK"
    async def main():
        loop = asyncio.get_running_loop()
        await loop.create_server(lambda: SMTP(H()), "127.0.0.1", int(sys.argv[1]))
        await asyncio.Event().wait()
    asyncio.run(main())
    """
)


CLK_TCK = __import__("os").sysconf("SC_CLK_TCK")


def tree_cpu(root: int) -> float:
    """CPU seconds (user + system, children included) of a process and its descendants."""
    procs: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            data = (entry / "stat").read_text()
        except OSError:
            continue
        fields = data[data.rindex(")") + 2 :].split()
        procs[int(entry.name)] = (int(fields[1]), sum(int(x) for x in fields[11:15]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        if pid in procs:
            total += procs[pid][1]
        stack.extend(children.get(pid, []))
    return total / CLK_TCK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


WORKERS = 1  # [node] workers of every node (--workers)


def node_config(tmp: Path, name: str, store: str, redis: str | None, sink: int) -> Path:
    path = tmp / name / "node.toml"
    path.parent.mkdir(parents=True)
    throttle = f'backend = "{redis}"\n' if redis else ""
    path.write_text(
        f"""
data_dir = "{path.parent / "data"}"
node_id = "{name}"
store = "{store}"
[api]
listen = "127.0.0.1:{free_port()}"
[submission]
enabled = false
[inbound]
enabled = false
[log]
level = "warning"
[node]
workers = {WORKERS}
[throttle]
{throttle}
[[throttle.rules]]
name = "relay"
connections = 20
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = {sink}
"""
    )
    return path


async def tenant_key(config: Path) -> str:
    store = create_store(load_config(config))
    await store.open()
    try:
        tenant = await store.create_tenant("bench")
        key = generate_key()
        await store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
        return key
    finally:
        await store.close()


async def delivered(client: httpx.AsyncClient) -> int:
    for line in (await client.get("/metrics")).text.splitlines():
        if line.startswith('postline_recipients{state="delivered"}'):
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


async def run_case(
    tmp: Path,
    label: str,
    stores: list[str],
    redis: str | None,
    sink: int,
    total: int,
    others: dict[str, int],
) -> tuple[float, float, dict[str, float]]:
    configs = [
        node_config(tmp / label, f"{label}-{i + 1}", store, redis, sink)
        for i, store in enumerate(stores)
    ]
    key = await tenant_key(configs[0])
    procs = []
    try:
        clients = []
        for cfg in configs:
            proc = await asyncio.create_subprocess_exec(
                POSTLINE,
                "serve",
                "--config",
                str(cfg),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            procs.append(proc)
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            api = line.decode().split('"api": "')[1].split('"')[0]
            clients.append(
                httpx.AsyncClient(
                    base_url=f"http://{api}",
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=120,
                )
            )
        batches = [
            [
                {
                    "from": "shop@bench.example",
                    "to": [f"user{i}@d{i % 100:03d}.example"],
                    "subject": f"Order {i}",
                    "text": "Your order has shipped.\n" * 100,
                }
                for i in range(start, min(start + 1000, total))
            ]
            for start in range(0, total, 1000)
        ]
        sem = asyncio.Semaphore(2 * len(clients))

        async def post(i: int, batch: list[dict[str, object]]) -> None:
            async with sem:
                r = await clients[i % len(clients)].post(
                    "/v1/messages/batch", json={"messages": batch}
                )
                r.raise_for_status()

        pids = {"nodes": [p.pid for p in procs], **{k: [v] for k, v in others.items()}}
        before = {k: sum(tree_cpu(p) for p in v) for k, v in pids.items()}
        t0 = time.perf_counter()
        await asyncio.gather(*(post(i, b) for i, b in enumerate(batches)))
        ingest = time.perf_counter() - t0
        while await delivered(clients[0]) < total:
            await asyncio.sleep(0.1)
        elapsed = time.perf_counter() - t0
        cpu = {k: (sum(tree_cpu(p) for p in v) - before[k]) * 1e6 / total for k, v in pids.items()}
        for c in clients:
            await c.aclose()
        return total / ingest, total / elapsed, cpu
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.terminate()
        for proc in procs:
            await proc.wait()


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=1, help="[node] workers of each node")
    args = ap.parse_args()
    global WORKERS
    WORKERS = args.workers
    bin_dir = find_bin_dir()
    if bin_dir is None or not shutil.which("redis-server"):
        print("fleet benchmark skipped: needs PostgreSQL binaries and redis-server")
        print("fleet skipped=1")
        return
    tmp = Path(tempfile.mkdtemp(prefix="postline-fleet-"))
    sink_port = free_port()
    if shutil.which("smtp-sink"):
        sink = subprocess.Popen(
            ["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    else:
        sink = subprocess.Popen([sys.executable, "-c", SINK, str(sink_port)])
    pg = PgServer(bin_dir, fsync=True)
    pg.start()
    results: dict[str, tuple[float, float, dict[str, float]]] = {}
    pg_pid = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    try:
        with RedisServer() as redis:
            time.sleep(0.5)
            others = {"sink": sink.pid}
            results["sqlite_1"] = await run_case(
                tmp, "sqlite", ["sqlite"], None, sink_port, args.n, others
            )
            others = {"postgres": pg_pid, "redis": redis.pid, "sink": sink.pid}
            for n in (1, 2, 3):
                dsn = await pg.create_database()
                url = redis.url.rsplit("/", 1)[0] + f"/{n}"
                results[f"postgres_{n}"] = await run_case(
                    tmp, f"pg{n}", [dsn] * n, url, sink_port, args.n, others
                )
    finally:
        pg.stop()
        sink.terminate()
        sink.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    for label, (ingest, e2e, cpu) in results.items():
        costs = ", ".join(f"{k} {v:.0f}" for k, v in cpu.items())
        print(
            f"{label:<11} ingest {ingest:7.0f} msgs/s   end to end {e2e:7.0f} msgs/s   "
            f"CPU µs per message: {costs}"
        )
    print("fleet " + " ".join(f"{k}={v[1]:.0f}/s" for k, v in results.items()) + f" n={args.n}")


if __name__ == "__main__":
    asyncio.run(main())
