"""The entry of due queues: now, later, and only this worker's share of the domains."""

from __future__ import annotations

import time

from postline.deliver.due import DueQueues
from postline.schedule.admission import Admission
from postline.schedule.shares import WorkerShare
from postline.store.base import QueueKey, QueueStore


def _due(share: WorkerShare) -> tuple[DueQueues, list[QueueKey]]:
    entered: list[QueueKey] = []
    store: QueueStore = None  # type: ignore[assignment]  # no scan runs here
    due = DueQueues(store, "node-1", 60.0, Admission(), share, entered.append, lambda: None)
    return due, entered


def test_a_queue_due_now_goes_on_and_one_due_later_waits_in_the_timers() -> None:
    due, entered = _due(WorkerShare())
    due.enter(("t", "now.test"), 0.0)
    later = time.time() + 3600
    due.enter(("t", "later.test"), later)
    assert entered == [("t", "now.test")]
    assert ("t", "later.test") in due.wakeups
    due.announced(frozenset({("t", "later.test")}))  # due now after all
    assert entered[-1] == ("t", "later.test") and ("t", "later.test") not in due.wakeups


def test_only_the_queues_of_this_workers_share_enter() -> None:
    share = WorkerShare(0, 2)
    domains = [f"d{i}.test" for i in range(20)]
    mine = {d for d in domains if share.owns(d)}
    assert mine and len(mine) < len(domains)
    due, entered = _due(share)
    due.notify(("t", d) for d in domains)
    for d in domains:
        due.enter(("u", d), time.time() + 60)
    assert {k[1] for k in entered} == mine
    assert {d for d in domains if ("u", d) in due.wakeups} == mine


def test_nothing_enters_once_stopping() -> None:
    due, entered = _due(WorkerShare())
    due.stopping = True
    due.enter(("t", "x.test"), 0.0)
    assert entered == []
