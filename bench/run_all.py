#!/usr/bin/env python3
"""``make bench``: every benchmark in turn; the last line of each is its figure.

* ``bench/ingest.py``  — HTTP batch ingest, recipients/s (durable), against a bare
  FastAPI/uvicorn baseline measured in the same run;
* ``bench/relay.py``   — smtp-source → postline → smtp-sink beside Postfix, interleaved
  (needs root, Debian's postfix and ../shared/bench; skipped without them);
* ``bench/bounce_accuracy.py`` — the bounce classifier on ../shared/corpus/bounces
  (skipped without it);
* ``bench/dkim.py`` — DKIM signatures/s, RSA-2048 and Ed25519, against dkimpy's own
  signing
* ``bench/fleet.py`` — 1, 2, 3 nodes on PostgreSQL + Redis beside one node on SQLite,
  with the CPU cost per message of each tier (skipped without PostgreSQL / Redis).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    finals = []
    for script, args in (
        ("ingest.py", []),
        ("relay.py", ["--rounds", "3"]),
        ("bounce_accuracy.py", []),
        ("dkim.py", []),
        ("fleet.py", []),
    ):
        print(f"== {script} {' '.join(args)}", flush=True)
        out = subprocess.run(
            [sys.executable, str(HERE / script), *args], capture_output=True, text=True, check=False
        )
        print(out.stdout, end="")
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            raise SystemExit(f"{script} failed")
        finals.append(out.stdout.strip().splitlines()[-1])
    print(" | ".join(finals))


if __name__ == "__main__":
    main()
