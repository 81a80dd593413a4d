"""Fixtures of the PostgreSQL store tests: the session's server and a fresh database each."""

from __future__ import annotations

from support.pgserver import pg_dsn, pg_server

__all__ = ["pg_dsn", "pg_server"]
