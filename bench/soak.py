#!/usr/bin/env python3
"""Soak: a node (or a two-node fleet) under steady mixed traffic for half an hour.

The simulated internet (``postline.sim``: the standard mix of providers and small
domains, with late bounces, complaints and auto-replies sent back to the node's inbound
server) and the sim's webhook receiver run in a helper process; one ``postline serve``
node on SQLite in its own temporary data directory (``--fleet 2``: two nodes on one
PostgreSQL database with one Redis as throttle backend) delivers to it. The node signs
with DKIM (a sender domain published in the simulated DNS and verified), sends every
event to a webhook, retries deferred mail for ``--max-age`` and cleans up behind itself
with short retention windows (``--retain``), so the cleaner works throughout the run.

Traffic at ``--rate`` messages/s: 70 % in ``POST /v1/messages/batch`` of 50 messages,
15 % single ``POST /v1/messages`` (every fourth to three recipients), 15 % over SMTP
submission (STARTTLS, AUTH with the API key, sessions of 100 messages). Recipients follow
``postline demo``'s mix: the big providers, throttled, greylisting, tarpitting and blocking
domains, unknown users, full mailboxes, spam rejections, dropped connections.

Every ``--interval`` it samples per node: RSS (VmRSS summed over the node's process and
its descendants, the worker processes), open file descriptors (entries of /proc/PID/fd,
summed the same way), and from ``/metrics`` what SQLite holds in memory
(``postline_sqlite_memory_bytes``: its page caches are bounded by their sizes, so RSS is
judged without them, and they are shown beside it), recipients queued
(``postline_recipients{state="queued"}``), the age of the oldest queued recipient (the
largest ``postline_queue_oldest_seconds``), the webhook lag
(``postline_webhook_lag_seconds``), recipients accepted and delivered; and the store's
size (SQLite: database file and write-ahead log; PostgreSQL: ``pg_database_size``). One
line per sample; ``--csv FILE`` writes them too (one row per node and sample).

After ``--warmup`` each series is judged on the samples past it: Sen's slope (the median
of the slopes between every two samples, which steps and outliers do not move much) gives
the growth per hour, the Mann-Kendall test whether the series rises at all (one-sided,
p < 0.001). The run fails when a series rises and grows faster than its limit: RSS by
``--rss-limit`` % of its post-warm-up level per hour, file descriptors by ``--fd-limit``
per hour, the store by ``--store-limit`` % per hour (with retention on it must stay
flat once the windows are full), the oldest queued recipient's age by ``--age-limit``
seconds per hour (the node falls behind); and when the traffic could not be sent (over
1 % refused, or under 95 % of what was due), or a node exited.

    .venv/bin/python bench/soak.py                       # 30 min, one node (make soak)
    .venv/bin/python bench/soak.py --fleet 2             # two nodes, PostgreSQL + Redis
    .venv/bin/python bench/soak.py --duration 4m --warmup 1m --interval 20   # a quick check

Final line: ``soak 30 min: rss +1.2%/h fds +0.0/h store +3.1 MB/h queue age p95 118 s:
ok`` (``FAIL (...)`` with the reasons; exit code 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import math
import os
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import IO, Any, cast

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
sys.path.insert(0, str(SRC))

import httpx  # noqa: E402

# -- judging the series --------------------------------------------------------------------
HOUR = 3600.0
Z_RISING = 3.09
"""Mann-Kendall Z above which a series counts as rising (one-sided p < 0.001)."""
MIN_SAMPLES = 8
"""Fewest samples past the warm-up that a trend is fitted to."""


@dataclass(frozen=True)
class Limits:
    rss_pct_per_h: float = 10.0
    """RSS growth allowed, % of the post-warm-up level per hour."""
    fds_per_h: float = 4.0
    """File descriptors a node may gain per hour (a steady leak of one per 15 min fails)."""
    store_pct_per_h: float = 20.0
    """Store growth allowed, % of its post-warm-up size per hour (retention keeps it flat)."""
    age_s_per_h: float = 120.0
    """How much the oldest queued recipient's age may rise per hour."""


@dataclass(frozen=True)
class Trend:
    n: int
    slope: float
    """Sen's slope, units per hour."""
    level: float
    """The fitted value at the first sample."""
    z: float
    """Mann-Kendall Z (positive: rising)."""

    @property
    def rising(self) -> bool:
        return self.z > Z_RISING

    @property
    def relative(self) -> float:
        """The slope as a share of the level per hour (0 for a level of 0)."""
        return self.slope / self.level if self.level > 0 else 0.0


def mann_kendall_z(values: Sequence[float]) -> float:
    """The Mann-Kendall trend statistic, normalised (with the tie correction)."""
    n = len(values)
    s = 0
    for i in range(n - 1):
        for j in range(i + 1, n):
            d = values[j] - values[i]
            s += (d > 0) - (d < 0)
    ties: dict[float, int] = {}
    for v in values:
        ties[v] = ties.get(v, 0) + 1
    var = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties.values())) / 18
    if var <= 0 or s == 0:
        return 0.0
    return (s - 1 if s > 0 else s + 1) / math.sqrt(var)


