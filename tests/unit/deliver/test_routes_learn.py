"""``Routes.learn``: an operator's view looks up the routes a worker does not know yet,
waiting no longer than it was given; what is not found in time is known later."""

from __future__ import annotations

import asyncio
import time

from postline.config import load_config
from postline.deliver.routing import Route, Routes
from postline.dns.resolver import MXHost, MXResult, Resolver
from postline.store.base import QueueKey
from postline.throttle.rules import ThrottleRules


class SlowResolver(Resolver):
    """Every domain's MX is ``mx1.shared.test``; ``slow.test`` answers after a second."""

    async def mx(self, domain: str) -> MXResult:
        await asyncio.sleep(1.0 if domain == "slow.test" else 0.0)
        return MXResult(domain, "ok", (MXHost(10, "mx1.shared.test", ("192.0.2.1",)),))

    async def addresses(self, host: str) -> tuple[str, ...]:
        return ()


def _routes() -> tuple[Routes, list[tuple[Route, set[QueueKey]]]]:
    routed: list[tuple[Route, set[QueueKey]]] = []
    rules = ThrottleRules.load([{"name": "shared", "mx": ["*.shared.test"], "connections": 2}])
    routes = Routes(
        load_config(text="", environ={}),
        SlowResolver(),
        rules,
        lambda route, keys: routed.append((route, keys)),
    )
    return routes, routed


async def test_learn_waits_for_lookups_but_no_longer_than_its_time() -> None:
    routes, routed = _routes()
    t0 = time.monotonic()
    await routes.learn(["a.test", "b.test", "slow.test"], 0.3)
    waited = time.monotonic() - t0
    assert 0.0 < waited < 0.9
    for domain in ("a.test", "b.test"):
        route = routes.get(domain)
        assert route is not None and route.target is not None
        assert route.target.base.rule.name == "shared"
        assert route.target.base.limits.connections == 2
    assert routes.get("slow.test") is None  # not in time: still looked up
    assert all(keys == set() for _, keys in routed)  # no queue waited for these

    # Known routes are not looked up again: nothing to wait for.
    t0 = time.monotonic()
    await routes.learn(["a.test"], 5.0)
    assert time.monotonic() - t0 < 0.1

    # The slow lookup went on in the background; a later view finds it.
    await routes.learn(["slow.test"], 2.0)
    assert routes.get("slow.test") is not None
    assert routes._waiters == {}
    routes.stop()


async def test_learn_without_time_only_starts_the_lookups() -> None:
    routes, _ = _routes()
    await routes.learn(["a.test"], 0.0)
    assert routes.get("a.test") is None
    for _ in range(100):
        if routes.get("a.test") is not None:
            break
        await asyncio.sleep(0.01)
    assert routes.get("a.test") is not None
    routes.stop()
