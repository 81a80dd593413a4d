"""PostgreSQL store: one class that plays every role of :class:`postline.store.base.Store`.

Each role is written in its own module over :class:`~postline.store.postgres.core.PostgresCore`
(the connection pool, retries and error mapping, the LISTEN connections and the fold of count
deltas: see :mod:`postline.store.postgres.core`; the queue role builds on ingest,
:mod:`postline.store.postgres.ingest`); this module only puts them together.
"""

from __future__ import annotations

from postline.store.postgres.control import PostgresControl
from postline.store.postgres.core import NOTIFY_CHANNEL, DueCallback, migrations, schema_version
from postline.store.postgres.domains import PostgresDomains
from postline.store.postgres.events import PostgresEvents
from postline.store.postgres.inbound import PostgresInbound
from postline.store.postgres.queue import PostgresQueue
from postline.store.postgres.reputation import PostgresReputation
from postline.store.postgres.retention import PostgresRetention
from postline.store.postgres.suppressions import PostgresSuppressions
from postline.store.postgres.tenants import PostgresTenants
from postline.store.postgres.webhooks import PostgresWebhooks

__all__ = ["NOTIFY_CHANNEL", "DueCallback", "PostgresStore", "migrations", "schema_version"]


class PostgresStore(
    PostgresTenants,
    PostgresQueue,
    PostgresWebhooks,
    PostgresEvents,
    PostgresSuppressions,
    PostgresInbound,
    PostgresReputation,
    PostgresDomains,
    PostgresRetention,
    PostgresControl,
):
    """The fleet store (see :mod:`postline.store.postgres.core`): every role, on one
    connection pool."""
