"""``postline demo``: a node, the simulated internet and 20,000 messages, on loopback.

The demo starts ``postline sim``'s servers in this process, a real ``postline serve``
node as a child process pointed at them (its resolver is the sim's DNS, so nothing
leaves 127.0.0.0/8), creates a tenant with ``postline tenant create``, sends the
messages through ``POST /v1/messages/batch`` and follows the queue through ``/metrics``
until it drains. The summary compares what the node says it delivered with what the
sim's mail exchangers accepted — every delivered recipient exactly once.

With ``--keep`` the node and the simulated internet keep running after the summary, until
Ctrl-C (or SIGTERM), and the demo prints the operator dashboard's address and an admin
token (made for the demo's node) to sign in with; the node's data directory is kept
afterwards. Without it the demo stops everything and removes its data once the summary
is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from postline.cli._common import run
from postline.sim.config import SimConfig
from postline.sim.receiver import WebhookReceiver
from postline.sim.recorder import SimReport
from postline.sim.runner import Simulator

__all__ = ["demo"]

console = Console()

# Share of the messages per group of domains, and the local-part mix of recipients.
_PROVIDER_SHARE = {"google": 0.30, "microsoft": 0.15, "yahoo": 0.08, "apple": 0.06}
_FIXED = {
    "tinylimit.test": 8,
    "ratelimited.test": 100,
    "tarpit.test": 40,
    "spamblock.test": 40,
    "nullmx.test": 20,
    "nxdomain.test": 20,
    "deadprimary.test": 150,
    "implicit.test": 150,
}
_LOCAL_MIX = [
    ("user", 0.952),
    ("unknown", 0.02),
    ("greylist", 0.01),
    ("full", 0.005),
    ("overquota", 0.004),
    ("disabled", 0.003),
    ("spam", 0.003),
    ("drop", 0.003),
]
BOUNCE_DOMAIN = "bounce.demo.test"
# How long the demo's node retries a recipient before it expires ([retry] max_age).
MAX_AGE = 60.0
# Share of accepted mail that comes back later, per kind (complaints only from the
# providers that run feedback loops).
_LATE_BOUNCES = 0.005
_AUTO_REPLIES = 0.01
_COMPLAINTS = {"yahoo": 0.004, "microsoft": 0.003}
_METRIC = re.compile(r"^(postline_[a-z_]+)(?:\{([^}]*)\})? ([0-9.e+-]+)$", re.M)


@dataclass
class Plan:
    recipients: list[str] = field(default_factory=list)


def plan_messages(sim: SimConfig, total: int, seed: int) -> list[str]:
    """One recipient address per message, following the demo's realistic mix."""
    rng = random.Random(seed)
    by_provider: dict[str, list[str]] = {}
    plain: list[str] = []
    for d in sim.domains:
        if d.provider in _PROVIDER_SHARE:
            by_provider.setdefault(d.provider, []).append(d.name)
        elif d.name not in _FIXED and d.kind in ("mx", "implicit"):
            plain.append(d.name)
    domains: list[str] = []
    for provider, share in _PROVIDER_SHARE.items():
        names = by_provider.get(provider, [])
        if names:
            domains.extend(rng.choice(names) for _ in range(int(total * share)))
    for name, count in _FIXED.items():
        if any(d.name == name for d in sim.domains):
            domains.extend([name] * max(1, count * total // 20000))
    rest = total - len(domains)
    domains.extend(rng.choice(plain) for _ in range(max(0, rest)))
    rng.shuffle(domains)
    kinds = [k for k, _ in _LOCAL_MIX]
    weights = [w for _, w in _LOCAL_MIX]
    out = []
    for i, domain in enumerate(domains[:total]):
        kind = rng.choices(kinds, weights)[0]
        out.append(f"{kind}{i}@{domain}")
    return out


def _metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, labels, value in _METRIC.findall(text):
        key = f"{name}{{{labels}}}" if labels else name
        out[key] = float(value)
    return out


def _state(m: dict[str, float], state: str) -> int:
    return int(m.get(f'postline_recipients{{state="{state}"}}', 0))


def _bounce_class(enhanced: str | None, text: str) -> str:
    code = enhanced or ""
    if code == "5.1.1":
        return "unknown user (5.1.1)"
    if code in ("5.1.2", "5.1.10"):
        return "domain accepts no mail (null MX / NXDOMAIN)"
    if code.startswith("5.2."):
        return "mailbox full / disabled (5.2.x)"
    if code.startswith("5.7."):
        return "blocked as spam (5.7.x)"
    return f"other ({code or text[:30]})"


async def _send(client: httpx.AsyncClient, recipients: list[str], batch: int) -> dict[str, str]:
    """Submit everything in batches; returns postline id → Message-ID header."""
    ids: dict[str, str] = {}
    sem = asyncio.Semaphore(4)

    async def one(chunk: list[str], start: int) -> None:
        messages = [
            {
                "from": "Demo Shop <orders@shop.test>",
                "to": [addr],
                "subject": f"Your order #{start + i} has shipped",
                "text": f"Hello,\n\nyour order #{start + i} is on its way.\n",
                "tags": ["demo"],
            }
            for i, addr in enumerate(chunk)
        ]
        async with sem:
            r = await client.post("/v1/messages/batch", json={"messages": messages})
        r.raise_for_status()
        for item in r.json()["results"]:
            ids[item["id"]] = item["message_id"]

    await asyncio.gather(
        *(one(recipients[i : i + batch], i) for i in range(0, len(recipients), batch))
    )
    return ids


async def _events(client: httpx.AsyncClient, kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"type": kind, "limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/events", params=params)).json()
        out.extend(page["events"])
        if len(page["events"]) < 1000:
            return out
        cursor = page["next_cursor"]


def with_feedback(config: SimConfig) -> SimConfig:
    """The standard mix with late bounces, complaints and auto-replies switched on."""
    domains = []
    for d in config.domains:
        p = d.profile
        if d.kind in ("mx", "implicit") and not p.block and not p.dead:
            p = replace(
                p,
                late_bounce_rate=_LATE_BOUNCES,
                auto_reply_rate=_AUTO_REPLIES,
                complaint_rate=_COMPLAINTS.get(d.provider or "", 0.0),
                feedback_delay=0.5,
            )
        domains.append(replace(d, profile=p))
    return replace(config, domains=tuple(domains), fbl_address=f"fbl@{BOUNCE_DOMAIN}")


def _node_config(tmp: Path, sim: Simulator, api_port: int, inbound_port: int) -> Path:
    path = tmp / "node.toml"
    # A fully qualified host name: the bounce domain's MX names it.
    node_snippet = sim.node_config(helo_hostname="mta.demo.test")
    path.write_text(
        f"""# written by `postline demo`
data_dir = "{tmp / "data"}"
node_id = "demo"

[api]
listen = "127.0.0.1:{api_port}"

[submission]
enabled = false

[bounce]
domain = "{BOUNCE_DOMAIN}"

[inbound]
listen = "127.0.0.1:{inbound_port}"

[retry]
first = "3s"
multiplier = 2.0
max_interval = "10s"
max_age = "{MAX_AGE:.0f}s"

[queue]
scan_interval = "250ms"

[throttle]
suspend_for = "15s"
recover_interval = "5s"

[webhooks]
allow_http = true
allow_networks = ["127.0.0.0/8"]
poll_interval = "200ms"

[log]
level = "warning"

{node_snippet}
"""
    )
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _cli(postline: str, *args: str) -> tuple[int, str, str]:
    """Run ``postline *args``; (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        postline, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def _serve(node: asyncio.subprocess.Process, api_port: int, token: str, data: Path) -> None:
    """Keep the node and the sim running until Ctrl-C or SIGTERM (or the node stops),
    after saying where the dashboard is and how to sign in."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Plain lines, flushed, never wrapped: scripts read them.
    print(f"dashboard: http://127.0.0.1:{api_port}/ui", flush=True)
    print(f"admin token: {token}", flush=True)
    print(
        f"the node and the simulated internet keep running (data in {data}); press Ctrl-C to stop",
        flush=True,
    )
    stopped = asyncio.ensure_future(stop.wait())
    exited = asyncio.ensure_future(node.wait())
    try:
        await asyncio.wait({stopped, exited}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        stopped.cancel()
        exited.cancel()
    if node.returncode is not None and not stop.is_set():
        console.print(f"[red]the node stopped (exit code {node.returncode})[/red]")
    else:
        console.print("stopping the node and the simulated internet")


async def _main(messages: int, domains: int, seed: int, keep: bool, time_limit: float) -> int:
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="postline-demo-"))
    sim = Simulator(with_feedback(SimConfig.standard(domains=domains, seed=seed)))
    await sim.start()
    receiver = WebhookReceiver()
    await receiver.start()
    node: asyncio.subprocess.Process | None = None
    postline = str(Path(sys.executable).with_name("postline"))
    try:
        api_port = _free_port()
        inbound_port = _free_port()
        sim.set_feedback_to(f"127.0.0.1:{inbound_port}")
        cfg = _node_config(tmp, sim, api_port, inbound_port)
        code, out, err = await _cli(postline, "tenant", "create", "demo", "--config", str(cfg))
        if code != 0:
            console.print(f"[red]postline tenant create failed:[/red] {err}")
            return 1
        key = out.strip().splitlines()[-1]
        admin_token = ""
        if keep:
            code, out, err = await _cli(
                postline, "admin", "token", "create", "--name", "demo", "--config", str(cfg)
            )
            if code != 0:
                console.print(f"[red]postline admin token create failed:[/red] {err}")
                return 1
            admin_token = out.strip().splitlines()[-1]
        log_file = (tmp / "node.log").open("wb")
        node = await asyncio.create_subprocess_exec(
            postline, "serve", "--config", str(cfg), stdout=asyncio.subprocess.PIPE, stderr=log_file
        )
        assert node.stdout is not None
        ready = await node.stdout.readline()
        if not ready.startswith(b"{"):
            console.print(f"[red]the node did not start; see {tmp / 'node.log'}[/red]")
            return 1
        console.print(
            f"[bold]postline demo[/bold]: node on 127.0.0.1:{api_port}, simulated internet "
            f"with {len(sim.domains)} domains (DNS {sim.dns_address}, SMTP port {sim.smtp_port})"
        )
        recipients = plan_messages(sim.config, messages, seed)
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{api_port}", headers=headers, timeout=60
        ) as client:
            await _sender_domain(client, sim)
            hook = await client.post("/v1/webhooks", json={"url": receiver.url})
            hook.raise_for_status()
            receiver.secret = hook.json()["secret"]
            hooked_after = hook.json()["last_event_id"]
            t0 = time.time()
            with Progress(
                TextColumn("{task.description:<28}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[extra]}"),
                TimeElapsedColumn(),
                console=console,
            ) as progress:
                accepted_bar = progress.add_task("accepted over HTTP", total=messages, extra="")
                final_bar = progress.add_task("delivered/bounced/expired", total=messages, extra="")
                send = asyncio.create_task(_send(client, recipients, 500))
                ids: dict[str, str] = {}
                last: dict[str, float] = {}
                while True:
                    await asyncio.sleep(0.5)
                    m = _metrics((await client.get("/metrics")).text)
                    last = m
                    accepted = int(m.get('postline_ingested_recipients_total{source="api"}', 0))
                    done = sum(_state(m, s) for s in ("delivered", "bounced", "expired"))
                    queued = _state(m, "queued")
                    deferred = int(m.get('postline_delivery_attempts_total{result="deferred"}', 0))
                    progress.update(accepted_bar, completed=accepted)
                    extra = f"queued {queued}, retries so far {deferred}"
                    if send.done() and queued:
                        extra = await _waiting(client, queued)
                    progress.update(final_bar, completed=done, extra=extra)
                    if send.done():
                        ids = send.result()
                        if queued == 0 and done >= len(recipients):
                            break
                    if time.time() - t0 > time_limit:
                        break
            elapsed = time.time() - t0
            with console.status("waiting for late bounces, complaints and auto-replies"):
                await sim.settle_feedback(30)
                sent = sum(1 for r in sim.recorder.feedback_records() if r.state == "sent")
                deadline = time.time() + 30
                while time.time() < deadline:
                    m = _metrics((await client.get("/metrics")).text)
                    reports_done = sum(
                        (
                            v
                            for k, v in m.items()
                            if k.startswith("postline_feedback_reports_total")
                        ),
                        0.0,
                    )
                    if reports_done >= sent:
                        break
                    await asyncio.sleep(0.5)
            delivered = await _events(client, "delivered")
            bounced = await _events(client, "bounced")
            expired = await _events(client, "expired")
            feedback = {kind: await _events(client, kind) for kind in ("complained", "auto_reply")}
            suppressions = await _count_suppressions(client)
            recorded = await _event_counts(client, hooked_after)
            deadline = time.time() + 30
            while receiver.by_type != recorded and time.time() < deadline:
                await asyncio.sleep(0.5)
                recorded = await _event_counts(client, hooked_after)
        report = sim.report(window=1.0)
        _summary(sim, report, ids, delivered, bounced, expired, last, elapsed, messages)
        fb_ok = _feedback_summary(sim, bounced, feedback, suppressions)
        hooks_ok = _webhook_summary(receiver, recorded)
        ok = report.duplicate_count == 0 and _exact(ids, delivered, report) and fb_ok and hooks_ok
        if keep:
            await _serve(node, api_port, admin_token, tmp)
        return 0 if ok else 1
    finally:
        if node is not None and node.returncode is None:
            # Gone already when Ctrl-C in a terminal reached it too.
            with contextlib.suppress(ProcessLookupError):
                node.terminate()
            try:
                await asyncio.wait_for(node.wait(), 30)
            except TimeoutError:
                node.kill()
                await node.wait()
        await sim.stop()
        await receiver.close()
        if keep:
            console.print(f"state kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


async def _waiting(client: httpx.AsyncClient, queued: int) -> str:
    """What the last queued recipients wait for: their next retry, and their expiry
    ``MAX_AGE`` after acceptance."""
    page = (await client.get("/v1/queues", params={"limit": 500})).json()
    now = time.time()
    queues = [q for q in page.get("queues", []) if q["depth"]]
    waiting = sum(q["deferred"] for q in queues)
    retries = [_epoch(q["next_attempt_at"]) for q in queues if q["next_attempt_at"]]
    oldest = [_epoch(q["oldest_at"]) for q in queues if q["oldest_at"]]
    if not waiting:
        return f"queued {queued}, being sent"
    text = f"{waiting} waiting for their retry"
    if retries:
        text += f" (next in {max(0.0, min(retries) - now):.0f} s)"
    if oldest:
        text += f"; expire in {max(0.0, min(oldest) + MAX_AGE - now):.0f} s"
    return text


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _sender_domain(client: httpx.AsyncClient, sim: Simulator) -> None:
    """Register the demo's sender domain, publish its records in the simulated DNS and
    verify it, so that every message leaves DKIM-signed."""
    r = await client.post("/v1/domains", json={"domain": "shop.test", "algorithm": "ed25519"})
    r.raise_for_status()
    for rec in r.json()["records"]:
        if rec["type"] == "TXT":
            sim.zone.txt.setdefault(rec["name"], []).append(rec["value"])
        elif rec["type"] == "MX" and rec["value"]:
            pref, _, host = rec["value"].partition(" ")
            sim.zone.mx.setdefault(rec["name"], []).append((int(pref), host))
            sim.zone.a.setdefault(host.rstrip("."), ["127.0.0.1"])
    checked = (await client.post("/v1/domains/shop.test/verify")).json()
    states = ", ".join(f"{x['purpose']} {x['status']}" for x in checked["records"])
    selector = checked["keys"][0]["selector"]
    console.print(
        f"sender domain shop.test: {checked['status']} ({states}); mail is DKIM-signed "
        f"d=shop.test s={selector}"
    )


async def _count_suppressions(client: httpx.AsyncClient) -> Counter[str]:
    out: Counter[str] = Counter()
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1000}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/suppressions", params=params)).json()
        out.update(e["reason"] for e in page["data"])
        cursor = page.get("next_cursor")
        if not cursor:
            return out


