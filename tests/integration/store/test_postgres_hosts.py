"""A store URL naming several hosts: connections go to the first host that answers and
matches ``target_session_attrs``, through one that refuses or is read-only; when none
does, the store is unavailable with every host's reason."""

from __future__ import annotations

import asyncpg
import pytest

from postline.errors import StoreUnavailable
from postline.store.postgres.backend import PostgresStore
from support.node import free_port
from support.pgserver import PgServer


def _db(dsn: str) -> str:
    return dsn.rsplit("/", 1)[1]


async def test_the_first_usable_host_is_taken(pg_server: PgServer, pg_dsn: str) -> None:
    closed = free_port()  # nothing listens there: refused
    url = (
        f"postgresql://{pg_server.user}@127.0.0.1:{closed},{pg_server.host}:{pg_server.port}/"
        f"{_db(pg_dsn)}?target_session_attrs=read-write&connect_timeout=2"
    )
    store = PostgresStore(url, node_id="multi")
    await store.open()
    try:
        tenant = await store.create_tenant("acme")
        assert (await store.get_tenant(id=tenant.id)) is not None
        seen: list[object] = []
        await store.listen_due(lambda queues: seen.append(queues))
    finally:
        await store.close()


async def test_a_read_only_host_is_passed_over_and_none_usable_is_unavailable(
    pg_server: PgServer, pg_dsn: str
) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        # A database that only takes reads stands for a standby here.
        ro = f"ro_{_db(pg_dsn)}"[:60]
        await conn.execute(f'CREATE DATABASE "{ro}"')
        await conn.execute(f'ALTER DATABASE "{ro}" SET default_transaction_read_only = on')
    finally:
        await conn.close()
    host = f"{pg_server.host}:{pg_server.port}"
    closed = free_port()
    url = (
        f"postgresql://{pg_server.user}@127.0.0.1:{closed},{host}/{ro}"
        "?target_session_attrs=read-write&connect_timeout=2"
    )
    store = PostgresStore(url)
    with pytest.raises(StoreUnavailable) as caught:
        await store.open()
    text = str(caught.value)
    assert f"127.0.0.1:{closed}: " in text and f"{host}: not read-write" in text, text
    await pg_server.drop_database(f"postgresql://x/{ro}")
