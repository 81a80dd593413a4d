"""Helpers shared by the backends for reputation and activity counts."""

from __future__ import annotations

from collections.abc import Iterable

from postline.store.base import ActivityCount, ReputationCount

__all__ = ["merge_activity", "merge_counts"]


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


def merge_activity(counts: Iterable[ActivityCount]) -> list[tuple[float, int, int, int, int, int]]:
    """Activity summed per minute, empty ones left out, in minute order: one upsert per
    row."""
    out: dict[float, list[int]] = {}
    for c in counts:
        values = (c.accepted, c.delivered, c.deferred, c.bounced, c.complained)
        if not any(values):
            continue
        row = out.setdefault(float(c.bucket), [0, 0, 0, 0, 0])
        for i, v in enumerate(values):
            row[i] += v
    return [(b, r[0], r[1], r[2], r[3], r[4]) for b, r in sorted(out.items())]
