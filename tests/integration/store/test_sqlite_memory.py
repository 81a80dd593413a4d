"""What SQLite holds in memory is measured (``postline_sqlite_memory_bytes``) and bounded
by the connection's cache size."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from postline.store.sqlite.core import memory_used


def test_sqlite_memory_is_counted_and_bounded_by_the_cache_size(tmp_path: Path) -> None:
    before = memory_used()
    conn = sqlite3.connect(tmp_path / "m.db")
    conn.execute("PRAGMA cache_size = -2048")  # 2 MiB
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 1000,)] * 20000)  # ~20 MB
    conn.commit()
    grown = memory_used() - before
    conn.close()
    assert 1_000_000 < grown < 4_000_000, grown
