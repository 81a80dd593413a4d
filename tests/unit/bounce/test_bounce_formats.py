"""``analyze`` on 40 bounces, one auto-reply and one complaint in the formats of widely used
mail software and providers (Postfix, Exim, Sendmail, qmail, Exchange / Microsoft 365,
Gmail, Yahoo, Outlook.com, iCloud, Proofpoint, Barracuda, Mimecast, Zimbra, MDaemon, SES).

The messages under ``samples/formats/`` were written for these tests from the published
wordings of each product; ``labels.jsonl`` says, per failed recipient, what a reader of
the message concludes: category, hard or soft, and whether the failure is final (a
delay warning is not). Yahoo's ``[TSS04]`` deferral is ``spam_block`` here (complaints
and volume from the sending IP, see docs/bounce-categories.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postline.bounce import analyze

FORMATS = Path(__file__).resolve().parent / "samples" / "formats"
LABELS = [json.loads(line) for line in (FORMATS / "labels.jsonl").read_text("utf-8").splitlines()]


@pytest.mark.parametrize("label", LABELS, ids=lambda lb: f"{lb['file']}:{lb['recipient']}")
def test_each_failed_recipient_is_found_and_classified(label: dict[str, object]) -> None:
    report = analyze((FORMATS / str(label["file"])).read_bytes())
    want = str(label["recipient"]).lower()
    found = [r for r in report.results if (r.recipient or "").lower() == want]
    assert found, [r.recipient for r in report.results]
    result = found[0]
    assert str(result.category) == label["category"], (result.rule, result.diagnostic[:200])
    assert result.hard is label["hard"], result.rule
    if label["category"] not in ("auto_reply", "complaint"):
        assert (result.action == "failed") is label["final"], result.action


def test_no_other_recipient_is_reported() -> None:
    by_file: dict[str, set[str]] = {}
    for label in LABELS:
        by_file.setdefault(str(label["file"]), set()).add(str(label["recipient"]).lower())
    for name, wanted in by_file.items():
        report = analyze((FORMATS / name).read_bytes())
        got = {(r.recipient or "").lower() for r in report.results}
        assert got == wanted, name
