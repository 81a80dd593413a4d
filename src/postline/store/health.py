"""Whether the store answers, as this process sees it, and what its failures cost.

Every caller that meets :class:`~postline.errors.StoreUnavailable` reports it: the
operation that failed (:meth:`StoreHealth.failed`, one of :data:`OPS`), and on the accept
path what was refused because of it (:meth:`StoreHealth.refused`: an SMTP command answered
``451``/``454``, an API request answered 503). The first failure marks the store *down*:
/readyz answers 503 with the error, and a probe (the store's ``ping``, one cheap round
trip) runs every ``probe_every`` seconds until it succeeds. A write that succeeds
(:meth:`StoreHealth.ok`, a check of one attribute) marks the store up at once. A store
that fails again within ``relapse_hold`` seconds of a probe saying it was back (reads
work, writes do not: a full disk) is only taken back after ``relapse_hold`` seconds
without a failure, so that a node does not flap between ready and refusing.

Nothing is logged per failure: one WARNING when the store goes down, one every
``report_every`` seconds while it stays down with the counts of refusals and failed
operations, and one when it is back with the rest of the counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final, Literal, get_args

from postline.errors import StoreError
from postline.model.times import iso

__all__ = ["CHANNELS", "OPS", "Channel", "Op", "StoreHealth"]

log = logging.getLogger(__name__)

Op = Literal[
    "keys",
    "idempotency",
    "suppressions",
    "tenants",
    "enqueue",
    "lease",
    "record",
    "renew",
    "release",
    "scan",
    "listen",
    "metrics",
    "webhooks",
    "feedback",
    "reputation",
    "maintenance",
    "other",
]
OPS: Final[tuple[Op, ...]] = get_args(Op)
"""The store operations failures are counted by (``postline_store_errors_total{op}``):
the accept path (API key lookup, idempotency key, suppression list, tenant status, the
enqueue itself), delivery (leasing, recording outcomes, renewing and handing back leases,
scanning the queues, the LISTEN connection of PostgreSQL), and the rest (metrics reads,
webhooks, feedback, reputation, maintenance: retention, housekeeping, domain checks)."""

Channel = Literal["smtp", "api"]
CHANNELS: Final[dict[Channel, str]] = {"smtp": "SMTP commands", "api": "API requests"}
"""What a refusal was, as the log counts it."""


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in sorted(counts.items(), key=lambda i: -i[1]))


class StoreHealth:
    """The store's state for /readyz, metrics and the log (see the module)."""

    def __init__(
        self,
        probe: Callable[[], Awaitable[object]],
        *,
        probe_every: float = 0.5,
        probe_timeout: float = 2.0,
        report_every: float = 10.0,
        relapse_hold: float = 10.0,
    ) -> None:
        self._probe = probe
        self.probe_every = probe_every
        self.probe_timeout = probe_timeout
        self.report_every = report_every
        self.relapse_hold = relapse_hold
        self.errors: dict[str, int] = dict.fromkeys(OPS, 0)
        """Failed operations by name, since the start (for metrics)."""
        self.down_since: float | None = None
        """When the store went down (wall clock), or None while it answers."""
        self.error = ""
        """The last error seen (of an operation or of the probe)."""
        self._failed: dict[str, int] = {}  # since the last report
        self._refused: dict[Channel, int] = {}
        self._failed_at = 0.0  # monotonic
        self._reported_at = 0.0
        self._up_by_probe_at: float | None = None
        self._quiet = 0.0  # seconds without a failure a probe needs to take the store back
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self.down_since is None

    def reason(self) -> dict[str, str] | None:
        """Why the node cannot accept mail (for /readyz), or None while the store answers."""
        since = self.down_since
        if since is None:
            return None
        return {"component": "store", "detail": self.error, "since": iso(since)}

    def failed(self, op: Op, exc: BaseException) -> None:
        """``op`` failed with ``exc`` (a :class:`StoreUnavailable`): counted, and the store
        is down until a probe or a write succeeds."""
        self.errors[op] = self.errors.get(op, 0) + 1
        self._failed[op] = self._failed.get(op, 0) + 1
        if isinstance(exc, StoreError) and exc.op is None:
            exc.op = op
        self.error = str(exc)
        now = time.monotonic()
        self._failed_at = now
        if self.down_since is not None:
            return
        back = self._up_by_probe_at
        if back is not None and now - back < self.relapse_hold:
            self._quiet = self.relapse_hold
        self.down_since = time.time()
        self._reported_at = now
        log.warning(
            "store unavailable (%s failed): %s; refusing mail (HTTP 503, SMTP 451) until it "
            "answers again",
            op,
            exc,
            extra={"action": "store.unavailable", "op": op},
        )
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to probe with
            if self._task is None or self._task.done():
                self._task = asyncio.get_running_loop().create_task(
                    self._watch(), name="postline-store-health"
                )

    def refused(self, channel: Channel, exc: BaseException) -> None:
        """A client was refused because of ``exc``; an error no operation reported yet
        counts as ``other``."""
        self._refused[channel] = self._refused.get(channel, 0) + 1
        if not isinstance(exc, StoreError) or exc.op is None:
            self.failed("other", exc)

    def ok(self) -> None:
        """A write succeeded: the store answers."""
        if self.down_since is not None:
            self._up(by_probe=False)

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _fields(self) -> dict[str, object]:
        failed = " ".join(f"{op}={n}" for op, n in sorted(self._failed.items()))
        return {
            "refused_smtp": self._refused.get("smtp", 0),
            "refused_api": self._refused.get("api", 0),
            "failed_ops": failed,
        }

    def _summary(self) -> str:
        refused = " and ".join(f"{n:,} {CHANNELS[c]}" for c, n in sorted(self._refused.items()))
        parts = [f"refused {refused}" if refused else "refused nothing"]
        if self._failed:
            parts.append(f"failed operations: {_counts(self._failed)}")
        return "; ".join(parts)

    def _reset(self) -> None:
        self._failed.clear()
        self._refused.clear()

    def _report(self, now: float) -> None:
        log.warning(
            "store unavailable for %.0f s: %s in the last %.0f s: %s",
            time.time() - (self.down_since or time.time()),
            self._summary(),
            now - self._reported_at,
            self.error,
            extra={"action": "store.still_unavailable", **self._fields()},
        )
        self._reset()
        self._reported_at = now

    def _up(self, *, by_probe: bool) -> None:
        since = self.down_since or time.time()
        self.down_since = None
        log.warning(
            "store available again after %.1f s (%s); %s since the last report",
            time.time() - since,
            "a probe answered" if by_probe else "a write succeeded",
            self._summary(),
            extra={"action": "store.available", **self._fields()},
        )
        self._reset()
        self._up_by_probe_at = time.monotonic() if by_probe else None
        if not by_probe:
            self._quiet = 0.0

    async def _watch(self) -> None:
        """While the store is down: probe it, and report the counts now and then."""
        while True:
            await asyncio.sleep(self.probe_every)
            if self.down_since is None:
                return
            now = time.monotonic()
            if now - self._reported_at >= self.report_every:
                self._report(now)
            if now - self._failed_at < self._quiet:
                continue
            started = now
            try:
                await asyncio.wait_for(self._probe(), self.probe_timeout)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.error = str(exc) or type(exc).__name__
                continue
            if self.down_since is not None and self._failed_at < started:
                self._up(by_probe=True)