def fit(times: Sequence[float], values: Sequence[float]) -> Trend:
    """Sen's slope (per hour) and level, and the Mann-Kendall Z, of one series."""
    if len(times) != len(values) or len(times) < 2:
        raise ValueError("a trend needs at least two samples, with a time each")
    slopes = [
        (values[j] - values[i]) / (times[j] - times[i])
        for i in range(len(times) - 1)
        for j in range(i + 1, len(times))
        if times[j] != times[i]
    ]
    slope = statistics.median(slopes) if slopes else 0.0
    level = statistics.median(
        v - slope * (t - times[0]) for t, v in zip(times, values, strict=True)
    )
    return Trend(len(values), slope * HOUR, level, mann_kendall_z(values))


@dataclass
class Series:
    """What the samples measured: times in seconds from the start, one list per figure."""

    times: list[float] = field(default_factory=list)
    rss: dict[str, list[float]] = field(default_factory=dict)
    """Bytes, per node: resident memory less what SQLite holds (its page caches, bounded
    by their sizes)."""
    fds: dict[str, list[float]] = field(default_factory=dict)
    """Open file descriptors, per node."""
    store: list[float] = field(default_factory=list)
    """Bytes."""
    queue_age: list[float] = field(default_factory=list)
    """Seconds: the oldest queued recipient."""


@dataclass(frozen=True)
class Verdict:
    ok: bool
    failures: list[str]
    rss_pct_per_h: float
    """The fastest growing node's RSS, % per hour."""
    fds_per_h: float
    store_bytes_per_h: float
    store_pct_per_h: float
    age_p95: float
    age_s_per_h: float

    def line(self, label: str) -> str:
        state = "ok" if self.ok else "FAIL (" + "; ".join(self.failures) + ")"
        return (
            f"{label}: rss {self.rss_pct_per_h:+.1f}%/h fds {self.fds_per_h:+.1f}/h "
            f"store {self.store_bytes_per_h / 1e6:+.1f} MB/h "
            f"({self.store_pct_per_h:+.1f}%/h) queue age p95 {self.age_p95:.0f} s "
            f"({self.age_s_per_h:+.0f} s/h): {state}"
        )


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def judge(series: Series, warmup: float, limits: Limits | None = None) -> Verdict:
    """Fit a trend to every series past ``warmup`` seconds and hold it to ``limits``."""
    limits = limits or Limits()
    keep = [i for i, t in enumerate(series.times) if t >= warmup]
    times = [series.times[i] for i in keep]
    failures: list[str] = []
    if len(keep) < MIN_SAMPLES:
        failures.append(f"{len(keep)} samples after the warm-up, {MIN_SAMPLES} needed")
        return Verdict(False, failures, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    def after(values: Sequence[float]) -> list[float]:
        return [values[i] for i in keep]

    worst_rss = -math.inf
    for node, values in sorted(series.rss.items()):
        t = fit(times, after(values))
        pct = 100 * t.relative
        worst_rss = max(worst_rss, pct)
        if t.rising and pct > limits.rss_pct_per_h:
            failures.append(f"{node} rss {pct:+.1f}%/h > {limits.rss_pct_per_h:g}%/h")
    worst_fds = -math.inf
    for node, values in sorted(series.fds.items()):
        t = fit(times, after(values))
        worst_fds = max(worst_fds, t.slope)
        if t.rising and t.slope > limits.fds_per_h:
            failures.append(f"{node} fds {t.slope:+.1f}/h > {limits.fds_per_h:g}/h")
    store = fit(times, after(series.store))
    store_pct = 100 * store.relative
    if store.rising and store_pct > limits.store_pct_per_h:
        failures.append(
            f"store {store.slope / 1e6:+.1f} MB/h = {store_pct:+.1f}%/h "
            f"> {limits.store_pct_per_h:g}%/h"
        )
    age_values = after(series.queue_age)
    age = fit(times, age_values)
    if age.rising and age.slope > limits.age_s_per_h:
        failures.append(f"queue age {age.slope:+.0f} s/h > {limits.age_s_per_h:g} s/h")
    return Verdict(
        not failures,
        failures,
        worst_rss if worst_rss > -math.inf else 0.0,
        worst_fds if worst_fds > -math.inf else 0.0,
        store.slope,
        store_pct,
        percentile(age_values, 0.95),
        age.slope,
    )


# -- small helpers -------------------------------------------------------------------------
def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``4m``, ``1.5h`` → seconds."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(s|m|min|h)?\s*", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write e.g. 90s, 4m, 1h")
    unit = {"s": 1.0, None: 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}[m.group(2)]
    return float(m.group(1)) * unit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_METRIC = re.compile(r"^(postline_[a-z_]+)(?:\{([^}]*)\})? ([0-9.e+-]+)$", re.M)


def parse_metrics(text: str) -> list[tuple[str, str, float]]:
    """(name, labels, value) of every ``postline_*`` sample in an exposition."""
    return [(n, labels, float(v)) for n, labels, v in _METRIC.findall(text)]


def _first(metrics: list[tuple[str, str, float]], name: str, labels: str = "") -> float:
    return next((v for n, lab, v in metrics if n == name and lab == labels), 0.0)


def _total(metrics: list[tuple[str, str, float]], name: str, contains: str = "") -> float:
    return sum(v for n, lab, v in metrics if n == name and contains in lab)


def _largest(metrics: list[tuple[str, str, float]], name: str) -> float:
    return max((v for n, _, v in metrics if n == name), default=0.0)


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (found by parent pid in /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def rss_and_fds(root: int) -> tuple[int, int]:
    """VmRSS (bytes) and open file descriptors, summed over ``root`` and its descendants."""
    rss = fds = 0
    for pid in descendants(root):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1]) * 1024
        with contextlib.suppress(OSError):
            fds += len(os.listdir(f"/proc/{pid}/fd"))
    return rss, fds


