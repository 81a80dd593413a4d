"""Many rows into a table in one statement, not one statement per row.

Python's ``sqlite3`` releases the GIL around every step of a statement, and
``executemany`` steps once per row. The writer thread shares the GIL with the event loop:
each time it lets go, a busy loop keeps the GIL until the interpreter's switch interval
(5 ms) asks it back. ``bench/sqlite_rows.py`` writes batches of 1,000 messages (1.5 KB),
their recipients and events: row by row, 27.7 µs a recipient alone and 4,402 µs beside a
thread running Python; one statement per table, 27.7 and 54.6 µs.

So :func:`insert_rows` turns a query ``INSERT INTO t (a, b) VALUES (?, ?) [ON CONFLICT …]``
into ``INSERT INTO t (a, b) SELECT * FROM (VALUES (?, ?), (?, ?), …) WHERE column1 IS NOT
NULL [ON CONFLICT …]``: the rows in one statement, padded with rows of NULLs up to a power
of two so that a few statements (1, 2, 4, … ``MAX_ROWS`` rows) serve every batch from the
connection's statement cache (compiling one of 1,024 rows takes ~12 ms). The padding is
filtered out by the WHERE clause, which is why the first column of such a query must never
be NULL; the clause also lets an ``ON CONFLICT`` follow a SELECT.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import cache, lru_cache
from itertools import chain, repeat
from typing import Any

__all__ = ["MAX_ROWS", "insert_rows"]

MAX_ROWS = 1024  # rows one statement takes at most; more go in several statements


@cache
def _split(query: str) -> tuple[str, str, str, int]:
    """(head, row, tail, parameters a row) of ``INSERT … VALUES (row) tail``."""
    query = "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("--"))
    at = query.upper().find("VALUES")
    if at < 0 or not query.lstrip().upper().startswith("INSERT"):
        raise ValueError(f"not an INSERT … VALUES query: {query[:60]!r}")
    start = query.index("(", at)
    depth = 0
    for end in range(start, len(query)):
        depth += {"(": 1, ")": -1}.get(query[end], 0)
        if depth == 0:
            break
    row = query[start : end + 1]
    return query[:at].rstrip(), row, query[end + 1 :].strip(), row.count("?")


@lru_cache(maxsize=256)
def _statement(query: str, rows: int) -> str:
    head, row, tail, _ = _split(query)
    values = ", ".join(repeat(row, rows))
    return f"{head} SELECT * FROM (VALUES {values}) WHERE column1 IS NOT NULL {tail}".rstrip()


def _size(n: int) -> int:
    """The power of two at or above ``n`` (at most :data:`MAX_ROWS`)."""
    return min(MAX_ROWS, 1 << (n - 1).bit_length())


def insert_rows(conn: sqlite3.Connection, query: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run the one-row ``query`` (``INSERT … VALUES (?, …)``) for every row of ``rows``, in
    as few statements as :data:`MAX_ROWS` allows. A row whose first value is None is refused
    (ValueError) rather than taken for padding."""
    width = _split(query)[3]
    for start in range(0, len(rows), MAX_ROWS):
        chunk = rows[start : start + MAX_ROWS]
        size = _size(len(chunk))
        params = list(chain.from_iterable(chunk))
        if len(params) != width * len(chunk):
            raise ValueError(f"rows of {width} values expected for {query[:60]!r}")
        if None in params[::width]:
            raise ValueError(f"a row's first value is None for {query[:60]!r}")
        params.extend(repeat(None, width * (size - len(chunk))))
        conn.execute(_statement(query, size), params)
