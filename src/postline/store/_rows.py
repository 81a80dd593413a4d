"""Records built from rows the same way by every backend (their queries select the same
columns in the same order)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from postline.store.base import LeasedMessage, LeasedRecipient, QueueStat

__all__ = ["group_leased", "stat_of", "sum_stats", "with_paused"]


def group_leased(
    rcpts: Sequence[LeasedRecipient], bodies: Mapping[str, Sequence[Any]]
) -> list[LeasedMessage]:
    """Leased recipients as one LeasedMessage per message, recipients in index order;
    ``bodies``: message id → (tenant, mail from, body, Message-ID, source, stream)."""
    by_message: dict[str, list[LeasedRecipient]] = {}
    for r in rcpts:
        by_message.setdefault(r.message_id, []).append(r)
    out = []
    for mid, group in by_message.items():
        tenant, mail_from, body, mid_header, source, stream = bodies[mid]
        group.sort(key=lambda r: r.idx)
        out.append(
            LeasedMessage(
                mid, tenant, mail_from, bytes(body), mid_header, group, source=source, stream=stream
            )
        )
    return out


def stat_of(row: Sequence[Any]) -> QueueStat:
    """(domain, queued, deferred, oldest created_at, first next_attempt_at, paused)."""
    domain, n, deferred, oldest, nxt, paused = row
    return QueueStat(domain, int(n), int(deferred), oldest or 0.0, nxt or 0.0, bool(paused))


def sum_stats(domain: str, rows: Sequence[Sequence[Any]]) -> QueueStat:
    """Every tenant's queue of one domain as one; the domain is paused when any is."""
    stats = [stat_of(r) for r in rows]
    return QueueStat(
        domain,
        sum(s.depth for s in stats),
        sum(s.deferred for s in stats),
        min(s.oldest_at for s in stats),
        min(s.next_attempt_at for s in stats),
        any(s.paused for s in stats),
    )


def with_paused(stats: list[QueueStat], paused: Sequence[str], limit: int) -> list[QueueStat]:
    """A tenant's page of queues with its paused domains that have nothing queued."""
    seen = {s.domain for s in stats}
    extra = [QueueStat(d, 0, 0, 0.0, 0.0, True) for d in paused if d not in seen]
    if not extra:
        return stats
    return sorted(stats + extra, key=lambda s: s.domain)[:limit]