def child_env() -> dict[str, str]:
    """The environment of the processes started here: no POSTLINE_* settings, and this
    tree's ``src`` first on the path, whatever postline the interpreter has installed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTLINE_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(SRC), env.get("PYTHONPATH", "")) if p)
    return env


# -- the simulated internet and the webhook receiver (a process of their own) ---------------
BOUNCE_DOMAIN = "bounce.soak.test"
SENDER_DOMAIN = "shop.test"


class RecentRequests:
    """Stands in for ``WebhookReceiver.received``: counts every request and its events,
    keeps only the last ``keep`` (a half-hour run would otherwise hold every body)."""

    def __init__(self, keep: int = 1000) -> None:
        self.keep = keep
        self.total = 0
        self.events = 0
        self._items: dict[int, Any] = {}

    def append(self, item: Any) -> None:
        self._items[self.total] = item
        self._items.pop(self.total - self.keep, None)
        self.total += 1
        with contextlib.suppress(ValueError, TypeError):
            self.events += len(json.loads(item.body))

    def __getitem__(self, n: int) -> Any:
        return self._items[n]

    def __setitem__(self, n: int, item: Any) -> None:
        if n in self._items:
            self._items[n] = item

    def __len__(self) -> int:
        return self.total

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._items.values()))


async def sim_main(domains: int, seed: int) -> None:
    """The helper process: the sim and a webhook receiver; prints one JSON line with their
    addresses, then answers JSON commands on standard input, one a line."""
    import logging

    from postline.cli.demo import with_feedback
    from postline.sim.config import SimConfig
    from postline.sim.receiver import WebhookReceiver
    from postline.sim.runner import Simulator

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    sim = Simulator(with_feedback(SimConfig.standard(domains=domains, seed=seed)))
    await sim.start()
    receiver = WebhookReceiver()
    recent = RecentRequests()
    receiver.received = cast(Any, recent)
    await receiver.start()
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)

    def say(data: Mapping[str, Any]) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    say(
        {
            "dns": sim.dns_address,
            "smtp_port": sim.smtp_port,
            "hook": receiver.url,
            "snippet": sim.node_config(helo_hostname="mta.soak.test"),
        }
    )
    try:
        while line := await stdin.readline():
            cmd = json.loads(line)
            if "zone" in cmd:
                for rec in cmd["zone"]:
                    if rec["type"] == "TXT":
                        sim.zone.txt.setdefault(rec["name"], []).append(rec["value"])
                    elif rec["type"] == "MX" and rec["value"]:
                        pref, _, host = rec["value"].partition(" ")
                        sim.zone.mx.setdefault(rec["name"], []).append((int(pref), host))
                        sim.zone.a.setdefault(host.rstrip("."), ["127.0.0.1"])
            if "feedback_to" in cmd:
                sim.set_feedback_to(cmd["feedback_to"])
                sim.set_fbl_address(f"fbl@{BOUNCE_DOMAIN}")
            if cmd.get("stats"):
                fb = sim.recorder.feedback_summary()
                say(
                    {
                        "accepted": sim.recorder.accepted_count(),
                        "duplicates": sim.recorder.duplicate_count(),
                        "feedback": fb.get("totals", fb),
                        "hook_posts": recent.total,
                        "hook_events": recent.events,
                    }
                )
            else:
                say({"ok": True})
    finally:
        await receiver.close()
        await sim.stop()


class SimHelper:
    """The helper process, seen from the soak."""

    def __init__(self, work: Path, domains: int, seed: int) -> None:
        self.proc = subprocess_popen(
            [
                sys.executable,
                __file__,
                "--sim-helper",
                "--domains",
                str(domains),
                "--seed",
                str(seed),
            ],
            stdin=-1,
            stdout=-1,
            stderr=(work / "sim.log").open("ab"),
        )
        self.info: dict[str, Any] = json.loads(self._read())

    def _read(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the simulator helper exited; see sim.log in the work directory")
        return str(line.decode())

    def ask(self, cmd: Mapping[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        self.proc.stdin.flush()
        return cast(dict[str, Any], json.loads(self._read()))

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def subprocess_popen(args: list[str], **kw: Any) -> Any:
    return subprocess.Popen(args, env=child_env(), **kw)


RUN_POSTLINE = "import sys; from postline.cli import main; sys.argv[0] = 'postline'; main()"
"""``postline`` from the path of :func:`child_env` (the venv's script would do too, but
this names no installation)."""


def postline_path() -> str:
    """Where the processes started here import postline from."""
    out = subprocess.run(
        [sys.executable, "-c", "import postline; print(postline.__file__)"],
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return str(Path(out.stdout.strip()).parent)


# -- the nodes -----------------------------------------------------------------------------
NODE = """
data_dir = "{data}"
node_id = "{name}"
{store}
[api]
listen = "127.0.0.1:{api}"
[submission]
listen = "127.0.0.1:{submission}"
[inbound]
listen = "127.0.0.1:{inbound}"
[bounce]
domain = "{bounce}"
secret = "{secret}-bounce"
[domains]
key_secret = "{secret}-keys"
[node]
workers = {workers}
[retry]
first = "3s"
multiplier = 2.0
max_interval = "30s"
max_age = "{max_age:.0f}s"
[throttle]
suspend_for = "15s"
recover_interval = "5s"
{throttle}
[webhooks]
allow_http = true
allow_networks = ["127.0.0.0/8"]
poll_interval = "500ms"
[retention]
bodies = "{bodies:.0f}s"
messages = "{retain:.0f}s"
events = "{retain:.0f}s"
inbound = "{retain:.0f}s"
interval = "5s"
event_partition = "60s"
[log]
level = "warning"

