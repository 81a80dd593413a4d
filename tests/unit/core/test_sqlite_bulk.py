"""Many rows in one statement: the same rows as one statement per row, nothing padded in."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from postline.store.sqlite.bulk import MAX_ROWS, insert_rows

_INSERT = """-- name: a comment the query loader keeps
INSERT INTO t (k, v, n, fixed) VALUES (?, ?, ?, 7)"""
_UPSERT = """INSERT INTO t (k, v, n, fixed) VALUES (?, ?, ?, 0)
ON CONFLICT (k) DO UPDATE SET n = n + excluded.n, v = excluded.v"""


def _db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v BLOB, n INTEGER, fixed INTEGER)")
    return conn


@pytest.mark.parametrize("count", [0, 1, 2, 3, 5, 1023, MAX_ROWS, MAX_ROWS + 1, 2500])
def test_every_row_is_inserted_once_and_no_padding(tmp_path: Path, count: int) -> None:
    rows = [(f"k{i}", bytes([i % 256]) * (i % 5), i if i % 3 else None) for i in range(count)]
    bulk, single = _db(tmp_path / "bulk.db"), _db(tmp_path / "single.db")
    insert_rows(bulk, _INSERT, rows)
    single.executemany(_INSERT.split("\n", 1)[1], rows)
    query = "SELECT k, v, n, fixed FROM t ORDER BY rowid"
    assert bulk.execute(query).fetchall() == single.execute(query).fetchall()
    assert bulk.execute("SELECT count(*) FROM t").fetchone() == (count,)


def test_upserts_apply_row_after_row_like_one_statement_each(tmp_path: Path) -> None:
    rows = [("a", b"1", 1), ("b", b"2", 2), ("a", b"3", 10), ("a", b"4", 100)] * 300
    bulk, single = _db(tmp_path / "bulk.db"), _db(tmp_path / "single.db")
    insert_rows(bulk, _UPSERT, rows)
    single.executemany(_UPSERT, rows)
    query = "SELECT k, v, n, fixed FROM t ORDER BY k"
    assert bulk.execute(query).fetchall() == single.execute(query).fetchall()
    assert bulk.execute(query).fetchall() == [("a", b"4", 111 * 300, 0), ("b", b"2", 600, 0)]


def test_a_row_that_would_pass_for_padding_is_refused(tmp_path: Path) -> None:
    conn = _db(tmp_path / "bulk.db")
    with pytest.raises(ValueError, match="first value is None"):
        insert_rows(conn, _INSERT, [("a", b"", 1), (None, b"", 2)])
    with pytest.raises(ValueError, match="rows of 3 values"):
        insert_rows(conn, _INSERT, [("a", b"", 1, 4)])
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_only_insert_values_queries() -> None:
    conn = sqlite3.connect(":memory:")
    with pytest.raises(ValueError, match="not an INSERT"):
        insert_rows(conn, "UPDATE t SET n = ?", [(1,)])
