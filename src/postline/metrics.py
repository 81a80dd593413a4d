"""Prometheus metrics of one node (one registry per node, so tests can run several).

A node with several worker processes answers ``/metrics`` from whichever worker took the
request: it adds the other workers' figures (``Metrics.peers``) to its own with
:func:`merge_expositions` — counters, histograms and per-process gauges summed, figures
every worker reads from the shared store or throttle (queue depths, recipients by state,
reputation, warm-up) taken once, ``postline_ready`` the lowest (0 while any worker is not
ready).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

__all__ = [
    "LOWEST",
    "NODE_WIDE",
    "Metrics",
    "RetentionFigures",
    "StoreFigures",
    "WebhookFigures",
    "merge_expositions",
]

TOP_DOMAINS = 50


class _QueueCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "postline_queue_depth",
            "Queued recipients per domain (top 50 by depth, read at most every 10 s; the rest "
            "as 'other').",
            labels=["domain"],
        )
        top = self._m.queue_top
        for domain, n in top:
            depth.add_metric([domain], n)
        other = self._m.queue_total - sum(n for _, n in top)
        if other > 0:
            depth.add_metric(["other"], other)
        yield depth
        age = GaugeMetricFamily(
            "postline_queue_oldest_seconds",
            "Age of the oldest recipient still queued, per domain of postline_queue_depth's "
            "top 50 (read with it).",
            labels=["domain"],
        )
        now = time.time()
        for domain, at in sorted(self._m.queue_oldest.items()):
            age.add_metric([domain], max(0.0, now - at))
        yield age
        yield GaugeMetricFamily(
            "postline_leased_recipients",
            "Recipients this node holds: leased, and not yet recorded (bounded by [queue] "
            "max_leased).",
            value=self._m.leased,
        )
        yield GaugeMetricFamily(
            "postline_outcomes_pending",
            "Delivery outcomes waiting to be written to the store (what a crash now would "
            "send again, with the transactions on the wire).",
            value=self._m.outcomes_pending,
        )
        states = GaugeMetricFamily(
            "postline_recipients", "Recipients in the store by state.", labels=["state"]
        )
        for state, n in sorted(self._m.state_counts.items()):
            states.add_metric([state], n)
        yield states


class _SourcesCollector(Collector):
    """Egress sources from the engine's last ``sources_state()`` (see ``Metrics.sources``)."""

    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[GaugeMetricFamily]:
        sources = self._m.sources
        if not sources:
            return
        day = GaugeMetricFamily(
            "postline_warmup_day",
            "Day of its warm-up plan a warming source is on (0: the plan starts later).",
            labels=["source", "schedule"],
        )
        sent = GaugeMetricFamily(
            "postline_warmup_sent",
            "Recipients a warming source sent to a destination in the current UTC day or "
            "hour (fleet-wide with Redis); destinations this node sent to.",
            labels=["source", "provider", "window"],
        )
        cap = GaugeMetricFamily(
            "postline_warmup_cap",
            "The warm-up cap of that day or hour.",
            labels=["source", "provider", "window"],
        )
        blocked = GaugeMetricFamily(
            "postline_source_blocked_seconds",
            "Seconds left before a destination that blocked a source gets mail from it again.",
            labels=["source", "provider"],
        )
        for src in sources:
            name = str(src["name"])
            warmup = src.get("warmup")
            if warmup and not warmup["warmed"]:
                day.add_metric([name, str(warmup["schedule"])], max(0, int(warmup["day"])))
                for p in warmup["providers"]:
                    prov = str(p["provider"])
                    sent.add_metric([name, prov, "day"], p["sent_today"])
                    sent.add_metric([name, prov, "hour"], p["sent_this_hour"])
                    if p["day_cap"] is not None:
                        cap.add_metric([name, prov, "day"], p["day_cap"])
                    if p["hour_cap"] is not None:
                        cap.add_metric([name, prov, "hour"], p["hour_cap"])
            for b in src.get("blocked", ()):
                blocked.add_metric([name, str(b["provider"])], b["for_seconds"])
        yield from (day, sent, cap, blocked)


class WebhookFigures(Protocol):
    """What the webhook dispatcher counts (``postline.webhooks.dispatch.Dispatcher``)."""

    @property
    def lag(self) -> Mapping[str, float]: ...

    @property
    def deliveries(self) -> Mapping[str, int]: ...

    @property
    def events_sent(self) -> int: ...


class RetentionFigures(Protocol):
    """What the cleaner counts (``postline.retention.Cleaner``)."""

    @property
    def deleted(self) -> Mapping[str, int]: ...

    @property
    def freed(self) -> int: ...


def _counter(
    name: str, doc: str, label: str, keys: Iterable[str], counts: Mapping[str, int]
) -> CounterMetricFamily:
    """A counter with one sample per key (0 for keys not counted yet)."""
    family = CounterMetricFamily(name, doc, labels=[label])
    for key in keys:
        family.add_metric([key], counts.get(key, 0))
    return family


