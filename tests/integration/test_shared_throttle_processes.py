"""The shared throttle file: processes that open it share every limit; and what the file
backend adds to the contract (its files, reset, pruning, errors, no crossing a fork).

The two-process tests run ``WORKER`` in two interpreters (``subprocess``) that start at one
agreed time and print what they did as JSON; the test counts it. Concurrency is witnessed
on ``time.monotonic`` (one clock for the machine): a worker notes a time after its lease was
granted and another before releasing it, an interval that lies within the lease's life, so
more than 3 overlapping intervals would prove more than 3 live leases. Rate grants are
checked against the GCRA bound on the times passed as ``now``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from postline.errors import ThrottleError
from postline.throttle import shared
from postline.throttle.rules import Limits
from postline.throttle.shared import SharedThrottleBackend

KEY = "proc:site=mx.test:00000000"
T0 = 1_000_000.0

WORKER = r"""
import asyncio, json, sys, time
from postline.throttle.rules import Limits
from postline.throttle.shared import SharedThrottleBackend

path, mode, start, seconds, name = sys.argv[1:6]
start, seconds = float(start), float(seconds)


async def holder(backend, out, task):
    deadline = start + seconds
    while time.time() < deadline:
        lease = await backend.acquire_connection(
            "conn:" + path, 3, f"{name}/{task}", 30.0
        )
        if lease is None:
            await asyncio.sleep(0.0005)
            continue
        held_from = time.monotonic()
        await asyncio.sleep(0.002)
        held_to = time.monotonic()
        await backend.release_connection("conn:" + path, lease)
        out.append((held_from, held_to))
        # A site gives its slot up for a moment before it asks again (deliver/site.py),
        # so the other process gets its turn; without the pause one process could keep
        # every slot for the whole run.
        await asyncio.sleep(0.001)


async def sender(backend, out):
    limits = Limits(messages=200, period=1.0, burst=5)
    deadline = start + seconds
    while (now := time.time()) < deadline:
        if await backend.try_acquire("rate:" + path, limits, now=now) == 0.0:
            out.append(now)


async def main():
    backend = SharedThrottleBackend(path)
    while time.time() < start:
        await asyncio.sleep(0.001)
    out = []
    if mode == "connections":
        await asyncio.gather(*(holder(backend, out, i) for i in range(4)))
    else:
        await sender(backend, out)
    await backend.close()
    print(json.dumps(out))


asyncio.run(main())
"""


def _run_workers(path: Path, mode: str, seconds: float, count: int = 2) -> list[Any]:
    """Start ``count`` worker processes at one time; each one's printed result."""
    start = time.time() + 2.0  # time enough for every interpreter to import postline
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), mode, str(start), str(seconds), f"w{i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(count)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_two_processes_never_hold_more_than_the_connection_limit(tmp_path: Path) -> None:
    path = tmp_path / "throttle.db"
    SharedThrottleBackend.reset(path)
    results = _run_workers(path, "connections", seconds=1.5)
    assert all(results), "each process got slots"
    events = sorted(
        [(t0, 1) for intervals in results for t0, _ in intervals]
        + [(t1, -1) for intervals in results for _, t1 in intervals],
        key=lambda e: (e[0], e[1]),  # at equal times a release counts first
    )
    live = peak = 0
    for _, delta in events:
        live += delta
        peak = max(peak, live)
    assert peak <= 3
    assert peak == 3, "the limit was reached (the test exercised contention)"
    assert sum(len(r) for r in results) > 50


def test_two_processes_share_one_rate(tmp_path: Path) -> None:
    path = tmp_path / "throttle.db"
    SharedThrottleBackend.reset(path)
    results = _run_workers(path, "rate", seconds=1.0)
    assert all(results), "each process was granted messages"
    times = sorted(t for granted in results for t in granted)
    # GCRA: k grants since the first need t_k >= t_1 + (k - burst) * interval
    bound = 5 + (times[-1] - times[0]) * 200
    assert len(times) <= bound + 1e-6
    assert len(times) >= 0.5 * bound, "the shared rate was not starved"


# --- the file, reset, pruning, errors -----------------------------------------------------


