"""Soft-bounce runs: counted per address; a run long enough suppresses the address."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from postline.config import SuppressionConfig
from postline.metrics import Metrics
from postline.store.base import Store

__all__ = ["note_soft_bounces"]


async def note_soft_bounces(
    store: Store,
    soft: Mapping[str, Sequence[str]],
    *,
    suppression: SuppressionConfig,
    now: float,
    metrics: Metrics | None = None,
) -> None:
    """Count a soft bounce for each address (by tenant) under ``[suppression]``'s rule:
    ``soft_bounce_limit`` in a row within ``soft_bounce_window`` suppresses the address
    for ``soft_bounce_ttl`` (0: for ever)."""
    s = suppression
    for tenant_id, addresses in soft.items():
        added = await store.note_soft_bounces(
            tenant_id,
            addresses,
            now=now,
            window=s.soft_bounce_window,
            limit=s.soft_bounce_limit,
            expires_at=now + s.soft_bounce_ttl if s.soft_bounce_ttl else None,
        )
        if added and metrics is not None:
            metrics.suppressions.labels("soft_bounce").inc(len(added))