def _feedback_summary(
    sim: Simulator,
    bounced: list[dict[str, Any]],
    feedback: dict[str, list[dict[str, Any]]],
    suppressions: Counter[str],
) -> bool:
    """What came back after delivery, as the sim sent it and as the node recorded it."""
    records = sim.recorder.feedback_records()
    sent = {
        kind: {r.recipient for r in records if r.kind == kind and r.state == "sent"}
        for kind in ("dsn", "arf", "autoreply")
    }
    seen = {
        "dsn": {e["recipient"] for e in bounced if e["data"].get("async")},
        "arf": {e["recipient"] for e in feedback["complained"]},
        "autoreply": {e["recipient"] for e in feedback["auto_reply"]},
    }
    table = Table(title="after delivery: reports to the inbound server", header_style="bold")
    for col in ("kind", "sim sent", "node recorded", "formats"):
        table.add_column(col, justify="left" if col in ("kind", "formats") else "right")
    names = {"dsn": "late bounce (DSN)", "arf": "complaint (ARF)", "autoreply": "auto-reply"}
    ok = True
    for kind, label in names.items():
        formats = sorted({r.format for r in records if r.kind == kind})
        match = sent[kind] == seen[kind]
        ok = ok and match
        mark = "" if match else " [red]mismatch[/red]"
        table.add_row(label, str(len(sent[kind])), f"{len(seen[kind])}{mark}", ", ".join(formats))
    console.print(table)
    listed = ", ".join(f"{reason} {n}" for reason, n in sorted(suppressions.items())) or "none"
    console.print(f"suppression list now: {listed}")
    return ok


