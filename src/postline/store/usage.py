"""Usage counting shared by the backends: the UTC day and month of an enqueue, what it
counts, and the quota check on what is counted so far.

Usage is one row per tenant and UTC day (``tenant_usage``: tenant, ``YYYY-MM-DD``,
recipients); a month's usage is the sum of its days' rows (at most 31, one index range).
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import UTC, datetime

from postline.errors import QuotaExceeded
from postline.store.base import NewMessage, Quota

__all__ = ["check_quota", "counted", "day_of", "day_reset", "month_range", "month_reset"]

_NOT_COUNTED = "dsn"  # delivery reports postline itself sends for a tenant


def day_of(at: float) -> str:
    """The UTC calendar day of ``at`` as ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d")


def month_range(day: str) -> tuple[str, str]:
    """The first day of ``day``'s month and the first day of the next one (text bounds:
    ``first <= d < next``)."""
    year, month = int(day[:4]), int(day[5:7])
    nxt = (year + 1, 1) if month == 12 else (year, month + 1)
    return f"{year:04d}-{month:02d}-01", f"{nxt[0]:04d}-{nxt[1]:02d}-01"


def day_reset(day: str) -> float:
    """When ``day`` ends: UTC midnight after it, epoch seconds."""
    start = calendar.timegm(datetime.strptime(day, "%Y-%m-%d").timetuple())
    return float(start + 86400)


def month_reset(day: str) -> float:
    """When ``day``'s month ends: UTC midnight of the next month's first day."""
    nxt = month_range(day)[1]
    return float(calendar.timegm(datetime.strptime(nxt, "%Y-%m-%d").timetuple()))


def counted(messages: Sequence[NewMessage]) -> dict[str, int]:
    """Recipients an enqueue counts, by tenant (every recipient of a message, suppressed
    ones too: a message to N recipients counts N)."""
    out: dict[str, int] = {}
    for m in messages:
        if m.source != _NOT_COUNTED:
            out[m.tenant_id] = out.get(m.tenant_id, 0) + len(m.recipients)
    return out


def check_quota(quota: Quota, day: str, day_used: int, month_used: int, n: int) -> None:
    """Raise :class:`QuotaExceeded` when ``n`` more recipients would take the day or the
    month over its limit (the daily quota is named first when both would be)."""
    if quota.daily and day_used + n > quota.daily:
        raise QuotaExceeded(
            f"the daily quota of {quota.daily} recipients is reached: {day_used} were "
            f"accepted on {day} (UTC) and this request has {n}",
            period="daily",
            limit=quota.daily,
            used=day_used,
            requested=n,
            resets_at=day_reset(day),
        )
    if quota.monthly and month_used + n > quota.monthly:
        raise QuotaExceeded(
            f"the monthly quota of {quota.monthly} recipients is reached: {month_used} were "
            f"accepted in {day[:7]} (UTC) and this request has {n}",
            period="monthly",
            limit=quota.monthly,
            used=month_used,
            requested=n,
            resets_at=month_reset(day),
        )
