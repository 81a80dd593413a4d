"""Due announcements between the processes that share one store.

A store that takes mail tells the other processes on it which queues have work — now, or
at a later time — so their delivery engines need not wait for a scan. PostgreSQL carries
the announcements on LISTEN/NOTIFY (``postgres/core.py``), SQLite on datagrams between
the processes that have the file open (``sqlite/peers.py``); both use the payloads and
the receiving side written here:

* :func:`due_payloads` — JSON texts of at most ``limit`` bytes,
  ``{"o": origin, "now": [[tenant, domain], ...], "at": [[tenant, domain, time], ...]}``,
  and ``{"o": origin, "rescan": true}`` asking every process to scan its queues;
* :class:`DueRelay` — parses them, hands queues due now to a callback at once and arms a
  timer for each queue due later; announcements of its own origin are skipped.

Announcements are hints: a lost one only delays work until the next scan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping, Sequence

from postline.store.base import NewMessage, QueueKey

__all__ = ["DueCallback", "DueRelay", "PendingDue", "due_of", "due_payloads"]

log = logging.getLogger(__name__)

DueCallback = Callable[[frozenset[QueueKey]], None]
"""Called with queues that may have due work; an empty set means "rescan every queue"."""


def due_of(
    messages: Sequence[NewMessage], leased: Mapping[str, Collection[int]] | None
) -> tuple[set[QueueKey], dict[QueueKey, float]]:
    """What an enqueue of ``messages`` announces: the queues with mail due now, and the
    others with the earliest time their new mail falls due. Recipients ``leased`` to the
    enqueuing process (message id -> recipient indexes) and suppressed ones are not."""
    now: set[QueueKey] = set()
    later: dict[QueueKey, float] = {}
    wall = time.time()
    for m in messages:
        direct = leased.get(m.id, ()) if leased else ()
        at = m.next_attempt_at
        for r in m.recipients:
            if r.suppressed is not None or r.idx in direct:
                continue
            key = (m.tenant_id, r.domain)
            if at <= wall:
                now.add(key)
            elif at < later.get(key, float("inf")):
                later[key] = at
    return now, later


def due_payloads(
    origin: str,
    now: Collection[QueueKey],
    later: Mapping[QueueKey, float],
    rescan: bool = False,
    *,
    limit: int = 7000,
) -> list[str]:
    """The announcements of ``now`` and ``later`` in texts of at most ``limit`` bytes."""
    payloads: list[str] = []
    cur_now: list[list[str]] = []
    cur_at: list[list[object]] = []
    size = 0
    base = len(json.dumps({"o": origin, "now": [], "at": []}))

    def flush() -> None:
        nonlocal cur_now, cur_at, size
        if cur_now or cur_at:
            payloads.append(json.dumps({"o": origin, "now": cur_now, "at": cur_at}))
        cur_now, cur_at, size = [], [], 0

    if rescan:
        payloads.append(json.dumps({"o": origin, "rescan": True}))
    for tenant, domain in sorted(now):
        n = len(tenant) + len(domain) + 10
        if base + size + n > limit:
            flush()
        cur_now.append([tenant, domain])
        size += n
    for (tenant, domain), at in sorted(later.items()):
        n = len(tenant) + len(domain) + 36
        if base + size + n > limit:
            flush()
        cur_at.append([tenant, domain, at])
        size += n
    flush()
    return payloads


class PendingDue:
    """Announcements waiting to be sent: what piles up between two sends goes together
    (each queue once, at its earliest time)."""

    __slots__ = ("at", "now", "rescan")

    def __init__(self) -> None:
        self.now: set[QueueKey] = set()
        self.at: dict[QueueKey, float] = {}
        self.rescan = False

    def __bool__(self) -> bool:
        return bool(self.now or self.at or self.rescan)

    def add(
        self, now: Collection[QueueKey], later: Mapping[QueueKey, float], rescan: bool = False
    ) -> None:
        self.now.update(now)
        self.rescan = self.rescan or rescan
        for key, at in later.items():
            if at < self.at.get(key, float("inf")):
                self.at[key] = at

    def payloads(self, origin: str, *, limit: int) -> list[str]:
        """Everything waiting, as :func:`due_payloads`; nothing waits afterwards."""
        out = due_payloads(origin, self.now, self.at, self.rescan, limit=limit)
        self.now, self.at, self.rescan = set(), {}, False
        return out


class DueRelay:
    """The receiving side: payloads in, ``callback`` calls out (now, or at their time)."""

    def __init__(self, origin: str, callback: DueCallback, *, include_own: bool = False) -> None:
        self.origin = origin
        self.callback = callback
        self.include_own = include_own
        self.timers: dict[QueueKey, asyncio.TimerHandle] = {}

    def received(self, payload: str) -> None:
        """Handle one announcement (a bad one is logged and dropped)."""
        try:
            data = json.loads(payload)
            if not self.include_own and data.get("o") == self.origin:
                return
            entries = list(data.get("now", ())) + [e[:2] for e in data.get("at", ())]
            if data.get("rescan") or any(not isinstance(e, list) for e in entries):
                # A rescan, or a node of an older version naming domains only.
                self.deliver(frozenset())
                return
            now_queues = frozenset((str(t), str(d)) for t, d in data.get("now", ()))
            later = {(str(t), str(d)): float(at) for t, d, at in data.get("at", ())}
        except (ValueError, TypeError, AttributeError):
            log.warning("bad due notification %r", payload, extra={"action": "store.notify_bad"})
            return
        if now_queues:
            self.deliver(now_queues)
        if later:
            self._schedule(later)

    def deliver(self, queues: frozenset[QueueKey]) -> None:
        try:
            self.callback(queues)
        except Exception:
            log.exception("due callback failed", extra={"action": "store.listen_callback"})

    def _schedule(self, later: Mapping[QueueKey, float]) -> None:
        loop = asyncio.get_running_loop()
        wall = time.time()
        mono = loop.time()
        due_now = set()
        for key, at in later.items():
            if at <= wall:
                due_now.add(key)
                continue
            when = mono + (at - wall)
            timer = self.timers.get(key)
            if timer is not None and not timer.cancelled() and timer.when() <= when:
                continue
            if timer is not None:
                timer.cancel()
            self.timers[key] = loop.call_at(when, self._fire, key)
        if due_now:
            self.deliver(frozenset(due_now))

    def _fire(self, key: QueueKey) -> None:
        self.timers.pop(key, None)
        self.deliver(frozenset({key}))

    def close(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()
