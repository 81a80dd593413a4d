#!/usr/bin/env python3
"""The store's enqueue rows written one statement per row vs one per table, beside an
idle and a busy thread.

Python's ``sqlite3`` lets go of the GIL around every step of a statement; ``executemany``
steps once per row. With another thread running Python, the writer waits up to the
interpreter's switch interval for the GIL after each row. This writes batches of 1,000
messages (1.5 KB bodies), their recipients and ``accepted`` events into a file with the
store's schema, with ``executemany`` and with ``store/sqlite/bulk.insert_rows``, each
with no other thread and beside a thread spinning in Python.

    .venv/bin/python bench/sqlite_rows.py [--batches 30]

Final line: ``sqlite_rows executemany_idle=…us executemany_busy=…us bulk_idle=…us
bulk_busy=…us`` (microseconds per recipient: message, recipient and event rows).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path

from postline.model.ids import new_id
from postline.store.queries import load_queries
from postline.store.sqlite.bulk import insert_rows

_Q = load_queries("postline.store.sqlite")
_SCHEMA = resources.files("postline.store.sqlite").joinpath("schema.sql").read_text()


def run(path: Path, batches: int, *, bulk: bool, busy: bool) -> float:
    """Microseconds per recipient."""
    conn = sqlite3.connect(path, isolation_level=None, cached_statements=256)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.executescript(_SCHEMA)
    body = os.urandom(1500)
    stop = threading.Event()

    def spin() -> None:
        n = 0
        while not stop.is_set():
            n += 1

    spinner = threading.Thread(target=spin, daemon=True)
    if busy:
        spinner.start()
    spent = 0.0
    n = 0
    for _ in range(batches):
        now = time.time()
        ids = [new_id() for _ in range(1000)]
        messages = [
            (i, "t1", now, "a@shop.example", f"<{i}@shop.example>", "Hi", "api", "default",
             '["orders"]', "{}", len(body), body)
            for i in ids
        ]  # fmt: skip
        recipients = [
            (i, 0, "t1", f"c{n + k}@d{(n + k) % 50}.example", f"d{(n + k) % 50}.example",
             "queued", now, now, now + 86400, now, None, None)
            for k, i in enumerate(ids)
        ]  # fmt: skip
        events = [
            (now, "t1", "accepted", i, 0, f"c{n + k}@x", "node", '{"source":"api"}')
            for k, i in enumerate(ids)
        ]
        n += len(ids)
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        for query, rows in (
            (_Q["insert_message"], messages),
            (_Q["insert_recipient"], recipients),
            (_Q["insert_event"], events),
        ):
            if bulk:
                insert_rows(conn, query, rows)
            else:
                conn.executemany(query, rows)
        conn.execute("COMMIT")
        spent += time.perf_counter() - t0
    stop.set()
    conn.close()
    return spent / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=30)
    args = ap.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory(prefix="postline-rows-") as tmp:
        for bulk in (False, True):
            for busy in (False, True):
                name = f"{'bulk' if bulk else 'executemany'}_{'busy' if busy else 'idle'}"
                # Row by row beside a busy thread takes milliseconds a row: fewer batches.
                batches = 2 if busy and not bulk else args.batches
                figures[name] = run(Path(tmp) / f"{name}.db", batches, bulk=bulk, busy=busy)
                print(f"{name}: {figures[name]:.1f} us per recipient ({batches} batches)")
    print("sqlite_rows " + " ".join(f"{k}={v:.1f}us" for k, v in figures.items()))


if __name__ == "__main__":
    main()
