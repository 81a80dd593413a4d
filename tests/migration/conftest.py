"""Fixtures of the migration tests: the session's PostgreSQL server (see support.pgserver)."""

from __future__ import annotations

from support.pgserver import pg_dsn, pg_server

__all__ = ["pg_dsn", "pg_server"]
