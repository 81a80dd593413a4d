"""PostgreSQL store: an enqueue call waiting for the group commit (see
:mod:`postline.store.postgres.ingest`), flattened into the columns of its statement."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from postline.model import EventType, RecipientState
from postline.store.announce import due_of
from postline.store.base import IdempotencyClaim, IdempotencyRecord, NewMessage, Quota
from postline.store.usage import counted, day_of

__all__ = ["_Enqueue", "_Retry"]


class _Retry:
    """The claim lost to a key that was purged before it could be read."""


class _Enqueue:
    """One enqueue call, flattened into the columns of the ``enqueue`` statement."""

    __slots__ = (
        "claim",
        "claim_key",
        "day",
        "due_at",
        "due_now",
        "future",
        "m_cols",
        "quota",
        "r_cols",
        "rows",
        "usage",
    )

    def __init__(
        self,
        messages: Sequence[NewMessage],
        idempotency: IdempotencyClaim | None,
        tenant_id: str | None,
        node_id: str,
        leased: Mapping[str, Collection[int]] | None,
        lease_until: float,
        quota: Quota | None = None,
    ) -> None:
        self.future: asyncio.Future[IdempotencyRecord | None]
        self.quota = quota
        self.usage = {tenant: n for tenant, n in counted(messages).items() if n}
        """Recipients the call adds to each tenant's usage of ``day``."""
        self.day = day_of(messages[0].created_at) if messages else ""
        self.claim = idempotency
        self.claim_key = (str(tenant_id), idempotency.key) if idempotency is not None else None
        self.m_cols: list[list[Any]] = [[] for _ in range(12)]
        self.r_cols: list[list[Any]] = [[] for _ in range(14)]
        for m in messages:
            for col, value in zip(
                self.m_cols,
                (
                    m.id,
                    m.tenant_id,
                    m.created_at,
                    m.mail_from,
                    m.message_id_header,
                    m.subject,
                    m.source,
                    m.stream,
                    json.dumps(list(m.tags)),
                    json.dumps(m.metadata),
                    len(m.body),
                    m.body,
                ),
                strict=True,
            ):
                col.append(value)
            data: dict[str, Any] = {"source": m.source}
            if m.next_attempt_at > m.created_at + 1:
                data["send_at"] = m.next_attempt_at
            encoded = json.dumps(data)
            direct = leased.get(m.id, ()) if leased else ()
            for r in m.recipients:
                owned = r.idx in direct
                suppressed = r.suppressed is not None
                for col, value in zip(
                    self.r_cols,
                    (
                        m.id,
                        r.idx,
                        m.tenant_id,
                        r.address,
                        r.domain,
                        m.created_at,
                        lease_until if owned else m.next_attempt_at,
                        m.expires_at,
                        node_id if owned else None,
                        lease_until if owned else None,
                        json.dumps({**data, "reason": r.suppressed}) if suppressed else encoded,
                        node_id,
                        RecipientState.SUPPRESSED.value if suppressed else "queued",
                        EventType.SUPPRESSED.value if suppressed else EventType.ACCEPTED.value,
                    ),
                    strict=True,
                ):
                    col.append(value)
        self.due_now, self.due_at = due_of(messages, leased)
        self.rows = len(self.m_cols[0]) + len(self.r_cols[0])
