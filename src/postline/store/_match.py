"""Walking one queue's queued recipients a bounded page at a time, selecting those whose
message matches a stream or tag (operators' retry-now and bounce by stream or tag)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from postline.store.base import MessageMatch, QueueCursor

__all__ = ["select_page"]


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        value = json.loads(value)
    return [str(t) for t in value or ()]


def select_page(
    rows: Sequence[Sequence[Any]], match: MessageMatch, limit: int
) -> tuple[list[tuple[str, int]], QueueCursor | None]:
    """From one page of (created_at, message id, index, leased, stream, tags) rows: the
    (message id, index) of the recipients not leased whose message ``match`` selects, and
    the cursor after the page (None when the page was the last one)."""
    chosen = [
        (str(r[1]), int(r[2])) for r in rows if not r[3] and match.matches(str(r[4]), _tags(r[5]))
    ]
    if len(rows) < limit:
        return chosen, None
    last = rows[-1]
    return chosen, (float(last[0]), str(last[1]), int(last[2]))