{snippet}
"""


@dataclass
class NodeProc:
    name: str
    config: Path
    work: Path
    api: str = ""
    submission: tuple[str, int] = ("", 0)
    inbound: int = 0
    proc: Any = None

    def start(self) -> None:
        self.proc = subprocess_popen(
            [sys.executable, "-c", RUN_POSTLINE, "serve", "--config", str(self.config)],
            stdout=(self.work / "node.out").open("wb"),
            stderr=(self.work / "node.log").open("ab"),
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        out = self.work / "node.out"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited; see {self.work / 'node.log'}")
            for line in out.read_text().splitlines():
                if line.startswith('{"ready"'):
                    ready = json.loads(line)["ready"]
                    self.api = ready["api"]
                    host, _, port = ready["submission"].rpartition(":")
                    self.submission = (host, int(port))
                    return
            time.sleep(0.1)
        raise TimeoutError(f"node {self.name} did not get ready in {timeout:g} s")

    @property
    def alive(self) -> bool:
        return bool(self.proc is not None and self.proc.poll() is None)

    def stop(self) -> None:
        if not self.alive:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except Exception:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


async def tenant_key(config: Path) -> str:
    """A tenant and API key in the node's store (which this also creates)."""
    from postline.config import load_config
    from postline.store import create_store
    from postline.tenants import generate_key, hash_key, key_prefix

    store = create_store(load_config(config))
    await store.open()
    try:
        tenant = await store.create_tenant("soak")
        key = generate_key()
        await store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
        return key
    finally:
        await store.close()


# -- traffic -------------------------------------------------------------------------------
BATCH = 50
SMTP_SESSION = 100
TEXT = "Hello,\n\nyour order is on its way. Track it in your account.\n" + (
    "Thank you for shopping with us; here is what you ordered and when it arrives.\n" * 12
)


class Recipients:
    """Recipient addresses in ``postline demo``'s mix of domains and local parts, each
    address used once (a bounced address would be suppressed the next time)."""

    def __init__(self, domains: int, seed: int) -> None:
        from postline.cli.demo import plan_messages, with_feedback
        from postline.sim.config import SimConfig

        self._config = with_feedback(SimConfig.standard(domains=domains, seed=seed))
        self._plan = plan_messages
        self._seed = seed
        self._chunk: list[str] = []
        self._n = 0

    def take(self, n: int) -> list[str]:
        out = []
        for _ in range(n):
            if not self._chunk:
                self._seed += 1
                self._chunk = self._plan(self._config, 10_000, self._seed)[::-1]
            local, _, domain = self._chunk.pop().partition("@")
            self._n += 1
            out.append(f"{local.rstrip('0123456789')}{self._n}@{domain}")
        return out