class StoreFigures(Protocol):
    """What the store's health counts (``postline.store.health.StoreHealth``)."""

    @property
    def errors(self) -> Mapping[str, int]: ...


class _HealthCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        store = self._m.store
        if store is not None:
            errors = store.errors
            yield _counter(
                "postline_store_errors",
                "Store operations that failed because the store could not be reached or "
                "could not take writes (database down, disk full, locked), by operation.",
                "op",
                list(errors),
                errors,
            )
        ready = self._m.ready
        if ready is not None:
            yield GaugeMetricFamily(
                "postline_ready",
                "1 while the node can accept mail (/readyz answers 200), else 0; a node of "
                "several workers shows the lowest.",
                value=1 if ready() else 0,
            )


class _RetentionCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[CounterMetricFamily]:
        figures = self._m.retention
        if figures is None:
            return
        yield _counter(
            "postline_retention_deleted",
            "Rows deleted by this node's cleaner past [retention] (bodies: bodies emptied; "
            "events: PostgreSQL counts a dropped partition by its row estimate).",
            "kind",
            ("bodies", "messages", "events", "inbound"),
            figures.deleted,
        )
        yield CounterMetricFamily(
            "postline_retention_freed_bytes",
            "Bytes the cleaner handed back to the file system (SQLite incremental vacuum).",
            value=figures.freed,
        )


class _WebhookCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self._m = metrics

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        figures = self._m.webhooks
        if figures is None:
            return
        lag = GaugeMetricFamily(
            "postline_webhook_lag_seconds",
            "Per endpoint this node serves: age of the oldest event not yet delivered "
            "(absent when caught up).",
            labels=["webhook"],
        )
        for hook_id, seconds in sorted(figures.lag.items()):
            lag.add_metric([hook_id], seconds)
        yield lag
        yield _counter(
            "postline_webhook_batches",
            "Webhook batches POSTed by this node, by outcome (ok, failed: to be retried, "
            "dead: given up after [webhooks] max_age, disabled: answered 410 Gone).",
            "outcome",
            ("ok", "failed", "dead", "disabled"),
            figures.deliveries,
        )
        yield CounterMetricFamily(
            "postline_webhook_events",
            "Events delivered to webhook endpoints (answered 2xx) by this node.",
            value=figures.events_sent,
        )


NODE_WIDE = frozenset(
    {
        "postline_queue_depth",
        "postline_queue_oldest_seconds",
        "postline_recipients",
        "postline_reputation_bounce_rate",
        "postline_reputation_complaint_rate",
        "postline_tenant_paused",
        "postline_reputation_threshold",
        "postline_warmup_day",
        "postline_warmup_sent",
        "postline_warmup_cap",
        "postline_source_blocked_seconds",
    }
)
"""Families every worker reads from what the node shares: one worker's figure is the
node's (the others' are not added)."""

