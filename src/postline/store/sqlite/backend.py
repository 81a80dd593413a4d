"""SQLite store: one class that plays every role of :class:`postline.store.base.Store`.

Each role is written in its own module over :class:`~postline.store.sqlite.core.SQLiteCore`
(the writer thread with its lanes and group commit, and the reader pool: see
:mod:`postline.store.sqlite.core`); this module only puts them together.
"""

from __future__ import annotations

from postline.store.sqlite.control import SQLiteControl
from postline.store.sqlite.core import schema_version
from postline.store.sqlite.domains import SQLiteDomains
from postline.store.sqlite.events import SQLiteEvents
from postline.store.sqlite.inbound import SQLiteInbound
from postline.store.sqlite.queue import SQLiteQueue
from postline.store.sqlite.reputation import SQLiteReputation
from postline.store.sqlite.retention import SQLiteRetention
from postline.store.sqlite.suppressions import SQLiteSuppressions
from postline.store.sqlite.tenants import SQLiteTenants
from postline.store.sqlite.webhooks import SQLiteWebhooks

__all__ = ["SQLiteStore", "schema_version"]


class SQLiteStore(
    SQLiteTenants,
    SQLiteQueue,
    SQLiteEvents,
    SQLiteSuppressions,
    SQLiteInbound,
    SQLiteReputation,
    SQLiteDomains,
    SQLiteWebhooks,
    SQLiteRetention,
    SQLiteControl,
):
    """The embedded store (see module docstring): every role, on one writer and one
    reader pool."""
