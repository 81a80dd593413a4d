"""The store's health for /readyz, metrics and the log: down at the first failure of any
operation, up again when a write succeeds or the probe answers; refusals counted and
logged once per interval; the ingestor reports what it meets."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

from postline.errors import StoreUnavailable
from postline.ingest.service import Ingestor
from postline.metrics import merge_expositions
from postline.store.health import StoreHealth


class _Probe:
    def __init__(self) -> None:
        self.fail = True
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.fail:
            raise StoreUnavailable("PostgreSQL unreachable: connection refused")


class _Store:
    def __init__(self) -> None:
        self.fail = True
        self.probe = _Probe()
        self.health = StoreHealth(self.probe, probe_every=0.02)

    async def enqueue(self, messages: Any, **_: Any) -> None:
        if self.fail:
            raise StoreUnavailable("SQLite: database or disk is full")
        return

    async def suppressed(self, *_: Any, **__: Any) -> dict[str, Any]:
        if self.fail:
            raise StoreUnavailable("SQLite: database is locked")
        return {}


async def test_a_refused_write_marks_the_store_down_until_a_write_succeeds() -> None:
    store = _Store()
    ingestor = Ingestor(store, node_id="n1", hostname="mx.test")  # type: ignore[arg-type]
    assert store.health.healthy and store.health.reason() is None
    with pytest.raises(StoreUnavailable):
        await ingestor.enqueue("t1", [])
    assert ingestor.refused_writes == 1 and store.health.errors["enqueue"] == 1
    reason = store.health.reason()
    assert reason is not None and reason["component"] == "store"
    assert "disk is full" in reason["detail"] and reason["since"].endswith("Z")
    store.fail = False
    await ingestor.enqueue("t1", [])
    assert store.health.healthy
    await store.health.close()


async def test_a_failure_before_the_write_marks_it_down_and_the_probe_brings_it_back() -> None:
    store = _Store()
    ingestor = Ingestor(store, node_id="n1", hostname="mx.test")  # type: ignore[arg-type]
    with pytest.raises(StoreUnavailable):
        await ingestor.suppressed("t1", ["a@b.test"], now=time.time())
    assert not store.health.healthy and store.health.errors["suppressions"] == 1
    await asyncio.sleep(0.1)
    assert not store.health.healthy and store.probe.calls >= 2  # probed, still down
    store.probe.fail = False
    deadline = time.monotonic() + 5
    while not store.health.healthy:
        assert time.monotonic() < deadline, "the probe did not bring the store back"
        await asyncio.sleep(0.01)
    await store.health.close()


async def test_refusals_are_logged_once_per_interval_with_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = _Probe()
    health = StoreHealth(probe, probe_every=0.02, report_every=0.1)
    caplog.set_level(logging.WARNING, logger="postline.store.health")
    err = StoreUnavailable("PostgreSQL unreachable")
    health.failed("idempotency", err)
    for _ in range(500):
        health.refused("api", StoreUnavailable("PostgreSQL unreachable"))  # no op yet: other
    health.refused("api", err)  # counted as idempotency already
    for _ in range(300):
        health.failed("suppressions", err)
        health.refused("smtp", err)
    await asyncio.sleep(0.25)
    probe.fail = False
    while not health.healthy:
        await asyncio.sleep(0.01)
    actions = [r.__dict__.get("action") for r in caplog.records]
    assert actions[0] == "store.unavailable" and actions[-1] == "store.available"
    assert 3 <= len(actions) <= 6, actions  # a line per interval, not per refusal
    assert sum(r.__dict__.get("refused_api", 0) for r in caplog.records) == 501
    assert sum(r.__dict__.get("refused_smtp", 0) for r in caplog.records) == 300
    assert "refused 501 API requests and 300 SMTP commands" in caplog.records[1].getMessage()
    assert health.errors["other"] == 500 and health.errors["suppressions"] == 300
    assert health.errors["idempotency"] == 1
    await health.close()


async def test_a_relapse_right_after_a_probe_waits_for_a_quiet_spell() -> None:
    """Reads answer, writes fail (a full disk): the probe alone does not flap the node
    back to ready while writes keep failing."""
    probe = _Probe()
    probe.fail = False
    health = StoreHealth(probe, probe_every=0.02, relapse_hold=0.3)
    err = StoreUnavailable("disk full")
    health.failed("enqueue", err)
    while not health.healthy:
        await asyncio.sleep(0.01)
    health.failed("enqueue", err)  # right after the probe said it was back
    await asyncio.sleep(0.15)
    assert not health.healthy
    await asyncio.sleep(0.4)
    assert health.healthy
    await health.close()


def test_workers_show_the_lowest_readiness() -> None:
    def text(ready: int, errors: int) -> bytes:
        return (
            "# TYPE postline_ready gauge\n"
            f"postline_ready {ready}.0\n"
            "# TYPE postline_store_errors counter\n"
            f'postline_store_errors_total{{op="enqueue"}} {errors}.0\n'
        ).encode()

    merged = merge_expositions(text(1, 2), [text(0, 3), text(1, 0)]).decode()
    assert "postline_ready 0.0" in merged
    assert 'postline_store_errors_total{op="enqueue"} 5.0' in merged


class _SlowStore:
    def __init__(self) -> None:
        self.delay = 0.0
        self.started = asyncio.Event()
        self.health = StoreHealth(_Probe())

    async def enqueue(self, messages: Any, **_: Any) -> None:
        self.started.set()
        await asyncio.sleep(self.delay)


async def test_slow_acknowledgements_make_the_node_not_ready() -> None:
    store = _SlowStore()
    ingestor = Ingestor(store, node_id="n1", hostname="mx.test", ack_budget=0.05)  # type: ignore[arg-type]
    await ingestor.enqueue("t1", [])
    assert ingestor.acks_healthy(time.monotonic())
    # A write in progress for longer than the budget: not ready while it lasts...
    store.delay = 0.3
    slow = asyncio.create_task(ingestor.enqueue("t1", []))
    await store.started.wait()
    assert ingestor.acks_healthy(time.monotonic())
    await asyncio.sleep(0.1)
    assert not ingestor.acks_healthy(time.monotonic())
    await slow
    # ...and for a while after it finished, then ready again.
    done = time.monotonic()
    assert not ingestor.acks_healthy(done + 1)
    assert ingestor.acks_healthy(done + 11)
