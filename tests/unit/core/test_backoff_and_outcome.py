"""Retry timing and outcome decisions (pure functions)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postline.deliver.outcome import decide, dns_reply
from postline.model import EventType, RecipientState, Reply
from postline.schedule.backoff import RetryPolicy, backoff, next_attempt

P = RetryPolicy(first=60, multiplier=2, max_interval=3600, max_age=3 * 86400, jitter="none")


def test_exponential_schedule_without_jitter() -> None:
    assert [backoff(n, P) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


@given(st.integers(min_value=1, max_value=200), st.integers(min_value=0, max_value=2**32))
def test_full_jitter_stays_between_first_and_ceiling(attempts: int, seed: int) -> None:
    policy = RetryPolicy(first=60, multiplier=2, max_interval=3600, jitter="full")
    delay = backoff(attempts, policy, random.Random(seed))
    ceiling = min(3600, 60 * 2 ** min(attempts - 1, 64))
    assert 60 <= delay <= ceiling


def test_jitter_spreads_retries() -> None:
    policy = RetryPolicy(first=60, multiplier=2, max_interval=3600, jitter="full")
    rng = random.Random(7)
    delays = {round(backoff(6, policy, rng)) for _ in range(100)}
    assert len(delays) > 50


def test_next_attempt_never_passes_the_deadline() -> None:
    assert next_attempt(1, now=1000, expires_at=1030, policy=P) == 1030
    assert next_attempt(1, now=1000, expires_at=5000, policy=P) == 1060
    assert next_attempt(3, now=5000, expires_at=5000, policy=P) is None


@pytest.mark.parametrize(
    ("reply", "state", "event"),
    [
        (Reply(250, "ok"), RecipientState.DELIVERED, EventType.DELIVERED),
        (Reply(550, "no such user", "5.1.1"), RecipientState.BOUNCED, EventType.BOUNCED),
        (Reply(451, "greylisted", "4.7.1"), RecipientState.QUEUED, EventType.DEFERRED),
        (Reply(421, "bye", "4.3.2"), RecipientState.QUEUED, EventType.DEFERRED),
    ],
)
def test_decide(reply: Reply, state: RecipientState, event: EventType) -> None:
    d = decide(reply, attempts=1, expires_at=10_000, now=1000, policy=P)
    assert (d.state, d.event) == (state, event)
    if state is RecipientState.QUEUED:
        assert d.next_attempt_at == 1060


def test_transient_failure_past_max_age_expires() -> None:
    d = decide(Reply(451, "later"), attempts=9, expires_at=1000, now=1000, policy=P)
    assert (d.state, d.event) == (RecipientState.EXPIRED, EventType.EXPIRED)


def test_dns_replies() -> None:
    assert dns_reply("nxdomain", "x.test", "").permanent
    assert dns_reply("null_mx", "x.test", "").enhanced == "5.1.10"
    assert dns_reply("no_mail", "x.test", "no A").permanent
    assert dns_reply("temp_fail", "x.test", "SERVFAIL").transient
