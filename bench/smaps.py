#!/usr/bin/env python3
"""Where a node's worker processes keep their memory, from /proc/PID/smaps.

For each child of ``PID`` (a node's supervisor: its workers), the resident kB of its
main malloc heap (``[heap]``), of anonymous mappings larger than 1 MiB (glibc's thread
arenas and Python's object arenas, which the kernel merges), of smaller anonymous
mappings, and of mapped files. Run it at intervals beside ``bench/soak.py`` to see which
part grows.

    .venv/bin/python bench/smaps.py PID

Final line: ``smaps <pid> heap=…M anon-big=…M anon-small=…M files=…M`` for the last worker.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_RANGE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$")


def kinds(pid: int) -> Counter[str]:
    """Resident kB of ``pid`` by kind of mapping."""
    out: Counter[str] = Counter()
    kind = "files"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        m = _RANGE.match(line)
        if m:
            size = int(m.group(2), 16) - int(m.group(1), 16)
            name = m.group(3).strip()
            if name == "[heap]":
                kind = "heap"
            elif name:
                kind = "files"
            else:
                kind = "anon-big" if size > 1 << 20 else "anon-small"
        elif line.startswith("Rss:"):
            out[kind] += int(line.split()[1])
    return out


def main() -> None:
    root = int(sys.argv[1])
    children = Path(f"/proc/{root}/task/{root}/children").read_text().split()
    for pid in children:
        c = kinds(int(pid))
        kinds_shown = ("heap", "anon-big", "anon-small", "files")
        parts = " ".join(f"{k}={c[k] // 1024}M" for k in kinds_shown)
        print(f"smaps {pid} {parts}")


if __name__ == "__main__":
    main()
