"""The cleaner: deletes what is past ``[retention]``, continuously, in small batches.

Each batch is one short transaction (``[retention] batch`` rows), and the cleaner yields
between batches, so ingest and delivery never wait behind it; when a kind has nothing
left to delete, the cleaner sleeps ``[retention] interval``. Every node may run it: the
deletions of two nodes on one PostgreSQL store do not conflict (a row is deleted once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable

from postline.config import RetentionConfig
from postline.store.base import RetentionStore

__all__ = ["Cleaner"]

log = logging.getLogger(__name__)


class Cleaner:
    def __init__(
        self,
        store: RetentionStore,
        config: RetentionConfig,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.clock = clock
        self.deleted: Counter[str] = Counter()
        """Rows deleted (bodies: bodies emptied) since start, per kind."""
        self.freed = 0
        """Bytes handed back to the file system since start."""
        self._freeing = False

    async def run(self) -> None:
        while True:
            try:
                busy = await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("retention round failed", extra={"action": "retention.failed"})
                busy = False
            await asyncio.sleep(0.05 if busy else self.config.interval)

    async def round(self) -> bool:
        """One batch of every kind; whether any kind had a full batch (more may wait)."""
        cfg = self.config
        now = self.clock()
        limit = cfg.batch
        kinds: list[tuple[str, Callable[[], Awaitable[int]]]] = [
            ("bodies", lambda: self.store.purge_bodies(now - cfg.bodies, limit=limit, now=now)),
            ("messages", lambda: self.store.purge_messages(now - cfg.messages, limit=limit)),
            ("events", lambda: self.store.purge_events(now - cfg.events, limit=limit)),
            ("inbound", lambda: self.store.purge_inbound(now - cfg.inbound, limit=limit)),
        ]
        busy = False
        deleted = 0
        for kind, purge in kinds:
            n = await purge()
            self.deleted[kind] += n
            deleted += n
            busy = busy or n >= limit
        if deleted or self._freeing:
            # Compaction steps follow deletions until a step finds nothing left to free.
            freed = await self.store.compact()
            self._freeing = freed > 0
            self.freed += freed
        return busy
