"""A SQLite store shared by a node's workers leases in short transactions: the answer is
the same as one call's, in the order asked."""

from __future__ import annotations

import time
from pathlib import Path

from postline.model.ids import new_id
from postline.store.base import LeaseRequest, NewMessage, NewRecipient
from postline.store.sqlite.backend import SQLiteStore


async def test_a_chunked_lease_answers_every_request_in_order(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "p.db", lease_chunk=2)
    await store.open()
    try:
        tenant = await store.create_tenant("acme")
        now = time.time()
        domains = [f"d{i}.test" for i in range(5)]
        messages = [
            NewMessage(
                id=new_id(),
                tenant_id=tenant.id,
                mail_from="s@postline.test",
                body=b"Subject: x\r\n\r\nhi\r\n",
                recipients=[NewRecipient(k, f"u{k}@{d}", d) for k in range(i + 1)],
                created_at=now,
                next_attempt_at=now - 1,
                expires_at=now + 3600,
                source="api",
                message_id_header=f"<{new_id()}@postline.test>",
                subject="x",
            )
            for i, d in enumerate(domains)
        ]
        await store.enqueue(messages)
        requests = [LeaseRequest(tenant.id, d, 3) for d in reversed(domains)]
        got = await store.lease_many(requests, now=time.time(), lease_time=60, owner="w.0")
        assert [(q.domain, q.count) for q in got] == [
            ("d4.test", 3), ("d3.test", 3), ("d2.test", 3), ("d1.test", 2), ("d0.test", 1)
        ]  # fmt: skip
        assert [q.drained for q in got] == [False, False, False, True, True]
    finally:
        await store.close()
