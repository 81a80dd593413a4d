"""docs/bounce-categories.md stays true: every example reply lands in its category."""

from __future__ import annotations

import re
from pathlib import Path

from postline.bounce import CATEGORIES, classify

DOC = Path(__file__).resolve().parents[3] / "docs" / "bounce-categories.md"
SECTION = re.compile(r"### `(\w+)`\n(.*?)(?=\n### |\n## |\Z)", re.DOTALL)
BLOCK = re.compile(r"```\n(.*?)```", re.DOTALL)


def test_every_category_is_documented_with_examples_that_classify_as_documented() -> None:
    sections = {m.group(1): m.group(2) for m in SECTION.finditer(DOC.read_text("utf-8"))}
    assert set(sections) == set(CATEGORIES)
    checked = 0
    for category, body in sections.items():
        block = BLOCK.search(body)
        if block is None:
            continue
        # Examples of `expired` are final reports (the sender gave up); others are replies.
        action = "failed" if category == "expired" else None
        for line in block.group(1).strip().splitlines():
            assert classify(line, action=action).category == category, line
            checked += 1
    assert checked >= 50
