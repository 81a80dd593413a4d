"""Paths: the egress sources of a pool towards one destination.

A domain's route is a :class:`Target` (hosts, throttle rule) and every source gets its
own :class:`~postline.deliver.site.Site` towards it on demand, with its own throttle
bucket: receivers judge and limit each sending IP apart, so each source gets the
destination's connection and rate limits. The sites of every source towards one
destination and MX site are one lane of admission, a :class:`SourceLane`. A
configuration without ``[[delivery.sources]]`` is a pool of one implicit source and goes
the same way (see :attr:`Source.implicit <postline.deliver.egress.Source.implicit>` for
what differs: bucket keys without a source name, no blocks, nowhere else to go).

:class:`SourcePaths` places a domain's leased mail (:meth:`SourcePaths.place`) and gives
each work item a source:

1. the message's pool (:meth:`Egress.pool_for <postline.deliver.egress.Egress.pool_for>`:
   dedicated tenant pool, else by stream);
2. among the pool's sources, the usable ones — not barred (MX unreachable from it, throttle
   bucket suspended), not blocked by that destination, not at a warm-up cap whose
   overflow goes elsewhere, not the one a recipient was just blocked from — preferring
   those whose site has room, drawn by weight;
3. a warming source counts the recipients against its caps (day and hour, through the
   throttle backend, so a fleet on Redis shares one count); what does not fit goes to
   the pool's other sources (``overflow = "warmed"``) or waits for the next window
   (``"wait"``), deferred without counting an attempt. Nothing is dropped.

Provider blocks: a reply of bounce category ``spam_block`` (blocklist, IP reputation)
is a strike against (source, destination), counted in the throttle backend with the
``[delivery.blocks]`` window; ``suspend_after`` strikes stop that path for
``suspend_for``: its buffered work goes back to the queue and is given to the pool's
other sources. A recipient refused that way is deferred, not bounced, when its pool has
another source not blocked there, and its retry avoids the source that was refused.

Placing is synchronous; only what must wait for the throttle backend (a warming source's
caps) or the store (tenant names, for pools dedicated by name) goes on in a task.

The paths reach the engine only through :class:`~postline.deliver.port.EnginePort`;
their sites come from the engine's :class:`~postline.deliver.site.Sites`, and the
engine gives them the targets of its :class:`~postline.deliver.routing.Routes`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from postline.deliver.egress import Egress, Pool, Source, pick
from postline.deliver.outcome import deferred_records
from postline.deliver.port import EnginePort, SiteRef
from postline.deliver.routing import Target
from postline.deliver.site import Site, Sites
from postline.deliver.warmup import Caps, windows
from postline.deliver.work import WorkItem
from postline.errors import ThrottleError
from postline.model import Reply
from postline.store.base import LeasedMessage, LeasedRecipient, TenantStore
from postline.throttle.adaptive import AdaptiveParams
from postline.throttle.base import QuotaWindow
from postline.throttle.keys import block_key, quota_group
from postline.throttle.rules import ThrottleRules

__all__ = ["SourceLane", "SourcePaths"]

log = logging.getLogger(__name__)

# Counters outlive their window by this much (clocks of a fleet differ a little).
_WINDOW_SLACK = 120.0
_MAX_AVOID = 100_000
_TOP_PROVIDERS = 50


@dataclass(slots=True)
class _Waiting:
    item: WorkItem
    until: float
    reason: str
    source: Source | None


class SourceLane:
    """The admission lane of the domains that share one destination and MX site: the
    sites of every source of the pools towards it (see
    :mod:`postline.schedule.admission`)."""

    __slots__ = ("lane_key", "paths", "reserved", "target")

    def __init__(self, paths: SourcePaths, target: Target) -> None:
        self.paths = paths
        self.lane_key = target.lane_key
        self.target = target
        """A target of the lane (all of them share its sites)."""
        self.reserved = 0

    def room(self) -> int:
        """The room of the sites of the sources (:meth:`Site.room
        <postline.deliver.site.Site.room>`: none while a site is barred), less what direct
        hand-offs claimed there."""
        paths = self.paths
        target = self.target
        room = 0
        for source in paths.egress.used:
            site = paths.site_for(target, source)
            free = site.room() - site.reserved
            if free > 0:
                room += free
        return room


class SourcePaths:
    """Source choice, warm-up caps and provider blocks for one engine (see module)."""

    def __init__(
        self,
        port: EnginePort,
        egress: Egress,
        *,
        sites: Sites,
        rules: ThrottleRules,
        tenants: TenantStore,
        rng: random.Random,
        block_params: AdaptiveParams,
    ) -> None:
        self.port = port
        self.egress = egress
        self.sites = sites
        self.rules = rules
        self.tenants = tenants
        self.rng = rng
        self.block_params = block_params
        # (source, provider) -> epoch seconds until which the path is blocked / capped
        self.blocked: dict[tuple[str, str], float] = {}
        self.capped: dict[tuple[str, str], float] = {}
        # recipient -> the source that was just refused for it
        self.avoid: dict[tuple[str, int], str] = {}
        self.tenant_names: dict[str, str] = {}
        # source -> provider -> throttle rule, for the warm-up counters touched today
        self._warm_seen: dict[str, dict[str, str]] = {}
        self._warm_day = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        # The calendar of warm-up plans (day of the plan, day and hour windows); every
        # other time is the system's. Tests move it to an hour's end.
        self.clock: Callable[[], float] = time.time

    # -- sites -----------------------------------------------------------------------
    def site_for(self, target: Target, source: Source) -> Site:
        """``source``'s site towards ``target`` (made on demand; the implicit source's
        bucket is the destination's own, without a source name)."""
        site = target.sites.get(source.name)
        if site is None:
            if source.implicit:
                dest = target.base
            else:
                dest = self.rules.match(
                    target.domain,
                    target.mx,
                    target.site_name,
                    source=source.name,
                    relay=target.relay,
                )
            site = self.sites.site_of(dest, target.site_name, target.hosts, source, target.lane_key)
            target.sites[source.name] = site
        return site

    def barred_until(self, source: Source, target: Target, now: float) -> float:
        """When ``source`` may send to ``target`` again; 0.0 when it may now."""
        until = self.blocked.get((source.name, target.base.provider), 0.0) if self.blocked else 0.0
        site = target.sites.get(source.name)
        if site is not None:
            until = max(until, site.down_until, self.sites.suspended_until(site.bucket))
        return until if until > now else 0.0

    def is_blocked(self, site: SiteRef, now: float) -> bool:
        return self.blocked.get((site.source.name, site.destination.provider), 0.0) > now

    def _overflows(self, source: Source, provider: str, now: float) -> bool:
        """True while ``source`` is at a warm-up cap whose excess goes to other sources."""
        plan = source.plan
        return (
            plan is not None
            and plan.overflow == "warmed"
            and self.capped.get((source.name, provider), 0.0) > now
        )

    def _may_take(self, source: Source, target: Target, now: float) -> bool:
        """Whether ``source`` may take work for ``target`` now: not barred there (the
        implicit source always may: its site holds the work), not at a warm-up cap whose
        excess goes elsewhere."""
        if not source.implicit and self.barred_until(source, target, now):
            return False
        return source.plan is None or not self._overflows(source, target.base.provider, now)

    def _usable(
        self, pool: Pool, target: Target, now: float, excluded: Iterable[str] = ()
    ) -> list[Source]:
        """The sources of ``pool`` that may take work for ``target`` now (and are not
        ``excluded``)."""
        return [
            s for s in pool.sources if s.name not in excluded and self._may_take(s, target, now)
        ]

    # -- choice ----------------------------------------------------------------------
    def pool_of(self, tenant_id: str, stream: str) -> Pool:
        return self.egress.pool_for(tenant_id, stream, self.tenant_names.get(tenant_id, ""))

    def choose(
        self,
        pool: Pool,
        target: Target,
        now: float,
        *,
        excluded: Iterable[str] = (),
        avoid: str | None = None,
        room: dict[str, bool] | None = None,
    ) -> Source | None:
        usable = self._usable(pool, target, now, set(excluded) if excluded else ())
        if avoid is not None and len(usable) > 1:
            usable = [s for s in usable if s.name != avoid]
        return pick(usable, _always, self.rng, room=room)

    def pool_wake(self, pool: Pool, target: Target, now: float) -> float:
        """The earliest time one of ``pool``'s sources may send to ``target`` again."""
        provider = target.base.provider
        times = [
            max(self.barred_until(s, target, now), self.capped.get((s.name, provider), 0.0))
            for s in pool.sources
        ]
        later = [t for t in times if t > now]
        return min(later) if later else now + self.port.settings.site_retry

    # -- placing leased work ------------------------------------------------------------
    def start(self, coro: Any, name: str) -> None:
        """Run ``coro`` as a task cancelled when the engine stops."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def place(self, target: Target, items: Sequence[WorkItem]) -> None:
        """Leased work of one domain: each item to a source's site, or deferred until a
        source can take it (see module). Pools dedicated to tenants named by name first
        learn the names of tenants not seen yet, in a task."""
        if self.egress.needs_tenant_names and any(
            it.message.tenant_id not in self.tenant_names for it in items
        ):
            self.start(self._place_named(target, items), "deliver:dispatch")
            return
        now = time.time()
        calendar = self.clock()
        waiting: list[_Waiting] = []
        excluded: set[str] = set()
        capped = self._assign(target, items, now, calendar, excluded, waiting)
        if capped:
            self.start(
                self._place_capped(target, capped, now, calendar, excluded, waiting),
                "deliver:dispatch",
            )
        elif waiting:
            self._defer(target, waiting, now)

    async def _place_named(self, target: Target, items: Sequence[WorkItem]) -> None:
        await self.learn_tenants(it.message.tenant_id for it in items)
        now = time.time()
        calendar = self.clock()
        waiting: list[_Waiting] = []
        excluded: set[str] = set()
        capped = self._assign(target, items, now, calendar, excluded, waiting)
        await self._place_capped(target, capped, now, calendar, excluded, waiting)

    async def learn_tenants(self, tenant_ids: Iterable[str]) -> None:
        """Remember the names of tenants (pools may be dedicated by name)."""
        for tid in set(tenant_ids) - self.tenant_names.keys():
            try:
                tenant = await self.tenants.get_tenant(id=tid)
            except Exception:
                log.exception("tenant lookup failed", extra={"action": "deliver.tenant_lookup"})
                continue
            self.tenant_names[tid] = tenant.name if tenant is not None else ""

    def _assign(
        self,
        target: Target,
        items: Sequence[WorkItem],
        now: float,
        calendar: float,
        excluded: set[str],
        waiting: list[_Waiting],
    ) -> list[tuple[Source, Caps, Sequence[WorkItem]]]:
        """Give every item a source: the groups of sources without a warm-up cap today go
        to their sites now; those to count against a cap are returned; items no source
        can take now join ``waiting``."""
        groups = self._group(target, items, now, excluded, waiting)
        rule = target.base.rule.name
        capped: list[tuple[Source, Caps, Sequence[WorkItem]]] = []
        for source, group in groups.items():
            caps = None
            plan = source.plan
            if plan is not None:
                day = source.warmup_day(calendar)
                if day is not None:
                    caps = plan.caps(day, rule)
            if caps is None:
                self.site_for(target, source).put(group)
            else:
                capped.append((source, caps, group))
        return capped

    def _group(
        self,
        target: Target,
        items: Sequence[WorkItem],
        now: float,
        excluded: set[str],
        waiting: list[_Waiting],
    ) -> Mapping[Source, Sequence[WorkItem]]:
        """Items by the source chosen for each: drawn by weight among the usable sources
        of the item's pool, preferring sites with room and avoiding the source a
        recipient was just refused by; one usable source takes a whole pool's items."""
        usable_of: dict[str, list[Source]] = {}
        only = self.egress.only_pool
        if only is not None:
            usable_of[only.name] = self._usable(only, target, now, excluded)
            if len(usable_of[only.name]) == 1 and not self.avoid:
                return {usable_of[only.name][0]: items}
        groups: dict[Source, list[WorkItem]] = {}
        room: dict[str, bool] | None = None
        for item in items:
            pool = only or self.pool_of(item.message.tenant_id, item.message.stream)
            avoid = None
            if self.avoid:
                first = item.recipients[0]
                avoid = self.avoid.pop((first.message_id, first.idx), None)
            if pool.name not in usable_of:
                usable_of[pool.name] = self._usable(pool, target, now, excluded)
            usable = usable_of[pool.name]
            if not usable:
                waiting.append(_Waiting(item, self.pool_wake(pool, target, now), "no_source", None))
                continue
            if len(usable) == 1:
                source = usable[0]
            else:
                if room is None:
                    room = {name: site.capacity() > 0 for name, site in target.sites.items()}
                cands = usable
                if avoid is not None:
                    cands = [s for s in usable if s.name != avoid]
                chosen = pick(cands, _always, self.rng, room=room)
                assert chosen is not None
                source = chosen
            groups.setdefault(source, []).append(item)
        return groups

    async def _place_capped(
        self,
        target: Target,
        capped: list[tuple[Source, Caps, Sequence[WorkItem]]],
        now: float,
        calendar: float,
        excluded: set[str],
        waiting: list[_Waiting],
    ) -> None:
        """Count groups against their sources' warm-up caps: what fits goes to the site;
        the rest to the pool's other sources (``overflow = "warmed"``) or waits for the
        next window (``"wait"``); then what waits is deferred."""
        while capped:
            pending: list[WorkItem] = []
            for source, caps, group in capped:
                granted, rest = await self._take(source, target, caps, group, now, calendar)
                if granted:
                    self.site_for(target, source).put(granted)
                if not rest:
                    continue
                assert source.plan is not None
                if source.plan.overflow == "warmed":
                    excluded.add(source.name)
                    pending.extend(rest)
                else:
                    until = self.capped.get((source.name, target.base.provider), now + 60.0)
                    waiting.extend(_Waiting(it, until, "warmup_cap", source) for it in rest)
            capped = (
                self._assign(target, pending, now, calendar, excluded, waiting) if pending else []
            )
        if waiting:
            self._defer(target, waiting, now)

    async def _take(
        self,
        source: Source,
        target: Target,
        caps: Caps,
        group: Sequence[WorkItem],
        now: float,
        calendar: float,
    ) -> tuple[Sequence[WorkItem], Sequence[WorkItem]]:
        """Count ``group`` against ``source``'s caps: (what fits, the rest). ``now`` is
        the system's time, ``calendar`` the plan's (``clock``)."""
        provider = target.base.provider
        key = (source.name, provider)
        w = windows(calendar)
        shift = now - calendar  # window ends as system time
        if self.capped.get(key, 0.0) > now:
            return [], group
        if caps.day == 0:  # the plan starts on a later day
            self.capped[key] = w.day_ends + shift
            return [], group
        quota = [QuotaWindow(w.day, caps.day, w.day_ends - calendar + _WINDOW_SLACK)]
        if caps.hour is not None:
            quota.append(QuotaWindow(w.hour, caps.hour, w.hour_ends - calendar + _WINDOW_SLACK))
        n = sum(len(it.recipients) for it in group)
        group_key = quota_group(source.name, provider)
        throttle = self.port.throttle.backend
        try:
            granted = await throttle.take_quota(group_key, quota, n)
            full_day = False
            if granted < n:
                (used,) = await throttle.quota_used(group_key, [w.day])
                full_day = caps.hour is None or used >= caps.day
        except ThrottleError as exc:
            self.port.throttle.failed(exc)
            self.capped[key] = now + 5.0
            return [], group
        self._note_warm(source, provider, target.base.rule.name, w.day)
        if granted < n:
            self.capped[key] = (w.day_ends if full_day else w.hour_ends) + shift
            log.info(
                "source %s reached its warm-up cap for %s (day %d: %d/day%s)",
                source.name,
                provider,
                source.warmup_day(calendar) or 0,
                caps.day,
                f", {caps.hour}/hour" if caps.hour is not None else "",
                extra={"action": "deliver.warmup_capped"},
            )
        return _split(group, granted)

    def _note_warm(self, source: Source, provider: str, rule: str, day: str) -> None:
        if day != self._warm_day:
            self._warm_day = day
            self._warm_seen = {}
            now = time.time()
            for stale in [k for k, until in self.capped.items() if until <= now]:
                del self.capped[stale]
        self._warm_seen.setdefault(source.name, {})[provider] = rule

    def _defer(self, target: Target, waiting: Sequence[_Waiting], now: float) -> None:
        """Back to the queue until a source can take it, without counting an attempt."""
        node_id = self.port.settings.node_id
        records = []
        for w in waiting:
            if w.source is not None:
                when = datetime.fromtimestamp(w.until, UTC).strftime("%H:%M UTC")
                text = (
                    f"source {w.source.name} is at its warm-up cap for "
                    f"{target.base.provider}; deferred until {when}"
                )
                data: dict[str, object] = {"reason": w.reason, "source": w.source.name}
            else:
                text = f"no source of the pool can send to {target.base.provider} now"
                data = {"reason": w.reason}
            reply = Reply(451, text, "4.7.0", "EGRESS", True)
            until = max(w.until, now + 1.0)
            records.extend(
                deferred_records(w.item, reply, now=now, until=until, data=data, owner=node_id)
            )
        self.port.record(records)

    # -- direct hand-off -------------------------------------------------------------
    def claim_site(self, target: Target, tenant_id: str, stream: str, now: float) -> Site | None:
        """A site for a recipient handed over by ingest, or None to let it go through
        the queue (a warming source counts its caps there)."""
        if self.egress.needs_tenant_names and tenant_id not in self.tenant_names:
            return None
        pool = self.pool_of(tenant_id, stream)
        if len(pool.sources) == 1:
            (only,) = pool.sources
            source = only if self._may_take(only, target, now) else None
        else:
            room = {n: s.capacity() - s.reserved > 0 for n, s in target.sites.items()}
            source = self.choose(pool, target, now, room=room)
        if source is None:
            return None
        plan = source.plan
        if plan is not None:
            day = source.warmup_day(self.clock())
            if day is not None and plan.caps(day, target.base.rule.name):
                return None
        return self.site_for(target, source)

    # -- provider blocks -------------------------------------------------------------
    def retry_elsewhere(self, site: SiteRef, message: LeasedMessage, r: LeasedRecipient) -> bool:
        """After a block reply for ``r`` from ``site``: True (and the retry told to avoid
        that source) when its pool has another source not blocked there."""
        now = time.time()
        provider = site.destination.provider
        pool = self.pool_of(message.tenant_id, message.stream)
        if not any(
            s is not site.source and self.blocked.get((s.name, provider), 0.0) <= now
            for s in pool.sources
        ):
            return False
        if len(self.avoid) >= _MAX_AVOID:
            self.avoid.clear()
        self.avoid[(r.message_id, r.idx)] = site.source.name
        return True

    def cancel(self) -> None:
        """Stop strikes and dispatches still running (the node is stopping)."""
        for task in self._tasks:
            task.cancel()

    def strike(self, site: SiteRef) -> None:
        """Count a block reply against the site's (source, destination) path."""
        self.start(self._strike(site.source, site.destination.provider), "deliver:block")

    async def _strike(self, source: Source, provider: str) -> None:
        key = block_key(source.name, provider)
        throttle = self.port.throttle.backend
        try:
            await throttle.report_throttled(key, params=self.block_params)
            status = await throttle.state(key)
        except ThrottleError as exc:
            self.port.throttle.failed(exc)
            return
        if status.suspended_for > 0:
            self.block(source, provider, status.suspended_for)

    def block(self, source: Source, provider: str, seconds: float) -> None:
        """Stop ``source`` sending to ``provider`` for ``seconds``; its buffered work goes
        back to the queue, to be given to the pool's other sources."""
        now = time.time()
        key = (source.name, provider)
        if self.blocked.get(key, 0.0) <= now:
            log.warning(
                "source %s blocked by %s: not used there for %.0fs",
                source.name,
                provider,
                seconds,
                extra={"action": "deliver.source_blocked"},
            )
        self.blocked[key] = now + seconds
        for stale in [k for k, until in self.blocked.items() if until <= now]:
            del self.blocked[stale]
        items: list[WorkItem] = []
        for site in list(self.sites):
            if site.source is source and site.destination.provider == provider:
                items.extend(site.drain())
        if items:
            self.port.hand_back(items, now=now)

    # -- state -----------------------------------------------------------------------
    async def state(self) -> list[dict[str, Any]]:
        """Every source: address, pools, warm-up progress (day, today's and this hour's
        count against the caps per destination this node sent to today) and blocks."""
        now = time.time()
        calendar = self.clock()
        w = windows(calendar)
        out = []
        seen = self._warm_seen if self._warm_day == w.day else {}
        for source in self.egress.sources:
            entry: dict[str, Any] = {
                "name": source.name,
                "address": source.address,
                "ehlo": source.ehlo,
                "weight": source.weight,
                "pools": list(source.pools),
                "warmup": None,
                "blocked": sorted(
                    (
                        {"provider": p, "for_seconds": round(until - now, 1)}
                        for (s, p), until in self.blocked.items()
                        if s == source.name and until > now
                    ),
                    key=lambda b: str(b["provider"]),
                ),
            }
            plan = source.plan
            if plan is not None and source.warmup_start is not None:
                day = source.warmup_day(calendar)
                providers: list[tuple[int, dict[str, Any]]] = []
                for provider, rule in seen.get(source.name, {}).items():
                    caps = plan.caps(day, rule) if day is not None else None
                    try:
                        sent_day, sent_hour = await self.port.throttle.backend.quota_used(
                            quota_group(source.name, provider), [w.day, w.hour]
                        )
                    except ThrottleError:
                        continue
                    capped = self.capped.get((source.name, provider), 0.0)
                    providers.append(
                        (
                            sent_day,
                            {
                                "provider": provider,
                                "rule": rule,
                                "sent_today": sent_day,
                                "day_cap": caps.day if caps else None,
                                "sent_this_hour": sent_hour,
                                "hour_cap": caps.hour if caps else None,
                                "capped_for": round(capped - now, 1) if capped > now else 0.0,
                            },
                        )
                    )
                providers.sort(key=lambda p: -p[0])
                entry["warmup"] = {
                    "schedule": plan.name,
                    "start": source.warmup_start.isoformat(),
                    "day": day,
                    "days": plan.days,
                    "warmed": day is None,
                    "overflow": plan.overflow,
                    "providers": [p for _, p in providers[:_TOP_PROVIDERS]],
                }
            out.append(entry)
        return out


def _always(source: Source) -> bool:
    return True


def _split(group: Sequence[WorkItem], granted: int) -> tuple[list[WorkItem], list[WorkItem]]:
    """The first ``granted`` recipients of ``group`` and the rest, splitting one item
    when the grant ends inside it."""
    fits: list[WorkItem] = []
    rest: list[WorkItem] = []
    left = granted
    for item in group:
        k = len(item.recipients)
        if left >= k:
            fits.append(item)
            left -= k
        elif left > 0:
            head = WorkItem(
                item.message, item.recipients[:left], item.domain, item.lease_until, item.queued_at
            )
            tail = WorkItem(
                item.message, item.recipients[left:], item.domain, item.lease_until, item.queued_at
            )
            fits.append(head)
            rest.append(tail)
            left = 0
        else:
            rest.append(item)
    return fits, rest