@dataclass
class LoadStats:
    due: int = 0
    """Messages the schedule called for so far."""
    accepted: int = 0
    """Messages accepted (202, 250)."""
    refused: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def error(self, what: str) -> None:
        self.refused += 1
        self.errors[what] = self.errors.get(what, 0) + 1


class SmtpSession:
    """One SMTP submission client (a thread of its own): STARTTLS, AUTH with the API key,
    ``SMTP_SESSION`` messages, QUIT, again."""

    def __init__(self, address: tuple[str, int], key: str) -> None:
        self.address, self.key = address, key
        self.pool = ThreadPoolExecutor(max_workers=1)
        self._smtp: smtplib.SMTP | None = None
        self._sent = 0

    def send(self, rcpt: str, n: int) -> str | None:
        """Submit one message; None when accepted, else what went wrong."""
        try:
            if self._smtp is None:
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                smtp = smtplib.SMTP(*self.address, timeout=60)
                smtp.ehlo("client.soak.test")
                smtp.starttls(context=ctx)
                smtp.ehlo("client.soak.test")
                smtp.login("apikey", self.key)
                self._smtp, self._sent = smtp, 0
            msg = (
                f"From: Soak Shop <orders@{SENDER_DOMAIN}>\r\nTo: <{rcpt}>\r\n"
                f"Subject: Your order #{n} has shipped\r\nDate: {formatdate()}\r\n"
                f"Message-ID: {make_msgid(domain=SENDER_DOMAIN)}\r\n"
                "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
                + TEXT.replace("\n", "\r\n")
            )
            self._smtp.sendmail(f"orders@{SENDER_DOMAIN}", [rcpt], msg.encode())
            self._sent += 1
            if self._sent >= SMTP_SESSION:
                self.close()
            return None
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            return f"smtp {type(exc).__name__}"

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()
            with contextlib.suppress(OSError):
                smtp.close()


class Load:
    """Steady traffic at ``rate`` messages/s over the nodes' HTTP APIs and SMTP submission."""

    def __init__(self, nodes: list[NodeProc], key: str, rate: float, recipients: Recipients):
        self.nodes, self.key, self.rate, self.recipients = nodes, key, rate, recipients
        self.stats = LoadStats()
        self.clients = [
            httpx.AsyncClient(
                base_url=f"http://{n.api}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=60,
            )
            for n in nodes
        ]
        self.smtp = [SmtpSession(n.submission, key) for n in nodes for _ in range(2)]
        self._tasks: set[asyncio.Task[None]] = set()
        self._turn = 0
        self._n = 0

    def _client(self) -> httpx.AsyncClient:
        self._turn += 1
        return self.clients[self._turn % len(self.clients)]

    def _message(self, to: list[str]) -> dict[str, Any]:
        self._n += 1
        msg: dict[str, Any] = {
            "from": f"Soak Shop <orders@{SENDER_DOMAIN}>",
            "to": to,
            "subject": f"Your order #{self._n} has shipped",
            "text": TEXT,
            "tags": ["soak"],
            "metadata": {"order": self._n},
        }
        if self._n % 3 == 0:
            msg["html"] = "<p>" + TEXT.replace("\n", "<br>") + "</p>"
        return msg

    async def _post(self, path: str, body: dict[str, Any], messages: int) -> None:
        try:
            r = await self._client().post(path, json=body)
        except httpx.HTTPError as exc:
            self.stats.error(f"http {type(exc).__name__}")
            return
        if r.status_code == 202:
            self.stats.accepted += messages
        else:
            self.stats.error(f"http {r.status_code}")

    async def _smtp(self, session: SmtpSession, rcpt: str) -> None:
        loop = asyncio.get_running_loop()
        self._n += 1
        problem = await loop.run_in_executor(session.pool, session.send, rcpt, self._n)
        if problem is None:
            self.stats.accepted += 1
        else:
            self.stats.error(problem)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _paced(self, rate: float, unit: int, send: Callable[[], Any], limit: int) -> None:
        """Call ``send`` (``unit`` messages each) at ``rate`` messages/s, at most ``limit``
        calls in flight; a slow node makes it fall behind (``due`` counts on)."""
        sem = asyncio.Semaphore(limit)
        start = time.monotonic()
        calls = 0
        while True:
            due = start + (calls + 1) * unit / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await sem.acquire()
            calls += 1

            async def one() -> None:
                try:
                    await send()
                finally:
                    sem.release()

            self._spawn(one())

    def _count_due(self, start: float) -> None:
        self.stats.due = int((time.monotonic() - start) * self.rate)

    async def run(self) -> None:
        start = time.monotonic()

        async def batch() -> None:
            msgs = [self._message([to]) for to in self.recipients.take(BATCH)]
            await self._post("/v1/messages/batch", {"messages": msgs}, BATCH)

        async def single() -> None:
            n = 3 if self._n % 4 == 0 else 1
            await self._post("/v1/messages", self._message(self.recipients.take(n)), 1)

        async def smtp() -> None:
            session = self.smtp[self._n % len(self.smtp)]
            await self._smtp(session, self.recipients.take(1)[0])

        loops = [
            self._paced(self.rate * 0.70, BATCH, batch, 8),
            self._paced(self.rate * 0.15, 1, single, 32),
            self._paced(self.rate * 0.15, 1, smtp, len(self.smtp)),
        ]
        tasks = [asyncio.create_task(c) for c in loops]
        try:
            while True:
                self._count_due(start)
                await asyncio.sleep(1.0)
        finally:
            self._count_due(start)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=60)
        for c in self.clients:
            await c.aclose()
        for s in self.smtp:
            await asyncio.get_running_loop().run_in_executor(s.pool, s.close)
            s.pool.shutdown()