LOWEST = frozenset({"postline_ready"})
"""Families whose node figure is the lowest of the workers' (not their sum)."""


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _render(families: list[Metric]) -> bytes:
    """Families in the text exposition format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    return generate_latest(registry)


def counters_only(text: bytes) -> bytes:
    """An exposition's counters and histograms alone (what a worker's last answer may
    still stand for when it does not answer in time: they only grow; its gauges are
    dropped, since they may no longer be true)."""
    kept = [
        f
        for f in text_string_to_metric_families(text.decode())
        if f.type in ("counter", "histogram", "summary")
    ]
    return _render(kept)


def merge_expositions(own: bytes, others: Iterable[bytes]) -> bytes:
    """One worker's exposition (text format) with the other workers' figures added."""
    families = list(text_string_to_metric_families(own.decode()))
    by_name = {f.name: f for f in families}
    for text in others:
        for family in text_string_to_metric_families(text.decode()):
            mine = by_name.get(family.name)
            if mine is None:
                if family.name not in NODE_WIDE:
                    by_name[family.name] = family
                    families.append(family)
                continue
            if family.name in NODE_WIDE:
                continue
            index = {
                (s.name, tuple(sorted(s.labels.items()))): i for i, s in enumerate(mine.samples)
            }
            for sample in family.samples:
                at = index.get((sample.name, tuple(sorted(sample.labels.items()))))
                if at is None:
                    mine.samples.append(sample)
                    continue
                old = mine.samples[at]
                # Creation times and LOWEST: the smallest; everything else adds up.
                value = (
                    min(old.value, sample.value)
                    if sample.name.endswith("_created") or family.name in LOWEST
                    else old.value + sample.value
                )
                mine.samples[at] = old._replace(value=value)
    return _render(families)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.ingested_messages = Counter(
            "postline_ingested_messages", "Messages accepted.", ["source"], registry=r
        )
        self.ingested_recipients = Counter(
            "postline_ingested_recipients", "Recipients accepted.", ["source"], registry=r
        )
        self.attempts = Counter(
            "postline_delivery_attempts",
            "Recipient outcomes by result (delivered, deferred, bounced, expired).",
            ["result"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "postline_attempt_seconds",
            "Duration of one SMTP transaction (MAIL FROM to the reply after the dot).",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=r,
        )
        self.connections = Gauge(
            "postline_outbound_connections", "Open outbound SMTP connections.", registry=r
        )
        self.sqlite_memory = Gauge(
            "postline_sqlite_memory_bytes",
            "Memory SQLite holds in the node's processes (the store, and the shared "
            "throttle file of a node of several workers): page caches, bounded by each "
            "connection's cache size, statements and schema.",
            registry=r,
        )
        self.throttle_events = Counter(
            "postline_throttle_replies",
            "Throttling replies received, by destination.",
            ["destination"],
            registry=r,
        )
        self.inbound = Counter(
            "postline_inbound_recipients",
            "Inbound server recipients, accepted or refused.",
            ["result"],
            registry=r,
        )
        self.store_refusals = Counter(
            "postline_store_refused_writes",
            "Messages the store could not take (disk full, database down): the request was "
            "refused (HTTP 503 / SMTP 451) and nothing was stored.",
            registry=r,
        )
        self.limit_refusals = Counter(
            "postline_limit_refusals",
            "Submissions refused by a tenant's or an API key's rate limit (kind 'rate': HTTP "
            "429, SMTP 452 4.7.1) or a tenant's quota ('daily', 'monthly': HTTP 403, SMTP "
            "452 4.7.1 / 554 5.7.0), by channel (api, smtp); nothing of them was stored.",
            ["kind", "channel"],
            registry=r,
        )
        for kind in ("rate", "daily", "monthly"):
            for channel in ("api", "smtp"):
                self.limit_refusals.labels(kind, channel)
        self.feedback = Counter(
            "postline_feedback_reports",
            "Processed inbound reports by kind (dsn, arf, autoreply, unsubscribe, other) and "
            "outcome.",
            ["kind", "outcome"],
            registry=r,
        )
        self.suppressions = Counter(
            "postline_suppressions_added",
            "Addresses put on suppression lists, by reason.",
            ["reason"],
            registry=r,
        )
        self.reputation_bounce_rate = Gauge(
            "postline_reputation_bounce_rate",
            "Hard bounces / (delivered + hard bounces) of a tenant over the reputation window.",
            ["tenant"],
            registry=r,
        )
        self.reputation_complaint_rate = Gauge(
            "postline_reputation_complaint_rate",
            "Complaints / delivered of a tenant over the reputation window.",
            ["tenant"],
            registry=r,
        )
        self.tenant_paused = Gauge(
            "postline_tenant_paused",
            "1 while a tenant's sending is paused (reputation or operator), else 0.",
            ["tenant"],
            registry=r,
        )
        self.reputation_threshold = Gauge(
            "postline_reputation_threshold",
            "The node's reputation thresholds ([reputation] bounce_warn, bounce_pause, "
            "complaint_warn, complaint_pause), for alerts that compare the rates with them.",
            ["rate", "action"],
            registry=r,
        )
        # Queued recipients in all and in the deepest domains (refreshed before a scrape).
        self.queue_total = 0
        self.queue_top: list[tuple[str, int]] = []
        self.queue_oldest: dict[str, float] = {}
        self.leased = 0
        self.outcomes_pending = 0
        self.state_counts: dict[str, int] = {}
        r.register(_QueueCollector(self))
        # The delivery engine's sources_state(), refreshed before each scrape.
        self.sources: list[dict[str, Any]] = []
        r.register(_SourcesCollector(self))
        self.webhooks: WebhookFigures | None = None
        r.register(_WebhookCollector(self))
        self.retention: RetentionFigures | None = None
        r.register(_RetentionCollector(self))
        # The store's health (errors by operation) and whether the node is ready.
        self.store: StoreFigures | None = None
        self.ready: Callable[[], bool] | None = None
        r.register(_HealthCollector(self))
        self._refresh: Callable[[], Awaitable[None]] | None = None
        # The other workers' expositions (a node of several worker processes).
        self.peers: Callable[[], Awaitable[list[bytes]]] | None = None

    def on_refresh(self, refresh: Callable[[], Awaitable[None]]) -> None:
        self._refresh = refresh

    async def render_own(self) -> bytes:
        """This process's figures only."""
        if self._refresh is not None:
            await self._refresh()
        return generate_latest(self.registry)

    async def render(self) -> bytes:
        """The node's figures: this process's, with the other workers' added."""
        own = await self.render_own()
        if self.peers is None:
            return own
        return merge_expositions(own, await self.peers())
