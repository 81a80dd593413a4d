"""The hard/soft table: docs/bounce-categories.md prints the one the code applies."""

from __future__ import annotations

import re
from pathlib import Path

from postline.bounce.policy import DEFAULT_READING, HARD_TABLE, is_hard

DOC = Path(__file__).resolve().parents[3] / "docs" / "bounce-categories.md"
ROW = re.compile(r"^\| (address|generic|never) \| (hard|soft) \| (hard|soft) \| (hard|soft) \|$")


def test_the_documented_table_is_the_table_the_code_applies() -> None:
    rows = {
        m.group(1): tuple(v == "hard" for v in m.group(2, 3, 4))
        for m in map(ROW.match, DOC.read_text("utf-8").splitlines())
        if m
    }
    assert rows == HARD_TABLE


def test_the_table_is_applied_by_phase_and_code_class() -> None:
    def hard(reading: str, **kw: object) -> bool:
        args = {"permanent": True, "temporary_code": False, "command": None, "status": None}
        return is_hard(reading, **(args | kw))  # type: ignore[arg-type]

    assert (
        hard("address", command="DATA") and hard("address") and hard("address", command="RCPT TO")
    )
    assert not hard("address", temporary_code=True)
    assert hard("address", temporary_code=True, unknown_every_try=True)
    assert not hard("address", permanent=False)
    assert hard("generic", command="RCPT TO") and not hard("generic", command="DATA")
    assert hard("generic", command="DATA", status="5.1.1")
    assert not hard("generic", status="5.1.0") and not hard("generic", status="5.1.8")
    assert not any(hard("never", command=c) for c in ("RCPT TO", "DATA", None))
    assert DEFAULT_READING == {"invalid_recipient": "address", "bad_domain": "address"}
