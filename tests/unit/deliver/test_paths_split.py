"""Splitting a group of work items at a warm-up grant."""

from __future__ import annotations

from postline.deliver.paths import _split
from postline.deliver.work import WorkItem
from postline.store.base import LeasedMessage, LeasedRecipient


def _item(mid: str, n: int) -> WorkItem:
    rcpts = [LeasedRecipient(mid, i, "t", f"u{i}@x.test", "x.test", 0, 0.0, 1e12) for i in range(n)]
    return WorkItem(LeasedMessage(mid, "t", "s@y.test", b"", "", rcpts), rcpts, "x.test", 99.0)


def _shape(items: list[WorkItem]) -> list[tuple[str, list[int]]]:
    return [(it.message.id, [r.idx for r in it.recipients]) for it in items]


def test_the_grant_is_taken_in_order_and_splits_one_item() -> None:
    group = [_item("m1", 2), _item("m2", 3), _item("m3", 1)]
    fits, rest = _split(group, 4)
    assert _shape(fits) == [("m1", [0, 1]), ("m2", [0, 1])]
    assert _shape(rest) == [("m2", [2]), ("m3", [0])]
    assert all(it.lease_until == 99.0 for it in fits + rest)


def test_nothing_or_everything() -> None:
    group = [_item("m1", 2), _item("m2", 1)]
    assert _split(group, 0) == ([], group)
    assert _split(group, 3) == (group, [])
