"""Due mail is found in every domain, however many domains are queued.

The queue scan pages through all queued domains; due mail in a domain that sorts after
thousands of domains holding only later mail is still sent.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

from postline.model.ids import new_id
from postline.store.base import NewMessage, NewRecipient
from support.node import running_node, wait_for


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _message(tenant: str, address: str, due: float, now: float) -> NewMessage:
    domain = address.rpartition("@")[2]
    return NewMessage(
        id=new_id(),
        tenant_id=tenant,
        mail_from="sender@postline.test",
        body=b"Subject: x\r\n\r\nhi\r\n",
        recipients=[NewRecipient(0, address, domain)],
        created_at=now,
        next_attempt_at=due,
        expires_at=due + 86400,
        source="api",
        message_id_header=f"<{new_id()}@postline.test>",
        subject="x",
    )


async def test_due_domain_after_10000_scheduled_domains_is_attempted(tmp_path: Path) -> None:
    extra = f"""
[delivery]
helo_hostname = "node.postline.test"
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = {_closed_port()}
[retry]
first = "1h"
[queue]
scan_interval = "100ms"
"""
    async with running_node(tmp_path, extra) as node:
        tenant = await node.store.create_tenant("acme")
        now = time.time()
        # 10,000 domains whose mail is scheduled for tomorrow (sorting before "zz")...
        later = [_message(tenant.id, f"u@a{i:05d}.test", now + 86400, now) for i in range(10_000)]
        for i in range(0, len(later), 2000):
            await node.store.enqueue(later[i : i + 2000])
        # ... and one due in a second. Stored directly, so only the scanner can find it.
        soon = _message(tenant.id, "u@zz.test", now + 1.0, now)
        await node.store.enqueue([soon])

        async def attempted() -> bool:
            view = await node.store.get_message(tenant.id, soon.id)
            assert view is not None
            return view.recipients[0].attempts > 0

        # The route refuses connections: the first attempt defers within a second or two
        # (scans of 10,000 queues pace themselves, so a loaded machine takes longer).
        await wait_for(attempted, timeout=20)
