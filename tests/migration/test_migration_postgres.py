"""PostgreSQL: a fresh schema equals one built by the migrations, and upgrades keep data."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest

from postline.errors import StoreError
from postline.model import EventType
from postline.store.base import EventQuery, NewEvent
from postline.store.postgres.backend import PostgresStore, migrations, schema_version
from support.pgserver import PgServer

CATALOG = {
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, pg_get_partkeydef(c.oid),
               pg_get_expr(c.relpartbound, c.oid),
               (SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
                WHERE i.inhrelid = c.oid)
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
        ORDER BY c.relname
    """,
    "columns": """
        SELECT c.relname,
               row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
               a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
               pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
               a.attstorage, a.attcompression
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
          AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' ORDER BY tablename, indexname
    """,
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
        ORDER BY 1, 2
    """,
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, cycle
        FROM pg_sequences WHERE schemaname = 'public' ORDER BY 1
    """,
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_functiondef(p.oid)
        FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace ORDER BY 1, 2
    """,
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid)
        FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1, 2
    """,
    "version": "SELECT version FROM postline_schema",
}


async def catalog(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {name: [tuple(r) for r in await conn.fetch(sql)] for name, sql in CATALOG.items()}
    finally:
        await conn.close()


async def install_version(dsn: str, version: int) -> None:
    """Build the schema as it was at ``version`` by running the migrations up to it."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for number, sql in migrations():
                if number <= version:
                    await conn.execute(sql)
                    await conn.execute("UPDATE postline_schema SET version = $1", number)
    finally:
        await conn.close()


def test_migrations_are_numbered_without_gaps() -> None:
    numbers = [n for n, _ in migrations()]
    assert numbers == list(range(1, len(numbers) + 1))
    assert numbers[-1] == schema_version()
    assert len(numbers) >= 2, "at least one real upgrade must be under test"


async def test_fresh_schema_equals_migrated(pg_server: PgServer) -> None:
    fresh_dsn = await pg_server.create_database()
    migrated_dsn = await pg_server.create_database()
    try:
        fresh = PostgresStore(fresh_dsn)
        await fresh.open()
        await fresh.close()
        await install_version(migrated_dsn, 1)
        old = await catalog(migrated_dsn)
        migrated = PostgresStore(migrated_dsn)  # open() applies migrations 2..N
        await migrated.open()
        await migrated.close()
        want, got = await catalog(fresh_dsn), await catalog(migrated_dsn)
        for part in CATALOG:
            assert got[part] == want[part], f"{part} differ between fresh and migrated"
        assert old != want  # the upgrade under test changes something
        assert want["version"] == [(schema_version(),)]
        partitions = [r for r in want["relations"] if r[5] == "recipients"]
        assert len(partitions) == 16
        assert all("modulus 16" in r[4].lower() for r in partitions)
    finally:
        await pg_server.drop_database(fresh_dsn)
        await pg_server.drop_database(migrated_dsn)


async def test_upgrade_keeps_queued_mail_due(pg_dsn: str) -> None:
    """Mail queued under version 1 is found by due_queues once upgraded, and counted
    (0007's backfill)."""
    await install_version(pg_dsn, 1)
    now = time.time()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute(
            "INSERT INTO recipients (message_id, idx, tenant_id, address, domain, state,"
            " created_at, next_attempt_at, expires_at, updated_at)"
            " VALUES ('m1', 0, 't', 'a@old.test', 'old.test', 'queued',"
            "         $1::float8, $1, $1 + 60, $1),"
            "        ('m1', 1, 't', 'b@done.test', 'done.test', 'delivered', $1, $1, $1, $1)",
            now,
        )
    finally:
        await conn.close()
    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        [due] = await store.due_queues(owner="n")
        assert (due.tenant_id, due.domain) == ("t", "old.test")
        assert due.next_attempt_at == pytest.approx(now)
        assert await store.state_counts() == {"queued": 1, "delivered": 1}
        assert [(s.domain, s.depth) for s in await store.queue_stats("t")] == [("old.test", 1)]
    finally:
        await store.close()


async def test_a_newer_schema_is_refused(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    await store.open()
    await store.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("UPDATE postline_schema SET version = version + 1")
    finally:
        await conn.close()
    with pytest.raises(StoreError, match="newer"):
        await PostgresStore(pg_dsn).open()


async def test_nodes_starting_together_install_once(pg_dsn: str) -> None:
    stores = [PostgresStore(pg_dsn, min_size=1, max_size=2) for _ in range(4)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        tenant = await stores[0].create_tenant("acme")
        assert await stores[3].get_tenant(name="acme") == tenant
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    assert (await catalog(pg_dsn))["version"] == [(schema_version(),)]


async def test_upgrade_turns_the_event_log_into_partitions(pg_dsn: str) -> None:
    """0009: existing events become one partition (readable, ids go on), dropped whole
    once past retention."""
    await install_version(pg_dsn, 8)
    now = time.time()
    conn = await asyncpg.connect(pg_dsn)
    try:
        for i in range(3):
            await conn.execute(
                "INSERT INTO events (at, tenant_id, type, data) VALUES ($1, 't', 'accepted', '{}')",
                now - 100 + i,
            )
    finally:
        await conn.close()
    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        old = await store.events(EventQuery("t", limit=10))
        assert [e.id for e in old] == [1, 2, 3]
        await store.append_events([NewEvent(now + 1, "t", EventType.ACCEPTED, None, None, None)])
        assert [e.id for e in await store.events(EventQuery("t", after=3, limit=10))] == [4]
        # The old log ends at the upgrade: past it, it is dropped whole.
        await store.purge_events(time.time() + 1, limit=10)
        left = await store.events(EventQuery("t", limit=10))
        assert [e.id for e in left] == [4]
    finally:
        await store.close()
