"""The limits that apply: a tenant's or a key's own over the ``[limits]`` defaults."""

from __future__ import annotations

from dataclasses import dataclass

from postline.config import LimitsConfig
from postline.store.base import LimitOverrides

__all__ = ["KeyRate", "TenantLimits", "key_rate", "tenant_limits"]


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """What holds a tenant (0: unlimited)."""

    rate: int
    """Recipients per second."""
    burst: int
    """Recipients at once from an idle bucket (at least 1 when ``rate`` is set)."""
    daily: int
    monthly: int
    overridden: tuple[str, ...] = ()
    """The fields the tenant has its own value for (the others follow ``[limits]``)."""


@dataclass(frozen=True, slots=True)
class KeyRate:
    """An API key's own rate limit, on top of its tenant's (``rate`` 0: none)."""

    rate: int
    burst: int
    overridden: tuple[str, ...] = ()


def _burst(rate: int, burst: int) -> int:
    """A burst of 0 means one second's worth of the rate."""
    return 0 if not rate else (burst or rate)


def tenant_limits(config: LimitsConfig, own: LimitOverrides | None) -> TenantLimits:
    own = own or LimitOverrides()
    rate = config.rate if own.rate is None else own.rate
    burst = config.burst if own.burst is None else own.burst
    return TenantLimits(
        rate=rate,
        burst=_burst(rate, burst),
        daily=config.daily if own.daily is None else own.daily,
        monthly=config.monthly if own.monthly is None else own.monthly,
        overridden=tuple(k for k, v in own.as_dict().items() if v is not None),
    )


def key_rate(config: LimitsConfig, rate: int | None, burst: int | None) -> KeyRate:
    """From a key's stored ``rate`` and ``burst`` (None: the ``[limits]`` key defaults)."""
    r = config.key_rate if rate is None else rate
    b = config.key_burst if burst is None else burst
    own = tuple(k for k, v in (("rate", rate), ("burst", burst)) if v is not None)
    return KeyRate(r, _burst(r, b), own)
