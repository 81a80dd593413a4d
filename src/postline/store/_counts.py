"""Helpers shared by the backends for reputation counts."""

from __future__ import annotations

from collections.abc import Iterable

from postline.store.base import ReputationCount

__all__ = ["merge_counts"]


def merge_counts(
    counts: Iterable[ReputationCount],
) -> dict[tuple[str, str, float], tuple[int, int, int]]:
    """Counts summed per (tenant, stream, bucket), empty ones left out: one upsert per
    key (an upsert statement may not touch a row twice), in a stable key order."""
    out: dict[tuple[str, str, float], tuple[int, int, int]] = {}
    for c in counts:
        if not (c.delivered or c.bounced or c.complained):
            continue
        key = (c.tenant_id, c.stream, float(c.bucket))
        d, b, k = out.get(key, (0, 0, 0))
        out[key] = (d + c.delivered, b + c.bounced, k + c.complained)
    return out