async def _event_counts(client: httpx.AsyncClient, after: str) -> Counter[str]:
    """The events the node recorded after event ``after``, per type, page by page."""
    counts: Counter[str] = Counter()
    params: dict[str, Any] = {"limit": 1000, "cursor": after}
    while True:
        page = (await client.get("/v1/events", params=params)).json()
        counts.update(e["type"] for e in page["events"])
        if len(page["events"]) < 1000:
            return counts
        params["cursor"] = page["next_cursor"]


def _webhook_summary(receiver: WebhookReceiver, recorded: Counter[str]) -> bool:
    """Events the node recorded against those its webhook delivered (signatures checked)."""
    table = Table(title="events out: the demo's webhook receiver", header_style="bold")
    for col in ("event type", "node recorded", "webhook received"):
        table.add_column(col, justify="left" if col == "event type" else "right")
    ok = receiver.bad_signatures == 0
    for kind in sorted(set(recorded) | set(receiver.by_type)):
        match = recorded[kind] == receiver.by_type[kind]
        ok = ok and match
        mark = "" if match else " [red]mismatch[/red]"
        table.add_row(kind, str(recorded[kind]), f"{receiver.by_type[kind]}{mark}")
    console.print(table)
    console.print(
        f"webhook POSTs: {len(receiver.received)}, signatures that failed: "
        f"{receiver.bad_signatures}, events received more than once: {receiver.duplicates}"
    )
    return ok