# -- sampling ------------------------------------------------------------------------------
@dataclass
class NodeSample:
    rss: int
    sqlite: float
    """Bytes SQLite holds in the node's processes (``postline_sqlite_memory_bytes``)."""
    fds: int
    queued: float
    age: float
    lag: float
    accepted: float
    delivered: float


class Store:
    """The store's size on disk: SQLite files, or PostgreSQL's ``pg_database_size``."""

    def __init__(self, sqlite: Path | None = None, dsn: str | None = None) -> None:
        self.sqlite, self.dsn = sqlite, dsn
        self._conn: Any = None

    async def size(self) -> int:
        if self.sqlite is not None:
            return sum(
                p.stat().st_size
                for p in (self.sqlite, self.sqlite.with_name(self.sqlite.name + "-wal"))
                if p.exists()
            )
        import asyncpg

        if self._conn is None:
            self._conn = await asyncpg.connect(self.dsn)
        return int(await self._conn.fetchval("SELECT pg_database_size(current_database())"))

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


async def sample_node(node: NodeProc, client: httpx.AsyncClient) -> NodeSample:
    rss, fds = rss_and_fds(node.proc.pid)
    m = parse_metrics((await client.get(f"http://{node.api}/metrics")).text)
    return NodeSample(
        rss=rss,
        sqlite=_total(m, "postline_sqlite_memory_bytes"),
        fds=fds,
        queued=_first(m, "postline_recipients", 'state="queued"'),
        age=_largest(m, "postline_queue_oldest_seconds"),
        lag=_largest(m, "postline_webhook_lag_seconds"),
        accepted=_total(m, "postline_ingested_recipients_total"),
        delivered=_total(m, "postline_delivery_attempts_total", 'result="delivered"'),
    )


def clock(seconds: float) -> str:
    return f"{int(seconds // 60):3d}:{int(seconds % 60):02d}"


# -- the run -------------------------------------------------------------------------------
async def setup_sender(client: httpx.AsyncClient, sim: SimHelper) -> str:
    r = await client.post("/v1/domains", json={"domain": SENDER_DOMAIN, "algorithm": "ed25519"})
    r.raise_for_status()
    sim.ask({"zone": r.json()["records"]})
    checked = (await client.post(f"/v1/domains/{SENDER_DOMAIN}/verify")).json()
    return str(checked["status"])


