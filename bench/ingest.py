#!/usr/bin/env python3
"""HTTP batch ingest: recipients per second accepted durably (202 = fsync'd).

A node with delivery switched off takes ``POST /v1/messages/batch`` requests (1000
personalised messages of one recipient each, ~1.5 KB rendered) from a few concurrent
clients. Baseline, measured in the same run with the same client and payloads: a bare
FastAPI/uvicorn endpoint that only parses the JSON and answers 202 — the cost of HTTP and
JSON alone, before any validation, rendering or storage.

With ``--recipients-per-message N`` each message goes to N recipients (To), and each
request carries ``--batch`` recipients in all: ``--recipients-per-message 1000`` sends
one message to 1000 recipients per request.

    .venv/bin/python bench/ingest.py [--batches 40] [--batch 1000] [--clients 4]
                                     [--recipients-per-message 1] [--workers 0]

``--workers`` sets the node's ``[node] workers`` (0: its default, one per CPU).

Final line: ``ingest postline=…/s baseline=…/s ratio=…`` (recipients per second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

POSTLINE = Path(sys.executable).with_name("postline")

BASELINE_APP = textwrap.dedent(
    """
    import json, sys
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import Response
    app = FastAPI()
    @app.post("/v1/messages/batch")
    async def batch(request: Request) -> Response:
        body = json.loads(await request.body())
        n = len(body["messages"])
        return Response(json.dumps({"accepted": n}), status_code=202, media_type="application/json")
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False, http="httptools", loop="uvloop")
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def payload(batch: int, offset: int, per_message: int = 1) -> bytes:
    """``batch`` recipients from ``offset`` on, ``per_message`` of them to a message."""
    if per_message > 1:
        return json.dumps(
            {
                "messages": [
                    {
                        "from": "Shop <news@shop.example>",
                        "to": [
                            f"customer{n}@domain{n % 50}.example"
                            for n in range(start, min(start + per_message, offset + batch))
                        ],
                        "subject": "Our November news",
                        "text": "Hello,\n\nThis month in the shop.\n" + "Details. " * 60,
                        "html": "<p>Hello,</p><p>This month in the shop.</p>",
                        "tags": ["news"],
                        "metadata": {"campaign": 11},
                    }
                    for start in range(offset, offset + batch, per_message)
                ]
            }
        ).encode()
    messages = [
        {
            "from": "Shop <orders@shop.example>",
            "to": [f"customer{offset + i}@domain{(offset + i) % 50}.example"],
            "subject": f"Your order #{offset + i} has shipped",
            "text": f"Hello customer {offset + i},\n\nYour order is on its way.\n"
            + "Details. " * 60,
            "html": f"<p>Hello customer {offset + i},</p><p>Your order is on its way.</p>",
            "tags": ["orders"],
            "metadata": {"order": offset + i},
        }
        for i in range(batch)
    ]
    return json.dumps({"messages": messages}).encode()


async def drive(
    url: str, key: str, bodies: list[bytes], clients: int, per_message: int = 1
) -> tuple[float, int]:
    """Seconds to post every body, and the recipients of the messages accepted."""
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        queue.put_nowait(b)
    accepted = 0
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    async def worker() -> None:
        nonlocal accepted
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as c:
            while not queue.empty():
                body = queue.get_nowait()
                r = await c.post("/v1/messages/batch", content=body)
                if r.status_code != 202:
                    raise SystemExit(f"unexpected {r.status_code}: {r.text[:300]}")
                accepted += r.json()["accepted"] * per_message

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return time.perf_counter() - t0, accepted


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument(
        "--recipients-per-message",
        type=int,
        default=1,
        help="recipients of each message (1000: one message to 1000 recipients a request)",
    )
    ap.add_argument("--workers", type=int, default=0, help="[node] workers (0: one per CPU)")
    args = ap.parse_args()
    per = args.recipients_per_message
    if per < 1 or args.batch % per:
        ap.error("--batch must be a multiple of --recipients-per-message")
    bodies = [payload(args.batch, i * args.batch, per) for i in range(args.batches)]
    warm = [payload(args.batch, 10**7, per)]

    # Baseline: HTTP + JSON only.
    port = free_port()
    base = subprocess.Popen([sys.executable, "-c", BASELINE_APP, str(port)])
    try:
        wait_port(port)
        asyncio.run(drive(f"http://127.0.0.1:{port}", "x", warm, 1))
        b_secs, b_n = asyncio.run(drive(f"http://127.0.0.1:{port}", "x", bodies, args.clients, per))
    finally:
        base.terminate()
        base.wait(10)

    # postline: durable ingest, delivery off.
    with tempfile.TemporaryDirectory(prefix="postline-ingest-") as tmp:
        port = free_port()
        cfg = Path(tmp) / "node.toml"
        cfg.write_text(
            f'data_dir = "{tmp}/data"\n[api]\nlisten = "127.0.0.1:{port}"\n'
            "[submission]\nenabled = false\n[inbound]\nenabled = false\n[delivery]\n"
            'enabled = false\n[log]\nlevel = "warning"\n'
            f"[node]\nworkers = {args.workers}\n"
        )
        out = subprocess.run(
            [str(POSTLINE), "tenant", "create", "bench", "--config", str(cfg)],
            capture_output=True,
            text=True,
            check=True,
        )
        key = out.stdout.strip().splitlines()[-1]
        node = subprocess.Popen(
            [str(POSTLINE), "serve", "--config", str(cfg)], stdout=subprocess.PIPE
        )
        try:
            assert node.stdout is not None
            node.stdout.readline()
            asyncio.run(drive(f"http://127.0.0.1:{port}", key, warm, 1))
            p_secs, p_n = asyncio.run(
                drive(f"http://127.0.0.1:{port}", key, bodies, args.clients, per)
            )
        finally:
            node.terminate()
            node.wait(30)

    p_rate, b_rate = p_n / p_secs, b_n / b_secs
    print(f"baseline (HTTP+JSON only): {b_n} recipients in {b_secs:.2f}s = {b_rate:.0f}/s")
    print(f"postline (validated, rendered, fsync'd): {p_n} in {p_secs:.2f}s = {p_rate:.0f}/s")
    print(
        f"ingest postline={p_rate:.0f}/s baseline={b_rate:.0f}/s ratio={p_rate / b_rate:.2f} "
        f"batch={args.batch} clients={args.clients} recipients_per_message={per} "
        f"workers={args.workers or 'per-cpu'}"
    )


if __name__ == "__main__":
    main()
