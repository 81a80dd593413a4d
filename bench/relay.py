#!/usr/bin/env python3
"""End-to-end relay benchmark: smtp-source → postline (durable) → smtp-sink, beside Postfix.

Uses the reference harness in ../shared/bench (relay_bench.py, in a loopback-only network
namespace). Rounds are interleaved — Postfix, then postline — so both meet the same
machine weather. Needs root, Debian's postfix (smtp-source, smtp-sink) and ../shared;
skips (exit 0, with a message) when any is missing.

    .venv/bin/python bench/relay.py [--rounds 3] [-n 20000] [--no-postfix]
    .venv/bin/python bench/relay.py --webhook --no-postfix   # with a webhook vs without

Final line: ``relay postline_median=… postfix_median=… ratio=…``. With ``--webhook`` every
round also runs postline with a webhook endpoint subscribed to every event type (a
receiver in this process, every signature checked; the run ends when the sink has every
message, the receiver may still be catching up), and the final line is ``relay_webhook
plain_median=… webhook_median=… ratio=… events=…``.
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
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "bench"
POSTLINE = Path(sys.executable).with_name("postline")
RATE = re.compile(r"^msgs=\d+ seconds=[\d.]+ rate=(\d+)/s")
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
name = "default"
connections = 20
[webhooks]
allow_http = true
allow_networks = ["127.0.0.0/8"]
[log]
level = "warning"
"""


def skip(reason: str) -> None:
    print(f"relay benchmark skipped: {reason}")
    print("relay skipped=1")
    sys.exit(0)


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


def run_postline(n: int, workdir: Path, receiver: Receiver | None = None) -> tuple[int, str]:
    data = workdir / "data"
    shutil.rmtree(data, ignore_errors=True)
    cfg = workdir / "node.toml"
    cfg.write_text(NODE.format(data=data, port=PORT))
    made = subprocess.run(
        [str(POSTLINE), "tenant", "create", "relay", "--config", str(cfg)],
        check=True,
        capture_output=True,
        text=True,
    )
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
                "postline",
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
    lines = out.stdout.strip().splitlines()
    run_line = next((ln for ln in lines if ln.startswith("run ")), "")
    final = lines[-1] if lines else out.stderr
    m = RATE.match(final)
    return (int(m.group(1)) if m else 0), run_line.strip()


def run_postfix(n: int, workdir: Path) -> tuple[int, str]:
    env = dict(os.environ, OUT=str(workdir / "postfix-results"))
    out = subprocess.run(
        [str(SHARED / "postfix_bench.sh"), str(n), "1"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = out.stdout.strip().splitlines()
    run_line = next((ln for ln in lines if ln.startswith("run ")), "")
    m = RATE.match(lines[-1]) if lines else None
    return (int(m.group(1)) if m else 0), run_line.strip()


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--no-postfix", action="store_true", help="measure postline only")
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

    workdir = Path(tempfile.mkdtemp(prefix="postline-relay-"))
    results: dict[str, list[int]] = {"postline": [], "postfix": [], "webhook": []}
    receiver = None
    if args.webhook:
        receiver = Receiver()
        receiver.start()
        receiver.ready.wait(10)
    for r in range(1, args.rounds + 1):
        print(f"== round {r} {time.strftime('%H:%M:%S')}", flush=True)
        if not args.no_postfix:
            rate, line = run_postfix(args.n, workdir)
            results["postfix"].append(rate)
            print(f"  postfix : {rate}/s  {line}", flush=True)
        rate, line = run_postline(args.n, workdir)
        results["postline"].append(rate)
        print(f"  postline: {rate}/s  {line}", flush=True)
        if receiver is not None:
            rate, line = run_postline(args.n, workdir, receiver)
            results["webhook"].append(rate)
            got = sum(receiver.receiver.by_type.values())
            print(f"  +webhook: {rate}/s  {line}  (events received so far {got})", flush=True)
    pl = statistics.median(results["postline"])
    if receiver is not None:
        wh = statistics.median(results["webhook"])
        bad = receiver.receiver.bad_signatures
        print(
            f"relay_webhook plain_median={pl:.0f}/s webhook_median={wh:.0f}/s "
            f"ratio={wh / pl if pl else 0:.2f} plain={results['postline']} "
            f"webhook={results['webhook']} events={sum(receiver.receiver.by_type.values())} "
            f"bad_signatures={bad} n={args.n}"
        )
        return
    summary = {"n": args.n, "rounds": args.rounds, **results}
    (workdir / "summary.json").write_text(json.dumps(summary))
    if results["postfix"]:
        pf = statistics.median(results["postfix"])
        ratio = pl / pf if pf else 0.0
        print(
            f"relay postline_median={pl:.0f}/s postfix_median={pf:.0f}/s ratio={ratio:.2f} "
            f"postline={results['postline']} postfix={results['postfix']} n={args.n}"
        )
    else:
        print(f"relay postline_median={pl:.0f}/s postline={results['postline']} n={args.n}")


if __name__ == "__main__":
    main()
