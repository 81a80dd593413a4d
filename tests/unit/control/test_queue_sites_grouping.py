"""The queue view per MX site: a page's domains grouped by the throttle bucket their
route leads to, queues summed per site and per tenant, unrouted domains apart."""

from __future__ import annotations

from typing import Any

from postline.control.queues import DomainQueues, Suspension, TenantQueueView
from postline.control.sites import group_sites
from postline.store.base import TenantQueue


def _domain(name: str, *queues: tuple[str, int, int, float], held: str = "") -> DomainQueues:
    views = [
        TenantQueueView(
            TenantQueue(tenant, depth, deferred, depth // 2, oldest, oldest + 60),
            Suspension(tenant, name, 0.0, None, "operator") if tenant == held else None,
        )
        for tenant, depth, deferred, oldest in queues
    ]
    return DomainQueues(name, views)


def _routed(key: str, provider: str, mx_site: str, **kw: Any) -> dict[str, Any]:
    return {
        "status": "routed",
        "key": key,
        "provider": provider,
        "rule": provider.split(":")[0],
        "scope": "rule" if ":" not in provider else "site",
        "mx_site": mx_site,
        "relay": False,
        "rate_limit": 10.0,
        "burst": 10,
        "connection_limit": 3,
        **kw,
    }


def test_domains_of_one_bucket_share_a_row_with_summed_queues() -> None:
    page = [
        _domain("a.big.test", ("t1", 5, 2, 100.0), ("t2", 1, 1, 50.0)),
        _domain("b.big.test", ("t1", 7, 0, 80.0), held="t1"),
        _domain("c.big.test", ("t2", 2, 2, 300.0)),
        _domain("solo.test", ("t1", 4, 4, 10.0)),
        _domain("new.test", ("t2", 3, 0, 20.0)),
        _domain("gone.test", ("t1", 1, 1, 5.0)),
    ]
    state = {"source": None, "connections": 2, "connection_limit": 3, "buffered": 4}
    view = {
        "domains": {
            "a.big.test": _routed("big:aa", "big", "mx1.big.test"),
            "b.big.test": _routed("big:aa", "big", "mx1.big.test"),
            "c.big.test": _routed("big:aa", "big", "mx2.big.test"),
            "solo.test": _routed("default:site=mx.solo.test:bb", "default:site=mx.solo.test", "s"),
            "gone.test": {"status": "failed", "reply": "550 5.1.2 no such domain"},
            # new.test: not known to the engine at all
        },
        "buckets": {"big:aa": [state], "default:site=mx.solo.test:bb": []},
    }
    got = group_sites(page, view)

    assert got.domains == 6
    assert [s.key for s in got.sites] == ["big:aa", "default:site=mx.solo.test:bb"]
    big, solo = got.sites
    assert [d.domain for d in big.domains] == ["a.big.test", "b.big.test", "c.big.test"]
    assert (big.depth, big.deferred, big.due) == (5 + 1 + 7 + 2, 2 + 1 + 0 + 2, 2 + 0 + 3 + 1)
    assert big.oldest_at == 50.0
    assert big.mx_sites == ["mx1.big.test", "mx2.big.test"]
    assert big.suspended == 1  # b.big.test: its one tenant queue is held
    assert big.throttle == [state] and big.connection_limit == 3 and big.provider == "big"
    t1, t2 = big.tenants
    assert (t1.tenant_id, t1.depth, t1.deferred, t1.domains, t1.suspended) == ("t1", 12, 2, 2, 1)
    assert (t1.oldest_at, t2.oldest_at) == (80.0, 50.0)
    assert (t2.tenant_id, t2.depth, t2.domains, t2.suspended) == ("t2", 3, 2, 0)
    assert solo.depth == 4 and solo.throttle == []

    assert [(u.queues.domain, u.reason, u.reply) for u in got.unrouted] == [
        ("gone.test", "failed", "550 5.1.2 no such domain"),
        ("new.test", "unknown", ""),
    ]


def test_sites_come_deepest_first_and_nothing_known_means_all_unrouted() -> None:
    page = [_domain("a.test", ("t", 1, 0, 1.0)), _domain("b.test", ("t", 9, 0, 1.0))]
    view = {
        "domains": {
            "a.test": _routed("k1", "default:site=a", "a"),
            "b.test": _routed("k2", "default:site=b", "b"),
        }
    }
    assert [s.key for s in group_sites(page, view).sites] == ["k2", "k1"]
    bare = group_sites(page, {})
    assert bare.sites == [] and [u.reason for u in bare.unrouted] == ["unknown", "unknown"]