def _exact(ids: dict[str, str], delivered: list[dict[str, Any]], report: SimReport) -> bool:
    ours = {(ids.get(e["message_id"], ""), e["recipient"]) for e in delivered}
    theirs = {(r.message_id, r.recipient) for r in report.records}
    return ours == theirs and len(delivered) == len(ours)


def _summary(
    sim: Simulator,
    report: SimReport,
    ids: dict[str, str],
    delivered: list[dict[str, Any]],
    bounced: list[dict[str, Any]],
    expired: list[dict[str, Any]],
    metrics: dict[str, float],
    elapsed: float,
    total: int,
) -> None:
    first_try = sum(1 for e in delivered if e["data"].get("attempt", 1) == 1)
    table = Table(title="postline demo: summary", show_header=True, header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("accepted (HTTP 202, fsync'd)", str(len(ids)))
    table.add_row("delivered, first attempt", str(first_try))
    table.add_row("delivered after retries", str(len(delivered) - first_try))
    sync = [e for e in bounced if not e["data"].get("async")]
    classes = Counter(
        _bounce_class(e["data"].get("status"), e["data"].get("text", "")) for e in sync
    )
    for name, n in sorted(classes.items()):
        table.add_row(f"bounced: {name}", str(n))
    table.add_row("expired (still failing at max age)", str(len(expired)))
    table.add_row("still queued", str(_state(metrics, "queued")))
    rate = len(delivered) / elapsed if elapsed else 0.0
    table.add_row("elapsed / delivery throughput", f"{elapsed:.1f}s / {rate:.0f} msg/s")
    console.print(table)

    limits = Table(title="throttled destinations: what the sim's MX saw", header_style="bold")
    columns = (
        "destination",
        "node limit",
        "peak in any 1 s",
        "at most",
        "peak conns",
        "conn limit",
    )
    for col in columns:
        limits.add_column(col, justify="right" if col != "destination" else "left")
    hints = {h["name"]: h for h in sim.throttle_hints()}
    for name in ("google", "microsoft", "yahoo", "apple"):
        h = hints.get(name)
        if h is None:
            continue
        peak = report.peak_rate_by_provider.get(name, 0.0)
        conns = max(
            (
                s.peak
                for k, s in report.connections_by_provider_client.items()
                if k.startswith(name + "|")
            ),
            default=0,
        )
        limit = f"{h['messages']}/s +{h.get('burst', 0)} burst"
        bound = int(h["messages"]) + int(h.get("burst", 0)) + 1 + int(h["connections"])
        limits.add_row(name, limit, f"{peak:.0f}", str(bound), str(conns), str(h["connections"]))
    for domain in ("ratelimited.test", "tinylimit.test"):
        peak = report.peak_rate_by_domain.get(domain, 0.0)
        stats = report.connections_by_domain.get(domain)
        limits.add_row(
            domain, "default rule", f"{peak:.0f}", "-", str(stats.peak if stats else 0), "-"
        )
    console.print(limits)
    console.print(
        "peak 1 s: the most messages the sim's MX accepted (DATA done) in any "
        "sliding one-second window. The node's limiter admits at most rate + burst + 1 "
        "messages in any second; a message admitted just before a window may finish "
        "inside it, one per open connection, so the MX can see up to rate + burst + 1 + "
        "connections ('at most')."
    )

    exact = _exact(ids, delivered, report)
    verdict = "[green]OK[/green]" if exact and report.duplicate_count == 0 else "[red]FAILED[/red]"
    console.print(
        f"exactly-once check: node delivered {len(delivered)} recipients, the sim's mail "
        f"exchangers accepted {report.accepted} ({len(report.accepted_pairs())} distinct), "
        f"duplicates {report.duplicate_count}: {verdict}"
    )
    accounted = len(delivered) + len(sync) + len(expired) + _state(metrics, "queued")
    console.print(f"every accepted recipient accounted for: {accounted} of {total}")


def demo(
    messages: Annotated[int, typer.Option(help="Messages to send (one recipient each).")] = 20000,
    domains: Annotated[int, typer.Option(help="Simulated domains.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of the mix and the sim.")] = 1,
    keep: Annotated[
        bool,
        typer.Option(
            help="After the summary, keep the node and the simulated internet running until "
            "Ctrl-C, print the dashboard's address and an admin token to sign in with, and "
            "keep the node's data directory afterwards."
        ),
    ] = False,
    time_limit: Annotated[float, typer.Option(help="Stop waiting after this many seconds.")] = 150,
) -> None:
    """Run a node against the simulated internet and show what happens."""
    code = run(_main(messages, domains, seed, keep, time_limit))
    raise typer.Exit(code)
