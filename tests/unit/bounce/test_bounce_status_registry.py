"""Every code of the IANA enhanced status code registry maps to a category on purpose.

The table is :data:`postline.bounce.status.REGISTRY`; these tests walk it through the
classifier (the status rules of ``rules/*.toml``), so the table and the rules agree.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from postline.bounce import CATEGORIES, classify, shipped_rules
from postline.bounce.status import REGISTRY, SUBJECTS, Registered, category_of, meaning

STATUS_RULE_FILES = ("50-status.toml", "20-gave-up.toml", "90-codes.toml")


def _status(entry: Registered, klass: str) -> str:
    return klass + entry.code[1:]


def test_the_table_is_the_whole_registry_once() -> None:
    codes = [r.code for r in REGISTRY]
    assert len(codes) == len(set(codes))
    # every detail from 0 to the last registered one, per subject (the registry has no gaps)
    last = {0: 0, 1: 10, 2: 4, 3: 6, 4: 7, 5: 6, 6: 10, 7: 30}
    assert sorted(codes) == sorted(f"X.{s}.{d}" for s, n in last.items() for d in range(n + 1))
    for entry in REGISTRY:
        assert entry.category in CATEGORIES and entry.meaning and entry.reference
        assert entry.temporary is None or entry.temporary in CATEGORIES


@pytest.mark.parametrize("entry", REGISTRY, ids=lambda r: r.code)
def test_a_permanent_registered_code_gets_its_category(entry: Registered) -> None:
    c = classify("", status=_status(entry, "5"))
    assert str(c.category) == entry.category, c.rule
    assert category_of(_status(entry, "5")) == entry.category
    if entry.category != "unknown":
        # decided by a status rule, not by a text or a reply-code rule
        rule = shipped_rules().by_name[c.rule]
        assert rule.statuses and not rule.text
        assert rule.source.rsplit("/", 1)[-1] in STATUS_RULE_FILES


@pytest.mark.parametrize("entry", REGISTRY, ids=lambda r: r.code)
def test_a_temporary_registered_code_gets_its_category(entry: Registered) -> None:
    status = _status(entry, "4")
    want = entry.temporary or entry.category
    c = classify("", status=status)
    assert (str(c.category), c.hard) == (want, False), c.rule
    assert category_of(status) == want


def test_a_temporary_code_in_a_final_report_is_a_sender_that_gave_up() -> None:
    assert classify("", status="4.2.2", action="failed").category == "expired"
    assert classify("", status="4.4.6", action="failed").category == "routing"


@pytest.mark.parametrize(
    ("status", "category", "hard"),
    [
        ("5.1.1", "invalid_recipient", True),
        ("5.1.10", "bad_domain", True),
        ("5.1.2", "bad_domain", True),
        ("5.1.6", "invalid_recipient", True),
        ("5.7.17", "invalid_recipient", True),
        ("5.7.18", "bad_domain", True),
        ("5.2.2", "mailbox_full", False),
        ("5.2.1", "inactive_mailbox", False),
        ("5.1.0", "invalid_recipient", False),
        ("5.1.8", "policy", False),
        ("5.7.20", "auth_failure", False),
        ("5.7.23", "auth_failure", False),
        ("5.7.25", "spam_block", False),
        ("5.7.26", "auth_failure", False),
        ("5.7.27", "policy", False),
        ("5.7.28", "rate_limited", False),
        ("5.7.29", "auth_failure", False),
        ("5.7.30", "auth_failure", False),
    ],
)
def test_hard_or_soft_follows_the_code(status: str, category: str, hard: bool) -> None:
    c = classify("", status=status, action="failed")
    assert (str(c.category), c.hard) == (category, hard), c.rule
    # the same code as a synchronous refusal at RCPT TO
    r = classify("", code=550, status=status, command="RCPT TO")
    assert (str(r.category), r.hard) == (category, hard), r.rule


@pytest.mark.parametrize(
    ("status", "category"),
    [
        ("5.1.99", "invalid_recipient"),
        ("5.2.77", "invalid_recipient"),
        ("5.3.99", "transient"),
        ("4.4.99", "routing"),
        ("5.5.99", "protocol"),
        ("5.6.99", "spam_content"),
        ("5.7.999", "policy"),
        ("4.7.99", "policy"),
    ],
)
def test_an_unregistered_code_falls_back_by_subject(status: str, category: str) -> None:
    c = classify("", status=status)
    assert (str(c.category), c.hard) == (category, False), c.rule
    assert category_of(status) == category == SUBJECTS[int(status.split(".")[1])]


def test_the_reply_code_decides_when_the_status_says_nothing() -> None:
    assert classify("", code=552, status="5.0.0").category == "mailbox_full"
    assert classify("", code=530, status="5.0.0").category == "auth_failure"
    assert classify("", status="5.0.0").category == "unknown"
    assert category_of("5.0.0") == "unknown" and category_of("5.0.9") is None


def test_specific_wording_still_beats_the_status() -> None:
    # quota wording under a 5.2.3 (message length) status
    assert classify("552 5.2.3 user has overdrawn his diskspace quota").category == "mailbox_full"
    # Exchange's delivery restriction under the registry's "user account disabled"
    c = classify("550 5.7.13 Sender was not authenticated for public folder")
    assert c.category == "policy"


def test_meaning_names_the_registry_entry() -> None:
    assert meaning("5.1.1") == "Bad destination mailbox address"
    assert meaning("4.7.30") == "REQUIRETLS support required"
    assert meaning("5.1.10") == "Recipient address has null MX"
    assert meaning("5.7.999") is None and meaning("garbage") is None


def test_the_documented_status_table_is_the_registry_table() -> None:
    doc = Path(__file__).resolve().parents[3] / "docs" / "bounce-categories.md"
    text = doc.read_text("utf-8")
    section = text[text.index("## Enhanced status codes") : text.index("## Provider code tables")]
    documented = {
        code: m.group(1)
        for m in re.finditer(r"^\| `(\w+)` \| (X\.[^|]+) \|$", section, re.MULTILINE)
        for code in m.group(2).strip().split(", ")
    }
    assert documented == {r.code: r.category for r in REGISTRY}
