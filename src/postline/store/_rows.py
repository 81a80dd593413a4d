"""Records built from rows the same way by every backend: by position where the queries
select the same columns in the same order (the hot lease path), by column name elsewhere."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from postline.model import RecipientState
from postline.model.ids import new_id
from postline.store.base import (
    ApiKey,
    AuditEntry,
    Event,
    KeyIdentity,
    LeasedMessage,
    LeasedRecipient,
    LimitOverrides,
    MessageView,
    QueueStat,
    RecipientView,
    Tenant,
)

__all__ = [
    "NamedRow",
    "api_key_of",
    "audit_entry_of",
    "event_of",
    "group_leased",
    "key_identity_of",
    "limits_of",
    "message_view_of",
    "new_api_key",
    "recipient_view_of",
    "scopes_text",
    "stat_of",
    "sum_stats",
    "with_paused",
]


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


class NamedRow(Protocol):
    """A row whose columns are read by name (``sqlite3.Row``, ``asyncpg.Record``)."""

    def __getitem__(self, key: str, /) -> Any: ...


def event_of(row: NamedRow) -> Event:
    """An event from the columns of the ``events`` queries (``data`` as JSON text)."""
    return Event(
        id=row["id"],
        at=row["at"],
        tenant_id=row["tenant_id"],
        type=row["type"],
        message_id=row["message_id"],
        recipient_idx=row["recipient_idx"],
        recipient=row["recipient"],
        node_id=row["node_id"],
        data=json.loads(row["data"]),
    )


def audit_entry_of(row: NamedRow) -> AuditEntry:
    """An audit log entry from the columns of ``audit_entries`` (``detail`` as JSON text)."""
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        actor_kind=row["actor_kind"],
        actor_id=row["actor_id"],
        tenant_id=row["tenant_id"],
        action=row["action"],
        target=row["target"],
        request_id=row["request_id"],
        detail=json.loads(row["detail"]),
    )


def recipient_view_of(row: NamedRow, now: float) -> RecipientView:
    """A recipient as ``get_message`` shows it (leased: queued with a live lease)."""
    state = RecipientState(row["state"])
    queued = state is RecipientState.QUEUED
    leased = row["lease_owner"] is not None and (row["lease_expires_at"] or 0) > now
    return RecipientView(
        idx=row["idx"],
        address=row["address"],
        domain=row["domain"],
        state=state,
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"] if queued else None,
        expires_at=row["expires_at"],
        updated_at=row["updated_at"],
        last_code=row["last_code"],
        last_enhanced=row["last_enhanced"],
        last_text=row["last_text"],
        last_mx=row["last_mx"],
        leased=leased and queued,
    )


def message_view_of(row: NamedRow, recipients: list[RecipientView]) -> MessageView:
    """A message from the ``get_message`` columns (``tags``, ``metadata`` as JSON text)."""
    return MessageView(
        id=row["id"],
        tenant_id=row["tenant_id"],
        created_at=row["created_at"],
        mail_from=row["mail_from"],
        subject=row["subject"],
        message_id_header=row["message_id_header"],
        source=row["source"],
        stream=row["stream"],
        size=row["size"],
        tags=json.loads(row["tags"]),
        metadata=json.loads(row["metadata"]),
        body_deleted_at=row["purged_at"],
        recipients=recipients,
    )


def scopes_text(scopes: Iterable[str] | None) -> str | None:
    """A key's scopes as stored: sorted, separated by spaces; None (every scope) as is."""
    return None if scopes is None else " ".join(sorted(set(scopes)))


def new_api_key(
    tenant_id: str,
    prefix: str,
    name: str,
    scopes: Iterable[str] | None,
    rate: int | None = None,
    burst: int | None = None,
) -> tuple[ApiKey, str | None]:
    """A key about to be stored (new id, created now), and its scopes as stored."""
    text = scopes_text(scopes)
    key = ApiKey(
        id=new_id(),
        tenant_id=tenant_id,
        prefix=prefix,
        created_at=time.time(),
        name=name,
        scopes=_scopes_of(text),
        rate=rate,
        burst=burst,
    )
    return key, text


def _scopes_of(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(text.split())


def api_key_of(row: Sequence[Any]) -> ApiKey:
    """From (id, tenant_id, prefix, created_at, name, scopes, last_used_at, revoked_at,
    rate_limit, rate_burst)."""
    return ApiKey(
        row[0], row[1], row[2], row[3], row[4], _scopes_of(row[5]), row[6], row[7], row[8], row[9]
    )


def key_identity_of(row: Sequence[Any]) -> KeyIdentity:
    """From (tenant id, name, created_at, key id, prefix, scopes, last_used_at, rate_limit,
    rate_burst)."""
    return KeyIdentity(
        Tenant(row[0], row[1], row[2]),
        row[3],
        row[4],
        _scopes_of(row[5]),
        row[6],
        row[7],
        row[8],
    )


def limits_of(row: Sequence[Any]) -> tuple[str, LimitOverrides]:
    """From (tenant id, rate_limit, rate_burst, daily_quota, monthly_quota)."""
    return row[0], LimitOverrides(row[1], row[2], row[3], row[4])
