"""The records of a reply and of work that leaves without an attempt (pure rules)."""

from __future__ import annotations

import random

from postline.deliver.outcome import (
    Attempt,
    attempt_record,
    deferred_records,
    dns_reply,
    expired_records,
    handed_back_records,
    suspended_reply,
)
from postline.deliver.work import Host, WorkItem
from postline.model import EventType, RecipientState, Reply
from postline.schedule.backoff import RetryPolicy
from postline.store.base import AttemptRecord, LeasedMessage, LeasedRecipient, QueueKey

P = RetryPolicy(first=60, multiplier=2, max_interval=3600, max_age=86400, jitter="none")
NOW = 1_000_000.0
HOST = Host("mx1.x.test", "192.0.2.1", 25)
AT_HOST = Attempt(HOST, "10.0.0.1")
SPAM = Reply(554, "5.7.1 Service unavailable; client host blocked using Spamhaus", "5.7.1")


def _item(n: int = 1, *, attempts: int = 0, expires_at: float = NOW + 3600) -> WorkItem:
    rcpts = [
        LeasedRecipient("m1", i, "t1", f"u{i}@x.test", "x.test", attempts, NOW - 10, expires_at)
        for i in range(n)
    ]
    msg = LeasedMessage("m1", "t1", "s@y.test", b"body", "<m1@y.test>", rcpts, stream="bulk")
    return WorkItem(msg, rcpts, "x.test", NOW + 300)


def _record(
    reply: Reply,
    attempt: Attempt = AT_HOST,
    *,
    attempts: int = 0,
    expires_at: float = NOW + 3600,
) -> tuple[AttemptRecord, bool]:
    item = _item(attempts=attempts, expires_at=expires_at)
    return attempt_record(
        item,
        item.recipients[0],
        reply,
        attempt,
        now=NOW,
        policy=P,
        rng=random.Random(1),
        owner="node-1",
        hard_bounce_ttl=0.0,
    )


def test_a_delivery_names_where_it_went() -> None:
    record, blocked = _record(Reply(250, "ok", "2.0.0", "DATA"))
    assert (record.state, record.event, blocked) == (
        RecipientState.DELIVERED,
        EventType.DELIVERED,
        False,
    )
    assert record.data == {
        "attempt": 1,
        "command": "DATA",
        "ip": "192.0.2.1",
        "port": 25,
        "local_ip": "10.0.0.1",
    }
    assert (record.mx, record.owner, record.domain, record.stream) == (
        "mx1.x.test",
        "node-1",
        "x.test",
        "bulk",
    )


def test_a_deferral_is_retried_with_backoff_and_classified() -> None:
    record, _ = _record(Reply(451, "greylisted, try later", "4.7.1", "RCPT"))
    assert (record.state, record.event) == (RecipientState.QUEUED, EventType.DEFERRED)
    assert record.next_attempt_at == NOW + 60
    assert "category" in record.data and record.data["hard"] is False
    assert record.counted


def test_a_hard_bounce_carries_the_bounce_fields_and_suppresses() -> None:
    record, _ = _record(Reply(550, "no such user", "5.1.1", "RCPT"))
    assert (record.state, record.event) == (RecipientState.BOUNCED, EventType.BOUNCED)
    assert record.data["status"] == "5.1.1"
    assert record.data["diagnostic"] == "550 5.1.1 no such user"
    assert record.data["remote_mta"] == "mx1.x.test"
    assert record.data["async"] is False
    assert record.suppress == "hard_bounce"


def test_a_deferral_past_the_deadline_expires_with_its_own_category() -> None:
    record, _ = _record(Reply(451, "later", "4.3.0"), attempts=5, expires_at=NOW)
    assert record.state is RecipientState.EXPIRED
    assert record.data["category"] == "expired"
    assert "reply_category" in record.data


def test_a_route_failure_is_synthetic_and_has_no_host() -> None:
    record, _ = _record(dns_reply("nxdomain", "x.test", ""), Attempt(synthetic=True))
    assert record.state is RecipientState.BOUNCED
    assert list(record.data)[:3] == ["attempt", "command", "synthetic"]
    assert record.mx is None and record.data["remote_mta"] is None


def test_a_block_reply_defers_when_another_source_may_send() -> None:
    item = _item()
    asked: list[LeasedRecipient] = []

    def elsewhere(r: LeasedRecipient) -> bool:
        asked.append(r)
        return True

    record, blocked = attempt_record(
        item,
        item.recipients[0],
        SPAM,
        Attempt(HOST, None, "a"),
        now=NOW,
        policy=P,
        rng=None,
        owner="n",
        hard_bounce_ttl=0.0,
        elsewhere=elsewhere,
    )
    assert blocked and asked == [item.recipients[0]]
    assert record.data["category"] == "spam_block"
    assert (record.state, record.data["retry_elsewhere"]) == (RecipientState.QUEUED, True)
    assert record.data["source"] == "a"
    alone, blocked = attempt_record(
        item,
        item.recipients[0],
        SPAM,
        Attempt(HOST, None, "a"),
        now=NOW,
        policy=P,
        rng=None,
        owner="n",
        hard_bounce_ttl=0.0,
        elsewhere=lambda r: False,
    )
    assert blocked and alone.state is RecipientState.BOUNCED
    assert "retry_elsewhere" not in alone.data


def test_records_without_an_attempt() -> None:
    item = _item(2)
    expired = expired_records(item, item.recipients[:1], now=NOW, max_age=86400, owner="n")
    assert [(r.idx, r.state, r.counted) for r in expired] == [(0, RecipientState.EXPIRED, False)]
    assert expired[0].text == "not delivered within 1d"
    deferred = deferred_records(
        item, suspended_reply(30), now=NOW, until=NOW + 30, data={"reason": "x"}, owner="n"
    )
    assert [(r.state, r.event, r.next_attempt_at, r.counted) for r in deferred] == [
        (RecipientState.QUEUED, EventType.DEFERRED, NOW + 30, False)
    ] * 2
    assert deferred[0].data == {"reason": "x"} and deferred[0].code == 451
    back = list(handed_back_records([item], now=NOW, owner="n"))
    assert [(r.event, r.next_attempt_at, r.counted, r.code) for r in back] == [
        (None, NOW, False, None)
    ] * 2
    key: QueueKey = (back[0].tenant_id, str(back[0].domain))
    assert key == ("t1", "x.test")
