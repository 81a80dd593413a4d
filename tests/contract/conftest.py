"""Backends under contract. Each parameter builds a fresh, empty store.

``postgres`` runs on the session's throwaway server (``support.pgserver``), one new database
per test; it skips without PostgreSQL binaries, except under ``CI`` where it fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from postline.store import Store
from postline.store.sqlite.backend import SQLiteStore
from support.pgserver import PgServer, pg_server

__all__ = ["pg_server"]


@contextlib.asynccontextmanager
async def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    store = SQLiteStore(tmp_path / "postline.db")
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    from postline.store.postgres.backend import PostgresStore

    server: PgServer = request.getfixturevalue("pg_server")
    dsn = await server.create_postline_database()
    store = PostgresStore(dsn, node_id="contract")
    try:
        await store.open()
        yield store
    finally:
        await store.close()
        await server.drop_database(dsn)


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager[Store]]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with BACKENDS[request.param](request, tmp_path) as s:
        yield s
