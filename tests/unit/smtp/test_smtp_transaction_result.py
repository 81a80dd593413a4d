"""TransactionResult: which reply is final for each recipient."""

from __future__ import annotations

import pytest

from postline.model import Reply
from postline.smtp.client import Timeouts, TransactionResult

OK_MAIL = Reply(250, "ok", "2.1.0", "MAIL FROM")
OK_RCPT = Reply(250, "ok", "2.1.5", "RCPT TO")
UNKNOWN = Reply(550, "no such user", "5.1.1", "RCPT TO")
FULL = Reply(452, "mailbox full", "4.2.2", "RCPT TO")
QUEUED = Reply(250, "queued", "2.0.0", "DATA END")


def test_outcome_per_recipient() -> None:
    result = TransactionResult(OK_MAIL, (OK_RCPT, UNKNOWN, FULL), QUEUED)
    assert result.outcome(0) is QUEUED
    assert result.outcome(1) is UNKNOWN
    assert result.outcome(2) is FULL
    assert result.outcomes() == (QUEUED, UNKNOWN, FULL)


def test_outcome_mail_failure_wins() -> None:
    mail = Reply(550, "sender blocked", "5.7.1", "MAIL FROM")
    result = TransactionResult(mail, (OK_RCPT,), None)
    assert result.outcome(0) is mail


def test_outcome_data_refusal() -> None:
    data = Reply(554, "spam", "5.7.1", "DATA END")
    result = TransactionResult(OK_MAIL, (OK_RCPT, UNKNOWN), data)
    assert result.outcomes() == (data, UNKNOWN)


def test_accepted_recipient_needs_data_reply() -> None:
    with pytest.raises(ValueError, match="data reply"):
        TransactionResult(OK_MAIL, (OK_RCPT,), None)
    # No recipient accepted: no data reply is fine.
    assert TransactionResult(OK_MAIL, (UNKNOWN,), None).outcome(0) is UNKNOWN


def test_timeout_defaults_follow_design() -> None:
    t = Timeouts()
    assert (t.connect, t.banner, t.mail_from, t.rcpt_to, t.data, t.data_dot) == (
        30.0,
        60.0,
        60.0,
        60.0,
        60.0,
        120.0,
    )
