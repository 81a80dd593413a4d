"""Durable state: the ``Store`` interface and its backends."""

from __future__ import annotations

from typing import TYPE_CHECKING

from postline.errors import ConfigError
from postline.store.base import Store

if TYPE_CHECKING:
    from postline.config import Config

__all__ = ["Store", "create_store"]


_SHARED_LEASE_CHUNK = 8  # queues per lease transaction when workers share a SQLite file


def create_store(config: Config) -> Store:
    """The backend named by ``config.store``."""
    if config.store == "sqlite" or config.store.startswith("sqlite:///"):
        from postline.store.sqlite.backend import SQLiteStore

        return SQLiteStore(
            config.sqlite_path,
            synchronous=config.sqlite.synchronous,
            max_batch=config.sqlite.max_batch,
            # The workers of a node write to one file: short lease transactions keep
            # their waits for each other short (see SQLiteQueue.lease_many).
            lease_chunk=_SHARED_LEASE_CHUNK if config.worker_count > 1 else 0,
        )
    if config.store.startswith(("postgresql://", "postgres://")):
        from postline.store.postgres.backend import PostgresStore

        return PostgresStore(
            config.store,
            node_id=config.node_name,
            event_partition=config.retention.event_partition,
        )
    raise ConfigError(
        f"store {config.store!r} is not supported; use 'sqlite', 'sqlite:///path/to/db' or "
        "'postgresql://user:password@host:port/database'"
    )
