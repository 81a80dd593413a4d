"""SQLite: a fresh schema equals version 1 upgraded by every migration.

The base is ``sqlite_schema_v1.sql`` beside this file: schema.sql as version 1 shipped,
frozen. The upgrade runs through ``SQLiteStore.open()`` itself (it applies
``migrations/NNNN_*.sql`` above the file's ``user_version``). Until the first migration
exists (schema.sql still at ``user_version = 1``) there is nothing to compare and the test
skips.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from postline.store.sqlite.backend import SQLiteStore, schema_version

V1 = Path(__file__).with_name("sqlite_schema_v1.sql")


def _normalise(sql: str | None) -> str:
    """SQL text without comments and with whitespace that does not matter removed."""
    if sql is None:
        return ""
    sql = re.sub(r"--[^\n]*", "", sql)
    sql = re.sub(r"\s+", " ", sql).strip().lower()
    return re.sub(r"\s*([(),=])\s*", r"\1", sql)


def catalog(path: Path) -> dict[str, Any]:
    """Structure of a database: tables, columns, indexes, foreign keys, version."""
    conn = sqlite3.connect(path)
    try:
        out: dict[str, Any] = {
            "version": conn.execute("PRAGMA user_version").fetchone()[0],
            "objects": sorted(
                (type_, name, tbl, _normalise(sql))
                for type_, name, tbl, sql in conn.execute(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master"
                    " WHERE name NOT LIKE 'sqlite_%'"
                )
            ),
        }
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in sorted(tables):
            out[f"{table}.columns"] = conn.execute(f"PRAGMA table_xinfo('{table}')").fetchall()
            out[f"{table}.foreign_keys"] = conn.execute(
                f"PRAGMA foreign_key_list('{table}')"
            ).fetchall()
            indexes = sorted(conn.execute(f"PRAGMA index_list('{table}')").fetchall())
            out[f"{table}.indexes"] = indexes
            for index in indexes:
                out[f"{index[1]}.keys"] = conn.execute(
                    f"PRAGMA index_xinfo('{index[1]}')"
                ).fetchall()
        return out
    finally:
        conn.close()


async def test_fresh_schema_equals_migrated(tmp_path: Path) -> None:
    if schema_version() == 1:
        pytest.skip(
            "no SQLite migration yet: add src/postline/store/sqlite/migrations/0002_<what>.sql"
            " and raise schema.sql's user_version to 2"
        )
    fresh_path = tmp_path / "fresh.db"
    fresh = SQLiteStore(fresh_path)
    await fresh.open()
    await fresh.close()

    migrated_path = tmp_path / "migrated.db"
    conn = sqlite3.connect(migrated_path)
    conn.executescript(V1.read_text(encoding="utf-8"))
    conn.close()
    old = catalog(migrated_path)
    assert old["version"] == 1
    migrated = SQLiteStore(migrated_path)
    await migrated.open()
    await migrated.close()

    want, got = catalog(fresh_path), catalog(migrated_path)
    assert set(got) == set(want)
    for part in want:
        assert got[part] == want[part], f"{part} differs between fresh and migrated"
    assert old != want
    assert want["version"] == schema_version()


async def test_upgrade_keeps_the_queue_and_counts_it(tmp_path: Path) -> None:
    """Mail queued under version 1 is due, counted and viewable once upgraded (version 6
    counts it, version 7 stores it in queue order)."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript(V1.read_text(encoding="utf-8"))
    conn.execute(
        "INSERT INTO messages VALUES ('m1', 't', 1.0, 'a@x.test', '<m1@x.test>', 's', 'api',"
        " 'transactional', '[]', '{}', 3, X'616263')"
    )
    rows = [
        ("m1", 0, "t", "a@one.test", "one.test", "queued", 0, 1.0, 5.0),
        ("m1", 1, "t", "b@one.test", "one.test", "queued", 2, 1.0, 9.0),
        ("m1", 2, "t", "c@two.test", "two.test", "delivered", 1, 1.0, 1.0),
    ]
    conn.executemany(
        "INSERT INTO recipients (message_id, idx, tenant_id, address, domain, state, attempts,"
        " created_at, next_attempt_at, expires_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,1e12,1)",
        rows,
    )
    conn.commit()
    conn.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert await store.state_counts() == {"queued": 2, "delivered": 1}
        [due] = await store.due_queues(owner="n")
        assert (due.tenant_id, due.domain, due.next_attempt_at) == ("t", "one.test", 5.0)
        [one] = await store.queue_stats("t")
        assert (one.domain, one.depth, one.deferred, one.oldest_at) == ("one.test", 2, 1, 1.0)
        view = await store.get_message("t", "m1")
        assert view is not None
        assert [r.address for r in view.recipients] == ["a@one.test", "b@one.test", "c@two.test"]
        [leased] = await store.lease("one.test", now=10.0, limit=10, lease_time=30, owner="n")
        assert [r.idx for r in leased.recipients] == [0, 1] and leased.body == b"abc"
    finally:
        await store.close()
