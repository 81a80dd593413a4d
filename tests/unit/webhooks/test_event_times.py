"""Event times are written exactly as datetime writes them, however they are cached."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from postline.events import iso


def _reference(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def test_iso_matches_datetime() -> None:
    rng = random.Random(5)
    edges = [0.0, 1.0, 1.9995, 1.9999996, 1765101600.0, 1765101600.9999995, 1765101599.0005]
    values = edges + [rng.uniform(0, 4_000_000_000) for _ in range(20_000)]
    values += [1765101600 + rng.random() * 3 for _ in range(5_000)]  # runs of one second
    for ts in values:
        assert iso(ts) == _reference(ts), ts
    assert iso(None) is None
