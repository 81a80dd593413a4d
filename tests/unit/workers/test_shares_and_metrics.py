"""Worker shares split domains stably and evenly; a node's exposition adds its workers'."""

from __future__ import annotations

import re

import pytest

from postline.metrics import Metrics, merge_expositions
from postline.schedule.shares import WorkerShare


def test_every_domain_has_exactly_one_owner_and_the_split_is_even() -> None:
    shares = [WorkerShare(i, 3) for i in range(3)]
    domains = [f"d{i}.example" for i in range(3000)]
    counts = [0, 0, 0]
    for d in domains:
        owners = [s.index for s in shares if s.owns(d)]
        assert len(owners) == 1
        counts[owners[0]] += 1
    assert min(counts) > 900, counts
    # Stable across processes and runs: CRC-32, not Python's salted hash().
    assert WorkerShare(0, 2).owner("gmail.com") == WorkerShare(1, 2).owner("gmail.com") == 1
    assert WorkerShare().owns("anything.test")


def test_budgets_are_split_rounding_up() -> None:
    assert WorkerShare(0, 2).part(500) == 250
    assert WorkerShare(1, 3).part(10) == 4
    assert WorkerShare(0, 4).part(1) == 1
    with pytest.raises(ValueError):
        WorkerShare(2, 2)


def _value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert match, sample
    return float(match.group(1))


async def test_counters_add_up_and_store_figures_are_taken_once() -> None:
    workers = [Metrics(), Metrics()]
    for i, m in enumerate(workers):
        m.ingested_recipients.labels(source="api").inc(10 * (i + 1))
        m.attempts.labels(result="delivered").inc(3)
        m.attempt_seconds.observe(0.02)
        m.connections.set(2 + i)
        m.state_counts = {"delivered": 6, "queued": 24}
        m.limit_refusals.labels(kind="rate", channel="smtp").inc(i + 1)
    texts = [await m.render_own() for m in workers]
    merged = merge_expositions(texts[0], texts[1:]).decode()
    assert _value(merged, 'postline_ingested_recipients_total{source="api"}') == 30
    assert _value(merged, 'postline_delivery_attempts_total{result="delivered"}') == 6
    assert _value(merged, "postline_attempt_seconds_count") == 2
    assert _value(merged, 'postline_attempt_seconds_bucket{le="0.025"}') == 2
    assert _value(merged, "postline_outbound_connections") == 5
    assert _value(merged, 'postline_limit_refusals_total{channel="smtp",kind="rate"}') == 3
    assert _value(merged, 'postline_limit_refusals_total{channel="api",kind="daily"}') == 0
    # Read from the shared store by each worker: the node's figure, not twice it.
    assert _value(merged, 'postline_recipients{state="queued"}') == 24
    # A family only another worker has is shown too.
    workers[1].throttle_events.labels(destination="gmail").inc()
    merged = merge_expositions(texts[0], [await workers[1].render_own()]).decode()
    assert _value(merged, 'postline_throttle_replies_total{destination="gmail"}') == 1


async def test_render_asks_the_peers() -> None:
    own, other = Metrics(), Metrics()
    own.ingested_messages.labels(source="smtp").inc(2)
    other.ingested_messages.labels(source="smtp").inc(5)

    async def peers() -> list[bytes]:
        return [await other.render_own()]

    own.peers = peers
    text = (await own.render()).decode()
    assert _value(text, 'postline_ingested_messages_total{source="smtp"}') == 7
