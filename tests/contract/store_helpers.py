"""What the store contract tests share: builders of messages, tenants and outcomes."""

from __future__ import annotations

import time

from postline.model import EventType, RecipientState
from postline.model.ids import new_id
from postline.store import Store
from postline.store.base import (
    AttemptRecord,
    LeasedMessage,
    NewMessage,
    NewRecipient,
)

NOW = time.time()


def message(
    tenant_id: str,
    *addresses: str,
    body: bytes = b"Subject: hi\r\n\r\nhello\r\n",
    due: float | None = None,
    created: float | None = None,
) -> NewMessage:
    created = NOW if created is None else created
    return NewMessage(
        id=new_id(),
        tenant_id=tenant_id,
        mail_from="sender@example.org",
        body=body,
        recipients=[
            NewRecipient(i, a, a.rpartition("@")[2].lower()) for i, a in enumerate(addresses)
        ],
        created_at=created,
        next_attempt_at=created if due is None else due,
        expires_at=created + 86400,
        message_id_header=f"<{new_id()}@example.org>",
        subject="hi",
        tags=["t1"],
        metadata={"k": "v"},
    )


async def tenant(store: Store, name: str = "acme") -> str:
    return (await store.create_tenant(name)).id


def outcome(
    leased: LeasedMessage, state: RecipientState, event: EventType, **kw: object
) -> list[AttemptRecord]:
    return [
        AttemptRecord(
            message_id=leased.id,
            idx=r.idx,
            tenant_id=r.tenant_id,
            address=r.address,
            state=state,
            event=event,
            at=NOW,
            **kw,  # type: ignore[arg-type]
        )
        for r in leased.recipients
    ]
