#!/usr/bin/env python3
"""End-to-end relay benchmark: smtp-source → postline (durable) → smtp-sink, beside Postfix
and Haraka.

Uses the reference harness in ../shared/bench (relay_bench.py, in a loopback-only network
namespace). Rounds are interleaved — Postfix (postfix_bench.sh), Haraka (haraka_bench.sh,
outbound queue), then postline — so all three meet the same machine weather. Needs root,
Debian's postfix (smtp-source, smtp-sink) and ../shared; skips (exit 0, with a message)
when any is missing. Haraka (../shared/bench/setup.sh puts it in /opt/mta-bench/haraka,
or $HARAKA_HOME) is skipped with a message when it is not installed.

    .venv/bin/python bench/relay.py [--rounds 3] [-n 20000] [--no-postfix] [--no-haraka]
    .venv/bin/python bench/relay.py --workers 2        # postline with [node] workers = 2
    .venv/bin/python bench/relay.py --webhook --no-postfix --no-haraka   # webhook vs without

Each run prints ``<mta> round R: 1,850 msgs/s, cpu 185 % (MTA 150 %)``: cpu is the whole
machine's busy time from /proc/stat over the timed window (100 % = one core, 200 % = both
cores of a 2-core box), MTA the MTA's process tree alone; then the harness's run line.

Final line: ``relay postline_median=… postfix_median=… haraka_median=… ratio_postfix=…
ratio_haraka=…`` (ratio = postline / peer; ``-`` for a peer that was not run). With
``--webhook`` every round also runs postline with a webhook endpoint subscribed to every
event type (a receiver in this process, every signature checked; the run ends when the
sink has every message, the receiver may still be catching up), and the final line is
``relay_webhook plain_median=… webhook_median=… ratio=… events=…``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"
POSTLINE = Path(sys.executable).with_name("postline")
HARAKA = (
    Path(os.environ.get("HARAKA_HOME", "/opt/mta-bench/haraka"))
    / "node_modules"
    / "Haraka"
    / "bin"
    / "haraka"
)
RATE = re.compile(r"^msgs=\d+ seconds=[\d.]+ rate=(\d+)/s")
CPU_BUSY = re.compile(r"\bcpu_busy=(\d+)%")
CPU_MTA = re.compile(r"\bcpu_mta=(\d+)%")
PORT = 2700

NODE = """
data_dir = "{data}"
node_id = "bench"
[api]
listen = "127.0.0.1:18025"
[inbound]
enabled = false
[submission]
listen = "127.0.0.1:{port}"
trusted_networks = ["127.0.0.0/8"]
trusted_tenant = "relay"
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = 2626
[[throttle.rules]]
name = "relay"
connections = 20
[webhooks]
allow_http = true
allow_networks = ["127.0.0.0/8"]
[log]
level = "warning"
"""


@dataclass
class Run:
    """One run of the harness against one MTA."""

    rate: int  # end-to-end msgs/s; 0 when the run failed
    cpu: int | None  # whole machine over the timed window, % of one core
    cpu_mta: int | None  # the MTA's process tree over the same window
    detail: str  # the harness's run line, or why there is none
    checks: list[str] = field(default_factory=list)  # the peer's queue/log check after the run

    def show(self, name: str, rnd: int, extra: str = "") -> None:
        cpu = f"{self.cpu} %" if self.cpu is not None else "-"
        mta = f" (MTA {self.cpu_mta} %)" if self.cpu_mta is not None else ""
        print(f"{name} round {rnd}: {self.rate:,} msgs/s, cpu {cpu}{mta}{extra}", flush=True)
        for line in [self.detail, *self.checks]:
            print(f"    {line}", flush=True)


def skip(reason: str) -> None:
    print(f"relay benchmark skipped: {reason}")
    print("relay skipped=1")
    sys.exit(0)


def harness_result(out: subprocess.CompletedProcess[str]) -> Run:
    """The figures of one relay_bench.py run (``--runs 1``) from its output."""
    lines = out.stdout.strip().splitlines()
    run_line = next((ln.strip() for ln in lines if ln.startswith("run ")), "")
    m = RATE.match(lines[-1]) if lines else None
    busy = CPU_BUSY.search(run_line)
    mta = CPU_MTA.search(run_line)
    err = out.stderr.strip().splitlines()
    detail = run_line or (err[-1] if err else f"no run line (exit status {out.returncode})")
    if len(detail) > 400:  # a failed run lists every lane's error
        detail = detail[:400] + " …"
    return Run(
        rate=int(m.group(1)) if m else 0,
        cpu=int(busy.group(1)) if busy else None,
        cpu_mta=int(mta.group(1)) if mta else None,
        detail=detail,
        checks=[ln.strip() for ln in lines if ln.startswith("  ")],
    )


class Receiver(threading.Thread):
    """A webhook receiver (postline.sim.receiver) on its own event loop."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        from postline.sim.receiver import WebhookReceiver

        self.receiver = WebhookReceiver()
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self.receiver.start())
        self.ready.set()
        self.loop.run_forever()