async def test_the_files_are_private_and_reset_wipes_the_state(tmp_path: Path) -> None:
    path = tmp_path / "throttle.db"
    backend = SharedThrottleBackend(path)
    assert await backend.acquire_connection(KEY, 1, "n", 30.0, now=T0) is not None
    assert await backend.try_acquire(KEY, Limits(messages=1, period=60.0), now=T0) == 0.0
    for name in ("throttle.db", "throttle.db.lock", "throttle.db-wal", "throttle.db-shm"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
    await backend.close()
    SharedThrottleBackend.reset(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    backend = SharedThrottleBackend(path)
    assert await backend.connections(KEY, now=T0) == 0
    assert await backend.try_acquire(KEY, Limits(messages=1, period=60.0), now=T0) == 0.0
    await backend.close()


async def test_two_backends_on_one_file_share_the_limits(tmp_path: Path) -> None:
    a = SharedThrottleBackend(tmp_path / "throttle.db")
    b = SharedThrottleBackend(tmp_path / "throttle.db")
    limits = Limits(messages=1, period=10.0)
    assert await a.try_acquire(KEY, limits, now=T0) == 0.0
    assert await b.try_acquire(KEY, limits, now=T0) == pytest.approx(10.0)
    lease = await a.acquire_connection(KEY, 1, "a", 30.0, now=T0)
    assert lease is not None
    assert await b.acquire_connection(KEY, 1, "b", 30.0, now=T0) is None
    await b.release_connection(KEY, lease, now=T0)
    assert await a.connections(KEY, now=T0) == 0
    await a.report_throttled(KEY, now=T0)
    assert (await b.state(KEY, now=T0)).factor == pytest.approx(0.5)
    await a.close()
    await b.close()


def _rows(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return {
            table: conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("bucket", "lease", "quota")
        }


async def test_idle_rows_are_pruned_and_busy_ones_kept(tmp_path: Path) -> None:
    path = tmp_path / "throttle.db"
    backend = SharedThrottleBackend(path)
    limits = Limits(messages=10, period=1.0)
    for i in range(600):
        await backend.try_acquire(f"idle-{i}", limits, now=T0)
        await backend.acquire_connection(f"idle-{i}", None, "n", 5.0, now=T0)
    await backend.take_quota("group", [shared.QuotaWindow("h", 10, 60.0)], 1, now=T0)
    held = await backend.acquire_connection("held", 1, "n", 1000.0, now=T0)
    assert held is not None
    await backend.report_throttled("slowed", now=T0)
    assert _rows(path) == {"bucket": 601, "lease": 601, "quota": 1}
    for _ in range(shared._PRUNE_EVERY):  # enough calls for one prune, all at T0 + 100
        await backend.connections("probe", now=T0 + 100)
    assert _rows(path) == {"bucket": 1, "lease": 1, "quota": 0}
    assert await backend.connections("held", now=T0 + 100) == 1
    assert (await backend.state("slowed", now=T0 + 100)).factor == pytest.approx(0.6)
    await backend.close()


async def test_an_unlimited_rate_and_reads_write_nothing(tmp_path: Path) -> None:
    path = tmp_path / "throttle.db"
    backend = SharedThrottleBackend(path)
    assert await backend.try_acquire("free", Limits(), now=T0) == 0.0
    assert (await backend.state("free", now=T0)).factor == 1.0
    assert await backend.connections("free", now=T0) == 0
    assert await backend.quota_used("free", ["d"], now=T0) == [0]
    assert await backend.acquire_connection("full", 0, "n", 30.0, now=T0) is None
    assert _rows(path) == {"bucket": 0, "lease": 0, "quota": 0}
    await backend.close()


async def test_database_errors_become_throttle_errors(tmp_path: Path) -> None:
    path = tmp_path / "throttle.db"
    backend = SharedThrottleBackend(path)
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("DROP TABLE lease")
        conn.commit()
    with pytest.raises(ThrottleError, match="acquire_connection"):
        await backend.acquire_connection(KEY, 1, "n", 30.0, now=T0)
    # the failed call left no transaction open and no lock held
    assert await backend.try_acquire(KEY, Limits(messages=1, period=1.0), now=T0) == 0.0
    await backend.close()
    for name in ("throttle.db-wal", "throttle.db-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(ThrottleError):
        SharedThrottleBackend(path)


async def test_a_closed_or_forked_backend_refuses_calls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = SharedThrottleBackend(tmp_path / "throttle.db")
    monkeypatch.setattr(shared, "_forks", shared._forks + 1)  # as a forked child sees it
    with pytest.raises(RuntimeError, match="fork"):
        await backend.connections(KEY, now=T0)
    monkeypatch.undo()
    await backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        await backend.connections(KEY, now=T0)


async def test_the_wall_clock_is_the_default(tmp_path: Path) -> None:
    backend = SharedThrottleBackend(tmp_path / "throttle.db")
    lease = await backend.acquire_connection(KEY, 1, "n", 60.0)
    assert lease is not None
    # the lease expires on the wall clock: alive a minute from now less a second, not after
    assert await backend.connections(KEY, now=time.time() + 59.0) == 1
    assert await backend.connections(KEY, now=time.time() + 61.0) == 0
    await backend.close()
