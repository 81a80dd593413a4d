"""A tenant's usage against its quotas, as the admin API and ``GET /v1/usage`` show it."""

from __future__ import annotations

from dataclasses import dataclass

from postline.limits.resolve import TenantLimits
from postline.store.base import TenantStore
from postline.store.usage import day_reset, month_reset

__all__ = ["PeriodUsage", "UsageReport", "usage_report"]


@dataclass(frozen=True, slots=True)
class PeriodUsage:
    """Recipients accepted in one UTC day or month, against its quota."""

    period: str
    """``YYYY-MM-DD`` or ``YYYY-MM``."""
    used: int
    limit: int
    """0: unlimited."""
    resets_at: float
    """When the period ends (epoch seconds)."""

    @property
    def remaining(self) -> int | None:
        """Recipients left in the period (None: unlimited)."""
        return max(0, self.limit - self.used) if self.limit else None


@dataclass(frozen=True, slots=True)
class UsageReport:
    day: PeriodUsage
    month: PeriodUsage


async def usage_report(
    store: TenantStore, tenant_id: str, limits: TenantLimits, *, now: float
) -> UsageReport:
    """The tenant's usage of the UTC day and month of ``now``."""
    used = await store.usage(tenant_id, now=now)
    return UsageReport(
        day=PeriodUsage(used.day, used.day_used, limits.daily, day_reset(used.day)),
        month=PeriodUsage(used.day[:7], used.month_used, limits.monthly, month_reset(used.day)),
    )