def node_config(data: Path, workers: int | None) -> str:
    """The node's TOML: NODE, plus ``[node] workers`` when a worker count is given."""
    text = NODE.format(data=data, port=PORT)
    if workers is None:
        return text
    if "\n[node]\n" in text:
        return text.replace("\n[node]\n", f"\n[node]\nworkers = {workers}\n", 1)
    return f"{text}[node]\nworkers = {workers}\n"


def run_postline(
    n: int, workdir: Path, workers: int | None, receiver: Receiver | None = None
) -> Run:
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)
    cfg = workdir / "node.toml"
    cfg.write_text(node_config(data, workers))
    made = subprocess.run(
        [str(POSTLINE), "tenant", "create", "relay", "--config", str(cfg)],
        check=False,
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        sys.exit(f"postline tenant create failed:\n{made.stderr.strip()}")
    key = made.stdout.strip().splitlines()[-1]
    log = (workdir / "serve.log").open("ab")
    node = subprocess.Popen(
        [str(POSTLINE), "serve", "--config", str(cfg)], stdout=subprocess.PIPE, stderr=log
    )
    assert node.stdout is not None
    node.stdout.readline()  # the ready line
    if receiver is not None:
        r = httpx.post(
            "http://127.0.0.1:18025/v1/webhooks",
            json={"url": receiver.receiver.url},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        r.raise_for_status()
        receiver.receiver.secret = r.json()["secret"]
    try:
        out = subprocess.run(
            [
                sys.executable,
                str(SHARED / "relay_bench.py"),
                "--inject-port",
                str(PORT),
                "-n",
                str(n),
                "--runs",
                "1",
                "--mta-pid",
                str(node.pid),
                "--timeout",
                "300",
                "--label",
                "postline" if workers is None else f"postline workers={workers}",
                "--json-out",
                str(workdir / "postline.jsonl"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        node.terminate()
        node.wait(30)
        log.close()
    return harness_result(out)


def run_peer(script: str, args: list[str], workdir: Path) -> Run:
    """One run of a peer through its shared wrapper (postfix_bench.sh, haraka_bench.sh)."""
    env = dict(os.environ, OUT=str(workdir / "peer-results"))
    out = subprocess.run(
        [str(SHARED / script), *args], capture_output=True, text=True, env=env, check=False
    )
    return harness_result(out)


def median(values: list[int]) -> float | None:
    return statistics.median(values) if values else None


def figure(value: float | None, unit: str = "/s") -> str:
    return "-" if value is None else f"{value:.0f}{unit}"


def ratio(pl: float, peer: float | None) -> str:
    if peer is None:
        return "-"
    return f"{pl / peer if peer else 0.0:.2f}"


def workers_count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 (one per CPU) or more")
    return value


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--no-postfix", action="store_true", help="do not run Postfix")
    ap.add_argument("--no-haraka", action="store_true", help="do not run Haraka")
    ap.add_argument(
        "--workers",
        type=workers_count,
        help="write [node] workers = N into postline's config (0 = one per CPU)",
    )
    ap.add_argument(
        "--webhook", action="store_true", help="also postline with a webhook on every event"
    )
    args = ap.parse_args()
    if not SHARED.is_dir():
        skip(f"{SHARED} is absent")
    if not shutil.which("smtp-source") or not shutil.which("smtp-sink"):
        skip(
            "smtp-source/smtp-sink missing (apt-get install postfix, see ../shared/bench/setup.sh)"
        )
    if os.geteuid() != 0:
        skip("needs root (network namespace, Postfix)")
    if not os.environ.get("BENCH_NETNS"):
        os.execv(
            str(SHARED / "in_netns.sh"), [str(SHARED / "in_netns.sh"), sys.executable, *sys.argv]
        )

    haraka = not args.no_haraka
    if haraka and not (HARAKA.is_file() and shutil.which("node")):
        print(
            f"haraka skipped: not installed (no {HARAKA} or no node; "
            "bash ../shared/bench/setup.sh installs it)",
            flush=True,
        )
        haraka = False

    workdir = Path(tempfile.mkdtemp(prefix="postline-relay-"))
    results: dict[str, list[int]] = {"postline": [], "postfix": [], "haraka": [], "webhook": []}
    cpu: dict[str, list[int | None]] = {"postline": [], "webhook": []}
    receiver = None
    if args.webhook:
        receiver = Receiver()
        receiver.start()
        receiver.ready.wait(10)
    for r in range(1, args.rounds + 1):
        print(f"== round {r} {time.strftime('%H:%M:%S')}", flush=True)
        if not args.no_postfix:
            run = run_peer("postfix_bench.sh", [str(args.n), "1"], workdir)
            results["postfix"].append(run.rate)
            run.show("postfix", r)
        if haraka:
            run = run_peer("haraka_bench.sh", [str(args.n), "1", "outbound"], workdir)
            results["haraka"].append(run.rate)
            run.show("haraka", r)
        run = run_postline(args.n, workdir, args.workers)
        results["postline"].append(run.rate)
        cpu["postline"].append(run.cpu)
        run.show("postline", r)
        if receiver is not None:
            run = run_postline(args.n, workdir, args.workers, receiver)
            results["webhook"].append(run.rate)
            cpu["webhook"].append(run.cpu)
            got = sum(receiver.receiver.by_type.values())
            run.show("postline+webhook", r, f", events received so far {got}")
    pl = statistics.median(results["postline"])
    workers = f" workers={args.workers}" if args.workers is not None else ""
    if receiver is not None:
        wh = statistics.median(results["webhook"])
        bad = receiver.receiver.bad_signatures
        print(
            f"relay_webhook plain_median={pl:.0f}/s webhook_median={wh:.0f}/s "
            f"ratio={wh / pl if pl else 0:.2f} plain={results['postline']} "
            f"webhook={results['webhook']} events={sum(receiver.receiver.by_type.values())} "
            f"bad_signatures={bad} n={args.n}{workers}"
        )
        return
    summary = {"n": args.n, "rounds": args.rounds, "workers": args.workers, **results, "cpu": cpu}
    (workdir / "summary.json").write_text(json.dumps(summary))
    pf = median(results["postfix"])
    hk = median(results["haraka"])
    print(
        f"relay postline_median={pl:.0f}/s postfix_median={figure(pf)} "
        f"haraka_median={figure(hk)} ratio_postfix={ratio(pl, pf)} ratio_haraka={ratio(pl, hk)} "
        f"postline={results['postline']} postfix={results['postfix'] or '-'} "
        f"haraka={results['haraka'] or '-'} n={args.n}{workers}"
    )


if __name__ == "__main__":
    main()
