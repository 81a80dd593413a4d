"""A node with deferred mail and nothing due sleeps.

The work of waking domains must follow what is due, not the number of queued domains:
with 20,000 deferred domains and nothing due for an hour, the node uses no more CPU than
the same node with an empty queue (whose own share, the HTTP server's clock ticks and
periodic housekeeping, depends on the machine: it is measured, not assumed).
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from postline.model.ids import new_id
from postline.store.base import NewMessage, NewRecipient
from support.node import running_node


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_idle_node_with_deferred_mail_uses_little_cpu(tmp_path: Path) -> None:
    extra = f"""
[delivery]
helo_hostname = "node.postline.test"
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = {_closed_port()}
"""
    async with running_node(tmp_path, extra) as node:
        tenant = await node.store.create_tenant("acme")
        await asyncio.sleep(1.5)
        empty = await _cpu_share(4.0)
        now = time.time()
        messages = [
            NewMessage(
                id=new_id(),
                tenant_id=tenant.id,
                mail_from="sender@postline.test",
                body=b"Subject: x\r\n\r\nhi\r\n",
                recipients=[NewRecipient(0, f"u@d{i:05d}.test", f"d{i:05d}.test")],
                created_at=now,
                next_attempt_at=now + 3600,  # deferred: nothing due for an hour
                expires_at=now + 86400,
                source="api",
                message_id_header=f"<{new_id()}@postline.test>",
                subject="x",
            )
            for i in range(20_000)
        ]
        for i in range(0, len(messages), 5000):
            await node.store.enqueue(messages[i : i + 5000])
        await asyncio.sleep(1.5)
        deep = await _cpu_share(4.0)
        assert deep - empty < 0.01, (
            f"with 20,000 deferred domains the node used {deep:.1%} of a core, "
            f"{empty:.1%} with an empty queue"
        )
        assert deep < 0.05, f"idle node used {deep:.1%} of a core"


async def _cpu_share(seconds: float) -> float:
    """The share of one core this process used over the next `seconds`."""
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    return (time.process_time() - cpu0) / (time.monotonic() - wall0)
