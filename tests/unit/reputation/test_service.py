"""The reputation service on a real (SQLite) store: counting, judging, pausing, resuming."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postline.config import ReputationConfig
from postline.errors import SendingPaused
from postline.metrics import Metrics
from postline.model import EventType, RecipientState
from postline.reputation import PAUSED, WARNED, Reputation, pause_tenant, resume_tenant
from postline.store.base import AttemptRecord, EventQuery, Tenant
from postline.store.sqlite.backend import SQLiteStore

CFG = ReputationConfig.model_validate(
    {"window": "1h", "min_volume": 20, "evaluate_interval": 0.1, "flush_interval": 0.1}
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "postline.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def outcomes(
    tenant_id: str,
    *,
    delivered: int = 0,
    hard: int = 0,
    soft: int = 0,
    stream: str = "transactional",
    at: float | None = None,
) -> list[AttemptRecord]:
    at = time.time() if at is None else at
    out = []
    for i in range(delivered + hard + soft):
        if i < delivered:
            state, data = RecipientState.DELIVERED, {}
        elif i < delivered + hard:
            state, data = RecipientState.BOUNCED, {"hard": True, "category": "invalid_recipient"}
        else:
            state, data = RecipientState.BOUNCED, {"hard": False, "category": "mailbox_full"}
        out.append(
            AttemptRecord(
                message_id=f"m{i}",
                idx=0,
                tenant_id=tenant_id,
                address=f"a{i}@example.com",
                state=state,
                event=EventType(state.value),
                at=at,
                data=data,
                stream=stream,
            )
        )
    return out


async def events(store: SQLiteStore, tenant: Tenant) -> list[tuple[str, dict[str, object]]]:
    kinds = ["reputation_warning", "reputation_recovered", "tenant_paused", "tenant_resumed"]
    return [
        (e.type, e.data) for e in await store.events(EventQuery(tenant_id=tenant.id, types=kinds))
    ]


async def test_counts_what_makes_the_rates(store: SQLiteStore) -> None:
    acme = await store.create_tenant("acme")
    rep = Reputation(store, CFG, node_id="n1")
    rep.observe(outcomes(acme.id, delivered=7, hard=2, soft=5))
    rep.observe(outcomes(acme.id, delivered=3, stream="bulk"))
    rep.complained(acme.id, "bulk", time.time())
    # DSNs postline sends back to SMTP senders are not the tenant's mail.
    dsns = [dataclasses.replace(r, source="dsn") for r in outcomes(acme.id, delivered=4, hard=4)]
    rep.observe(dsns)
    await rep.flush()
    totals = await store.reputation_totals(since=0.0)
    assert [(t.stream, t.delivered, t.bounced, t.complained) for t in totals] == [
        ("bulk", 3, 0, 1),
        ("transactional", 7, 2, 0),  # soft bounces are not counted
    ]


async def test_warned_then_paused_then_refused_and_held(store: SQLiteStore) -> None:
    acme = await store.create_tenant("acme")
    other = await store.create_tenant("other")
    holds: list[tuple[str, bool]] = []
    metrics = Metrics()
    rep = Reputation(
        store,
        CFG,
        node_id="n1",
        metrics=metrics,
        on_hold=lambda t, h: holds.append((t, h)),
        recheck=0,
    )
    await rep.load()

    rep.observe(outcomes(acme.id, delivered=10, hard=1))  # under the minimum volume
    rep.observe(outcomes(other.id, delivered=50))
    assert await rep.evaluate() == []

    rep.observe(outcomes(acme.id, delivered=9))  # 1 of 20: 5 %, the warning threshold
    [warned] = await rep.evaluate()
    assert (warned.tenant_id, warned.status, warned.changed_by) == (acme.id, WARNED, "reputation")
    assert "hard-bounce rate 5 % (1 of 20" in warned.reason
    await rep.check(acme.id)  # a warning refuses nothing

    rep.observe(outcomes(acme.id, hard=2))  # 3 of 22: 13.6 %
    [paused] = await rep.evaluate()
    assert paused.status == PAUSED
    assert holds == [(acme.id, True)]
    assert (acme.id, "*") in await store.paused_queues()
    assert [t for t, _ in await events(store, acme)] == ["reputation_warning", "tenant_paused"]
    _, data = (await events(store, acme))[-1]
    assert (data["status"], data["previous"], data["bounced"], data["delivered"]) == (
        "paused",
        "warned",
        3,
        19,
    )
    assert data["bounce_rate"] == pytest.approx(3 / 22)
    assert data["streams"] == {"transactional": {"delivered": 19, "bounced": 3, "complained": 0}}

    with pytest.raises(SendingPaused) as refused:
        await rep.check(acme.id)
    err = refused.value
    assert "Sending is paused for tenant 'acme'" in str(err)
    message = str(err)
    assert "hard-bounce rate 13.6 % (3 of 22 delivered or hard-bounced recipients)" in message
    assert "over the last 1h is at or above the pause threshold of 10 %" in message
    assert "postline tenant resume acme" in err.fix
    assert err.smtp.startswith("550 5.7.1 Sending paused for tenant acme since ")
    assert "\r" not in err.smtp and "\n" not in err.smtp
    await rep.check(other.id)  # the other tenant is unaffected

    text = (await metrics.render()).decode()
    assert 'postline_tenant_paused{tenant="acme"} 1.0' in text
    assert 'postline_tenant_paused{tenant="other"} 0.0' in text
    assert 'postline_reputation_bounce_rate{tenant="acme"} 0.136' in text

    # Still bad, still paused: nothing new happens until an operator acts.
    rep.observe(outcomes(acme.id, hard=5))
    assert await rep.evaluate() == []

    resumed = await resume_tenant(store, acme, node_id="cli")
    assert resumed is not None and resumed.judged_since > 0
    await rep.check(acme.id)  # a resume made elsewhere counts at once for submissions
    assert holds[-1] == (acme.id, False)
    assert (acme.id, "*") not in await store.paused_queues()
    # The outcomes that paused it are not judged again: fresh minimum volume first.
    assert await rep.evaluate(now=resumed.judged_since + 1) == []
    assert rep.status(acme.id).status == "ok"
    assert await resume_tenant(store, acme) is None  # not paused any more
    assert [t for t, _ in await events(store, acme)][-1] == "tenant_resumed"


async def test_recovery_from_a_warning(store: SQLiteStore) -> None:
    acme = await store.create_tenant("acme")
    rep = Reputation(store, CFG, node_id="n1")
    rep.observe(outcomes(acme.id, delivered=19, hard=1))
    [warned] = await rep.evaluate()
    assert warned.status == WARNED
    rep.observe(outcomes(acme.id, delivered=30))  # 1 of 50: 2 %
    [ok] = await rep.evaluate()
    assert ok.status == "ok"
    assert [t for t, _ in await events(store, acme)] == [
        "reputation_warning",
        "reputation_recovered",
    ]


async def test_nodes_judging_together_write_one_change(store: SQLiteStore) -> None:
    acme = await store.create_tenant("acme")
    one = Reputation(store, CFG, node_id="n1")
    two = Reputation(store, CFG, node_id="n2")
    one.observe(outcomes(acme.id, delivered=10, hard=5))
    two.observe(outcomes(acme.id, delivered=10, hard=5))
    await one.flush()
    await two.flush()
    # Both see the same sums (the counts of both nodes), both try the same change.
    first = await one.evaluate()
    second = await two.evaluate()
    assert [s.status for s in first + second] == [PAUSED]
    assert [t for t, _ in await events(store, acme)] == ["tenant_paused"]
    _, data = (await events(store, acme))[0]
    assert (data["delivered"], data["bounced"]) == (20, 10)


async def test_operator_pause_and_disabled_judging(store: SQLiteStore) -> None:
    acme = await store.create_tenant("acme")
    off = ReputationConfig.model_validate({"enabled": False, "min_volume": 1})
    rep = Reputation(store, off, node_id="n1")
    rep.observe(outcomes(acme.id, hard=50))
    assert await rep.evaluate() == []
    assert await store.reputation_totals(since=0.0) == []  # nothing counted

    paused = await pause_tenant(store, acme, reason="abuse report\nfrom a provider")
    assert paused is not None and paused.changed_by == "operator"
    assert await pause_tenant(store, acme) is None
    await rep.evaluate()  # picks up the pause made elsewhere
    with pytest.raises(SendingPaused, match="abuse report from a provider"):
        await rep.check(acme.id)
    assert [t for t, _ in await events(store, acme)] == ["tenant_paused"]


async def test_counts_survive_a_failed_flush(store: SQLiteStore) -> None:
    acme = await store.create_tenant("acme")
    rep = Reputation(store, CFG, node_id="n1")
    rep.observe(outcomes(acme.id, delivered=4))
    await store.close()
    with pytest.raises(Exception, match="closed"):
        await rep.flush()
    await store.open()
    rep.observe(outcomes(acme.id, delivered=1))
    await rep.flush()
    [t] = await store.reputation_totals(since=0.0)
    assert t.delivered == 5
