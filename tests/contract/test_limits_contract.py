"""The store contract: usage counted in the enqueue's transaction, quotas held there, and
the limits stored for tenants and API keys.

Every backend (fixture `store` in conftest.py): SQLite's single writer and PostgreSQL's
group commit must agree, also when many enqueues race for the last of a quota.
"""

from __future__ import annotations

import asyncio
import calendar
from dataclasses import replace
from datetime import datetime

import pytest

from contract.store_helpers import message, tenant
from postline.errors import QuotaExceeded
from postline.store import Store
from postline.store.base import IdempotencyClaim, LimitOverrides, Quota

# Noon on the 15th of a 31-day month (UTC), and days around it.
MAY_15 = float(calendar.timegm(datetime(2031, 5, 15, 12, 0).timetuple()))
MAY_16 = MAY_15 + 86400
MAY_1 = MAY_15 - 14 * 86400
APRIL_30 = MAY_1 - 86400
JUNE_1 = float(calendar.timegm(datetime(2031, 6, 1).timetuple()))


def _to(n: int, at: float = MAY_15, start: int = 0) -> list[str]:
    return [f"r{start + i}@example.test" for i in range(n)]


async def test_usage_counts_recipients_per_utc_day_and_month(store: Store) -> None:
    t = await tenant(store)
    other = await tenant(store, "other")
    await store.enqueue([message(t, *_to(3), created=MAY_15)])
    await store.enqueue([message(t, *_to(2), created=MAY_15), message(t, *_to(1), created=MAY_15)])
    await store.enqueue([message(t, *_to(4), created=MAY_1)])
    await store.enqueue([message(t, *_to(5), created=APRIL_30)])
    await store.enqueue([message(other, *_to(7), created=MAY_15)])
    # A delivery report postline sends itself is not the tenant's usage.
    await store.enqueue([replace(message(t, "ann@example.test", created=MAY_15), source="dsn")])

    used = await store.usage(t, now=MAY_15)
    assert (used.day, used.day_used, used.month_used) == ("2031-05-15", 6, 10)
    assert (await store.usage(t, now=MAY_16)).day_used == 0
    assert (await store.usage(t, now=MAY_16)).month_used == 10
    assert (await store.usage(t, now=APRIL_30)).month_used == 5
    assert (await store.usage(t, now=JUNE_1)).month_used == 0
    assert (await store.usage(other, now=MAY_15)).day_used == 7


async def test_a_daily_quota_accepts_up_to_its_limit_and_refuses_whole_calls(
    store: Store,
) -> None:
    t = await tenant(store)
    quota = Quota(daily=5)
    await store.enqueue([message(t, *_to(3), created=MAY_15)], quota=quota)
    refused = message(t, *_to(3, start=3), created=MAY_15)
    with pytest.raises(QuotaExceeded) as caught:
        await store.enqueue([refused], quota=quota)
    exc = caught.value
    assert (exc.period, exc.limit, exc.used, exc.requested) == ("daily", 5, 3, 3)
    assert exc.resets_at == MAY_16 - 12 * 3600  # midnight UTC after the 15th
    # Nothing of the refused call was stored or counted.
    assert await store.get_message(t, refused.id) is None
    assert (await store.usage(t, now=MAY_15)).day_used == 3
    # What fits still goes, exactly up to the limit.
    await store.enqueue([message(t, *_to(2), created=MAY_15)], quota=quota)
    assert (await store.usage(t, now=MAY_15)).day_used == 5
    with pytest.raises(QuotaExceeded):
        await store.enqueue([message(t, "one@example.test", created=MAY_15)], quota=quota)
    # The next UTC day starts again; without a quota nothing is refused (but counted).
    await store.enqueue([message(t, *_to(5), created=MAY_16)], quota=quota)
    await store.enqueue([message(t, *_to(2), created=MAY_15)])
    assert (await store.usage(t, now=MAY_15)).day_used == 7


async def test_a_monthly_quota_counts_the_earlier_days_of_the_month(store: Store) -> None:
    t = await tenant(store)
    await store.enqueue([message(t, *_to(6), created=APRIL_30)])
    await store.enqueue([message(t, *_to(6), created=MAY_1)])
    quota = Quota(daily=100, monthly=10)
    await store.enqueue([message(t, *_to(4), created=MAY_15)], quota=quota)
    with pytest.raises(QuotaExceeded) as caught:
        await store.enqueue([message(t, "one@example.test", created=MAY_15)], quota=quota)
    exc = caught.value
    assert (exc.period, exc.limit, exc.used, exc.requested) == ("monthly", 10, 10, 1)
    assert exc.resets_at == JUNE_1


async def test_a_replayed_key_answers_its_record_even_over_quota(store: Store) -> None:
    t = await tenant(store)
    quota = Quota(daily=2)
    claim = IdempotencyClaim("k-1", "hash", 202, '{"id":"first"}', MAY_15)
    await store.enqueue(
        [message(t, *_to(2), created=MAY_15)], idempotency=claim, tenant_id=t, quota=quota
    )
    again = await store.enqueue(
        [message(t, *_to(2), created=MAY_15)], idempotency=claim, tenant_id=t, quota=quota
    )
    assert again is not None and again.response == '{"id":"first"}'
    assert (await store.usage(t, now=MAY_15)).day_used == 2


async def test_racing_enqueues_take_exactly_the_quota(store: Store) -> None:
    t = await tenant(store)
    quota = Quota(daily=25)

    async def one(i: int) -> bool:
        try:
            await store.enqueue([message(t, f"r{i}@example.test", created=MAY_15)], quota=quota)
        except QuotaExceeded:
            return False
        return True

    results = await asyncio.gather(*(one(i) for i in range(60)))
    assert sum(results) == 25
    assert (await store.usage(t, now=MAY_15)).day_used == 25
    assert await store.state_counts() == {"queued": 25}


async def test_limits_of_tenants_and_keys_are_stored(store: Store) -> None:
    t = await tenant(store)
    other = await tenant(store, "other")
    assert await store.tenant_limits() == {}
    own = LimitOverrides(rate=5, burst=10, daily=None, monthly=0)
    assert await store.set_tenant_limits(t, own)
    assert not await store.set_tenant_limits("no-such-tenant", own)
    assert await store.tenant_limits() == {t: own}
    assert await store.tenant_limits(other) == {}
    assert await store.set_tenant_limits(t, LimitOverrides())
    assert await store.tenant_limits() == {}

    key = await store.add_api_key(t, "hash-limited", "pl_lim", rate=2, burst=4)
    plain = await store.add_api_key(t, "hash-plain", "pl_plain")
    assert (key.rate, key.burst, plain.rate, plain.burst) == (2, 4, None, None)
    listed = {k.id: (k.rate, k.burst) for k in await store.api_keys(t)}
    assert listed == {key.id: (2, 4), plain.id: (None, None)}
    found = await store.key_identity("hash-limited")
    assert found is not None and (found.rate, found.burst) == (2, 4)
