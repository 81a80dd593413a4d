"""Routes: where each domain's mail goes, looked up per domain and kept a short while.

A domain's route is an operator's reroute in force (:mod:`postline.control.reroutes`,
of the domain or of the throttle rule its MX hosts match), a static route
(``[[delivery.routes]]``) or its MX hosts, resolved
through :class:`~postline.dns.resolver.Resolver` and matched to a throttle rule: a
:class:`Target`, towards which :mod:`postline.deliver.paths` gives each source of a pool
its own site (a configuration without ``[[delivery.sources]]`` has one implicit
source). A lookup that fails is a route too: its reply (a permanent DNS failure bounces,
a temporary one defers) decides the outcome of the domain's mail.

:class:`Routes` keeps them for ``ROUTE_TTL`` seconds (a temporary failure for five) and
looks up the routes of due domains in the background, a few at a time, telling the
engine which queues waited for each one.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from postline.config import Config
from postline.deliver.outcome import dns_reply
from postline.deliver.site import Site
from postline.deliver.work import Host
from postline.dns.resolver import Resolver
from postline.model import Reply
from postline.store.base import QueueKey, Reroute
from postline.throttle.rules import Destination, ThrottleRules

__all__ = ["ROUTE_TTL", "Route", "Routes", "Target"]

log = logging.getLogger(__name__)

ROUTE_TTL = 30.0
_RESOLVERS = 64  # route lookups running at once


@dataclass(slots=True)
class Target:
    """Where one domain's mail goes: built per route, a site per source on demand."""

    domain: str
    mx: tuple[str, ...]
    site_name: str
    hosts: list[Host]
    base: Destination
    """The destination matched without a source: rule, limits, provider."""
    sites: dict[str, Site] = field(default_factory=dict)
    """The sites of the sources that sent (or may send) there, by source name."""
    relay: bool = False
    """A static route (``[[delivery.routes]]``), not the domain's MX hosts."""
    lane_key: str = ""
    """Names the lane of the target's destination and MX site: the domains that share
    them share one lane (and its sites)."""

    def __post_init__(self) -> None:
        self.lane_key = f"{self.base.key}|{self.site_name}"


@dataclass(frozen=True, slots=True)
class Route:
    target: Target | None
    """Where the mail goes (None when the lookup failed)."""
    failure: Reply | None
    """Why the mail cannot go: the lookup's reply."""
    expires: float


