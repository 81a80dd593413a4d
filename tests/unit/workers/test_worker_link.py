"""A node's scrape counts a slow worker with its last answer, for a while."""

from __future__ import annotations

import asyncio
from pathlib import Path

from postline.schedule.shares import WorkerShare
from postline.workers.link import WorkerLink


async def test_a_slow_worker_is_counted_with_its_last_answer_until_it_is_stale(
    tmp_path: Path,
) -> None:
    asker = WorkerLink(tmp_path, WorkerShare(0, 2), timeout=0.2, stale_after=1.0)
    other = WorkerLink(tmp_path, WorkerShare(1, 2), timeout=0.2)
    delay = 0.0
    count = 0

    async def answer() -> bytes:
        nonlocal count
        count += 1
        await asyncio.sleep(delay)
        return (
            f"# TYPE postline_x_total counter\npostline_x_total {count}\n"
            f"# TYPE postline_g gauge\npostline_g {count}\n"
        ).encode()

    await other.serve(answer)
    try:
        assert _values(await asker.gather()) == [{"postline_x_total": 1, "postline_g": 1}]
        delay = 0.5  # longer than the asker waits
        # The last answer's counters (its gauges may be stale): the node's sum holds.
        assert _values(await asker.gather()) == [{"postline_x_total": 1}]
        delay = 0.0
        assert _values(await asker.gather()) == [{"postline_x_total": 3, "postline_g": 3}]
        delay = 0.5
        await asyncio.sleep(1.1)  # the last answer is now older than stale_after
        assert await asker.gather() == []
    finally:
        await other.close()
        await asker.close()


def _values(answers: list[bytes]) -> list[dict[str, float]]:
    out = []
    for text in answers:
        values = {}
        for line in text.decode().splitlines():
            if line and not line.startswith("#") and not line.startswith("postline_x_created"):
                name, value = line.split()
                values[name] = float(value)
        out.append(values)
    return out


async def test_a_worker_that_never_answered_is_left_out(tmp_path: Path) -> None:
    asker = WorkerLink(tmp_path, WorkerShare(0, 3), timeout=0.2)
    assert await asker.gather() == []
