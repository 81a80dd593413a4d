"""Sending limits: rates per tenant and per API key, daily and monthly quotas per tenant.

* :mod:`postline.limits.resolve`: what applies to a tenant or a key — its own limits
  (stored, set through the admin API) over the ``[limits]`` defaults;
* :mod:`postline.limits.limiter`: the :class:`Limiter` ingest asks before it enqueues:
  it takes the recipients from the tenant's and the key's GCRA buckets on the node's
  throttle backend (one atomic step, so the limits hold across a fleet on Redis) and
  hands back the quota the store enforces in the enqueue's transaction;
* :mod:`postline.limits.report`: a tenant's usage of the day and the month against its
  quotas.
"""

from __future__ import annotations

from postline.limits.limiter import Limiter
from postline.limits.report import PeriodUsage, UsageReport, usage_report
from postline.limits.resolve import KeyRate, TenantLimits, key_rate, tenant_limits

__all__ = [
    "KeyRate",
    "Limiter",
    "PeriodUsage",
    "TenantLimits",
    "UsageReport",
    "key_rate",
    "tenant_limits",
    "usage_report",
]