async def soak(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="postline-soak-", dir=args.work))
    label = f"soak {args.duration / 60:.3g} min" + (
        f" fleet {args.fleet}" if args.fleet > 1 else ""
    )
    print(
        f"{label}: {args.rate:g} msgs/s, samples every {args.interval:g} s, warm-up "
        f"{args.warmup:g} s, retention {args.retain:g} s, retries for {args.max_age:g} s; "
        f"postline from {postline_path()}; work in {work}",
        flush=True,
    )
    sim = SimHelper(work, args.domains, args.seed)
    pg: Any = None
    redis: Any = None
    nodes: list[NodeProc] = []
    store: Store | None = None
    verdict: Verdict | None = None
    series = Series()
    csv_file: IO[str] | None = None
    try:
        dsn = ""
        throttle = ""
        if args.fleet > 1:
            sys.path.insert(0, str(ROOT / "tests"))
            from support.pgserver import PgServer, find_bin_dir
            from support.redisserver import RedisServer

            bin_dir = find_bin_dir()
            if bin_dir is None or not shutil.which("redis-server"):
                print(f"{label}: skipped, needs PostgreSQL binaries and redis-server")
                return 2
            pg = PgServer(bin_dir, fsync=True)
            pg.start()
            dsn = await pg.create_database()
            redis = RedisServer()
            redis.start()
            throttle = f'backend = "{redis.url}"'
        # One secret for every node: VERP addresses, webhook secrets and DKIM keys made by
        # one node are opened by the others.
        secret = secrets.token_hex(16)
        for i in range(args.fleet):
            name = f"node{i + 1}"
            (work / name).mkdir()
            node = NodeProc(name, work / name / "node.toml", work / name)
            node.inbound = free_port()
            node.config.write_text(
                NODE.format(
                    data=work / name / "data",
                    name=name,
                    store=f'store = "{dsn}"' if dsn else "",
                    api=free_port(),
                    submission=free_port(),
                    inbound=node.inbound,
                    bounce=BOUNCE_DOMAIN,
                    secret=secret,
                    workers=args.workers,
                    max_age=args.max_age,
                    throttle=throttle,
                    bodies=max(10.0, args.retain / 2),
                    retain=args.retain,
                    snippet=sim.info["snippet"],
                )
            )
            nodes.append(node)
        key = await tenant_key(nodes[0].config)
        store = Store(dsn=dsn) if dsn else Store(sqlite=work / "node1" / "data" / "postline.db")
        for node in nodes:
            node.start()
        for node in nodes:
            node.wait_ready()
        sim.ask({"feedback_to": f"127.0.0.1:{nodes[0].inbound}"})
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            base_url=f"http://{nodes[0].api}", headers=headers, timeout=30
        ) as client:
            status = await setup_sender(client, sim)
            hook = await client.post("/v1/webhooks", json={"url": sim.info["hook"]})
            hook.raise_for_status()
        print(
            f"{len(nodes)} node(s) ready ({', '.join(n.api for n in nodes)}), "
            f"store {'PostgreSQL' if dsn else 'SQLite'}; sender domain {SENDER_DOMAIN} "
            f"{status}; webhook to {sim.info['hook']}",
            flush=True,
        )
        if args.fleet > 1:
            # A Redis that postline has not used before starts a quarantine of one
            # [throttle] connection_lease at the first connection asked for: no new
            # connection until it ends (docs/scaling.md). One message starts it.
            async with httpx.AsyncClient(
                base_url=f"http://{nodes[0].api}", headers=headers, timeout=30
            ) as client:
                first = {"from": f"orders@{SENDER_DOMAIN}", "to": ["first@gmail.test"]}
                r = await client.post("/v1/messages", json={**first, "text": "first"})
                r.raise_for_status()
            print("waiting 62 s: the new Redis's quarantine", flush=True)
            await asyncio.sleep(62)
        if args.csv:
            csv_file = open(args.csv, "w", newline="")  # noqa: SIM115
        writer = csv.writer(csv_file) if csv_file else None
        if writer:
            writer.writerow(
                ["t", "node", "rss_bytes", "sqlite_bytes", "fds", "store_bytes", "queued",
                 "queue_age_s", "webhook_lag_s", "accepted", "delivered"]
            )  # fmt: skip
        load = Load(nodes, key, args.rate, Recipients(args.domains, args.seed))
        runner = asyncio.create_task(load.run())
        t0 = time.monotonic()
        before: tuple[float, float, float] | None = None
        scrapes_partial = 0
        async with httpx.AsyncClient(timeout=30) as probe:
            while True:
                await asyncio.sleep(max(0.0, t0 + (len(series.times) + 1) * args.interval
                                        - time.monotonic()))  # fmt: skip
                t = time.monotonic() - t0
                dead = [n.name for n in nodes if not n.alive]
                if runner.done():
                    runner.result()  # the traffic stopped: raise what stopped it
                if dead:
                    print(f"[{clock(t)}] {', '.join(dead)} exited", flush=True)
                    break
                samples = {n.name: await sample_node(n, probe) for n in nodes}
                size = await store.size()
                s = list(samples.values())
                queued = s[0].queued
                age = max(x.age for x in s)
                lag = max(x.lag for x in s)
                # A worker that does not answer its peers in time is left out of that
                # scrape (postline.workers.link): its counters then go missing for one
                # sample, so the counts shown never go back.
                partial = before is not None and (
                    sum(x.accepted for x in s) < before[1]
                    or sum(x.delivered for x in s) < before[2]
                )
                scrapes_partial += partial
                accepted = max(sum(x.accepted for x in s), before[1] if before else 0.0)
                delivered = max(sum(x.delivered for x in s), before[2] if before else 0.0)
                series.times.append(t)
                for name, x in samples.items():
                    series.rss.setdefault(name, []).append(x.rss - x.sqlite)
                    series.fds.setdefault(name, []).append(x.fds)
                series.store.append(size)
                series.queue_age.append(age)
                rates = ""
                if before is not None:
                    dt = t - before[0]
                    rates = (
                        f" ({(accepted - before[1]) / dt:.0f}/s in, "
                        f"{(delivered - before[2]) / dt:.0f}/s out)"
                    )
                before = (t, accepted, delivered)
                per_node = "  ".join(
                    f"{k} rss {x.rss / 1e6:6.1f} MB (SQLite {x.sqlite / 1e6:5.1f}) fds {x.fds:4d}"
                    for k, x in samples.items()
                )
                print(
                    f"[{clock(t)}] {per_node} | store {size / 1e6:6.1f} MB | queued "
                    f"{queued:6.0f} oldest {age:4.0f} s | webhook lag {lag:4.1f} s | "
                    f"accepted {accepted:,.0f} delivered {delivered:,.0f}{rates}"
                    f"{' (a worker missing from /metrics)' if partial else ''} | "
                    f"sent {load.stats.accepted:,} refused {load.stats.refused}",
                    flush=True,
                )
                if writer:
                    for name, x in samples.items():
                        writer.writerow(
                            [f"{t:.1f}", name, x.rss, f"{x.sqlite:.0f}", x.fds, size,
                             f"{x.queued:.0f}", f"{x.age:.1f}", f"{x.lag:.2f}",
                             f"{x.accepted:.0f}", f"{x.delivered:.0f}"]
                        )  # fmt: skip
                    assert csv_file is not None
                    csv_file.flush()
                if t >= args.duration - 1e-6:
                    break
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
        await load.close()
        stats = load.stats
        verdict = judge(series, args.warmup, args.limits)
        extra: list[str] = []
        if dead:
            extra.append(f"{', '.join(dead)} exited")
        if stats.refused > 0.01 * max(1, stats.accepted + stats.refused):
            extra.append(f"{stats.refused} of {stats.accepted + stats.refused} refused")
        if stats.accepted < 0.95 * stats.due:
            extra.append(f"sent {stats.accepted} of {stats.due} due")
        if extra:
            verdict = Verdict(
                False,
                [*verdict.failures, *extra],
                verdict.rss_pct_per_h,
                verdict.fds_per_h,
                verdict.store_bytes_per_h,
                verdict.store_pct_per_h,
                verdict.age_p95,
                verdict.age_s_per_h,
            )
        seen = sim.ask({"stats": True})
        errors = ", ".join(f"{k} {v}" for k, v in sorted(stats.errors.items())) or "none"
        print(
            f"traffic: {stats.accepted:,} messages accepted of {stats.due:,} due, refused: "
            f"{errors}; the sim's mail exchangers accepted {seen['accepted']:,} "
            f"(duplicates {seen['duplicates']}), feedback {seen['feedback']}; webhook "
            f"receiver: {seen['hook_posts']:,} POSTs, {seen['hook_events']:,} events; "
            f"scrapes missing a worker: {scrapes_partial}",
            flush=True,
        )
    finally:
        if csv_file is not None:
            csv_file.close()
        for node in nodes:
            node.stop()
        if store is not None:
            await store.close()
        sim.stop()
        if redis is not None:
            redis.stop()
        if pg is not None:
            pg.stop()
        keep = args.keep or verdict is None or not verdict.ok
        if keep:
            print(f"work directory kept: {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(verdict.line(label))
    return 0 if verdict.ok else 1


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--duration", type=parse_duration, default=1800.0, help="default 30m")
    ap.add_argument("--warmup", type=parse_duration, default=300.0, help="default 5m")
    ap.add_argument("--interval", type=parse_duration, default=60.0, help="default 60s")
    ap.add_argument("--rate", type=float, default=200.0, help="messages/s (default 200)")
    ap.add_argument("--fleet", type=int, choices=[1, 2], default=1)
    ap.add_argument("--workers", type=int, default=0, help="[node] workers (0: one per CPU)")
    ap.add_argument(
        "--retain",
        type=parse_duration,
        default=None,
        help="[retention] messages/events/inbound (bodies: half); default: a third of the "
        "warm-up, at most 2m",
    )
    ap.add_argument(
        "--max-age",
        type=parse_duration,
        default=None,
        help="[retry] max_age; default: half the warm-up, at most 2m",
    )
    ap.add_argument("--domains", type=int, default=50, help="domains of the sim's mix")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--csv", type=Path, help="write every sample here")
    ap.add_argument("--rss-limit", type=float, default=Limits.rss_pct_per_h, help="%%/h")
    ap.add_argument("--fd-limit", type=float, default=Limits.fds_per_h, help="fds/h")
    ap.add_argument("--store-limit", type=float, default=Limits.store_pct_per_h, help="%%/h")
    ap.add_argument("--age-limit", type=float, default=Limits.age_s_per_h, help="s/h")
    ap.add_argument("--work", type=Path, default=None, help="parent of the work directory")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--sim-helper", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sim_helper:
        asyncio.run(sim_main(args.domains, args.seed))
        return
    if args.warmup >= args.duration:
        ap.error("--warmup must be shorter than --duration")
    if args.retain is None:
        args.retain = min(120.0, max(20.0, args.warmup / 3))
    if args.max_age is None:
        args.max_age = min(120.0, max(20.0, args.warmup / 2))
    args.limits = Limits(args.rss_limit, args.fd_limit, args.store_limit, args.age_limit)
    raise SystemExit(asyncio.run(soak(args)))


if __name__ == "__main__":
    main()