class Routes:
    """The routes of one engine by domain, and their background lookups (see module).

    ``on_routed`` gets each route looked up in the background with the queues that
    waited for it.
    """

    def __init__(
        self,
        config: Config,
        resolver: Resolver,
        rules: ThrottleRules,
        on_routed: Callable[[Route, set[QueueKey]], None],
    ) -> None:
        self._config = config
        self._dns = resolver
        self._rules = rules
        self._on_routed = on_routed
        self.table: dict[str, Route] = {}
        self._resolving: dict[str, set[QueueKey]] = {}
        self._to_resolve: deque[str] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False
        self._reroutes: tuple[Reroute, ...] = ()
        self._generation = 0  # changes of the reroutes
        # Callers of ``learn`` waiting for a domain's lookup to end.
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}

    @property
    def reroutes(self) -> tuple[Reroute, ...]:
        return self._reroutes

    def set_reroutes(self, reroutes: Sequence[Reroute]) -> bool:
        """The operators' reroutes in force now; when they changed, every known route is
        looked up again (work already handed to a lane finishes there). Whether they
        changed."""
        new = tuple(reroutes)
        if new == self._reroutes:
            return False
        self._reroutes = new
        self._generation += 1
        for domain, route in list(self.table.items()):
            self.table[domain] = Route(route.target, route.failure, 0.0)
            self.look_up(domain, None)
        return True

    def get(self, domain: str) -> Route | None:
        """The route of ``domain`` known now (possibly expired), without a lookup."""
        return self.table.get(domain)

    async def route(self, domain: str) -> Route:
        """The route of ``domain``, looked up now unless known and fresh."""
        cached = self.table.get(domain)
        if cached is not None and cached.expires > time.monotonic():
            return cached
        route = await self.resolve(domain)
        self.table[domain] = route
        return route

    def look_up(self, domain: str, key: QueueKey | None) -> None:
        """Find ``domain``'s route in the background; ``key`` is handed to ``on_routed``
        with it (None: only learn the route)."""
        waiting = self._resolving.get(domain)
        if waiting is not None:
            if key is not None:
                waiting.add(key)
            return
        self._resolving[domain] = {key} if key is not None else set()
        self._to_resolve.append(domain)
        if len(self._tasks) < _RESOLVERS:
            task = asyncio.get_running_loop().create_task(self._lookups(), name="deliver:routes")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def learn(self, domains: Sequence[str], timeout: float) -> None:
        """Look up the routes of those ``domains`` not known yet, in the background, and
        wait at most ``timeout`` seconds in all for them (an operator's view: what is not
        found in time stays unknown, and its lookup goes on for the next view)."""
        unknown = [d for d in dict.fromkeys(domains) if d not in self.table]
        if not unknown or self._stopped:
            return
        if timeout <= 0:
            for domain in unknown:
                self.look_up(domain, None)
            return
        loop = asyncio.get_running_loop()
        futures: dict[str, asyncio.Future[None]] = {}
        for domain in unknown:
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(domain, []).append(future)
            futures[domain] = future
            self.look_up(domain, None)
        try:
            await asyncio.wait(futures.values(), timeout=timeout)
        finally:
            for domain, future in futures.items():
                waiting = self._waiters.get(domain)
                if waiting is not None and future in waiting:
                    waiting.remove(future)
                    if not waiting:
                        del self._waiters[domain]
                future.cancel()

    def stop(self) -> None:
        """No more lookups; those running are cancelled."""
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()

    def expire(self, now: float) -> None:
        """Forget routes expired for longer than ``ROUTE_TTL`` (``now``: monotonic)."""
        for domain in [d for d, r in self.table.items() if r.expires < now - ROUTE_TTL]:
            del self.table[domain]

    async def _lookups(self) -> None:
        """Look up routes of due domains, a few at a time, and hand over their queues."""
        while self._to_resolve and not self._stopped:
            domain = self._to_resolve.popleft()
            generation = self._generation
            try:
                route = await self.resolve(domain)
                if generation != self._generation:
                    # The reroutes changed meanwhile: used once, looked up again next time.
                    route = Route(route.target, route.failure, 0.0)
            except Exception:
                log.exception(
                    "route lookup for %s failed", domain, extra={"action": "deliver.route_failed"}
                )
                reply = dns_reply("temp_fail", domain, "route lookup failed")
                route = Route(None, reply, time.monotonic() + 5.0)
            self.table[domain] = route
            keys = self._resolving.pop(domain, set())
            for future in self._waiters.pop(domain, ()):
                if not future.done():
                    future.set_result(None)
            self._on_routed(route, keys)

    async def resolve(self, domain: str) -> Route:
        """Look up ``domain``'s route (not cached)."""
        expires = time.monotonic() + ROUTE_TTL
        static = self._rerouted(domain) or self._static_route(domain)
        if static is not None:
            return await self._static(domain, static, expires)
        mx = await self._dns.mx(domain)
        if mx.status != "ok":
            reply = dns_reply(mx.status, domain, mx.detail)
            ttl = 5.0 if mx.status == "temp_fail" else ROUTE_TTL
            return Route(None, reply, time.monotonic() + ttl)
        port = self._config.delivery.smtp_port
        hosts = [Host(h.name, a, port) for h in mx.hosts for a in h.addresses]
        names = tuple(h.name for h in mx.hosts)
        if any(r.provider for r in self._reroutes):
            dest = self._rules.match(domain, names, mx.site)
            static = self._rerouted(domain, (dest.rule.name, dest.provider))
            if static is not None:
                return await self._static(domain, static, expires)
        return self._route_to(domain, names, mx.site, hosts, expires)

    async def _static(self, domain: str, static: tuple[str, int], expires: float) -> Route:
        """The route of ``domain`` to a relay (a static route or a reroute)."""
        host, port = static
        try:
            ipaddress.ip_address(host)
            addresses: Sequence[str] = (host,)
        except ValueError:
            addresses = await self._dns.addresses(host)
        if not addresses:
            reply = dns_reply("temp_fail", domain, f"route host {host} has no address")
            return Route(None, reply, time.monotonic() + 5.0)
        hosts = [Host(host, a, port) for a in addresses]
        site_name = f"route:{host}:{port}"
        return self._route_to(domain, (host,), site_name, hosts, expires, relay=True)

    def _rerouted(self, domain: str, providers: Sequence[str] = ()) -> tuple[str, int] | None:
        """The relay of a reroute of ``domain`` (or, given the names of the rule its MX
        hosts match, of that provider), the newest first."""
        for r in reversed(self._reroutes):
            if (r.domain and r.domain == domain) or (r.provider and r.provider in providers):
                return r.host, r.port
        return None

    def _route_to(
        self,
        domain: str,
        mx: tuple[str, ...],
        site_name: str,
        hosts: list[Host],
        expires: float,
        *,
        relay: bool = False,
    ) -> Route:
        dest = self._rules.match(domain, mx, site_name, relay=relay)
        return Route(Target(domain, mx, site_name, hosts, dest, relay=relay), None, expires)

    def _static_route(self, domain: str) -> tuple[str, int] | None:
        for r in self._config.delivery.routes:
            if r.domain == domain or r.domain == "*":
                return r.host, r.port
        return None
