"""Recognising throttling replies, and the AIMD factor with suspension (pure functions)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postline.model.reply import Reply
from postline.throttle.adaptive import (
    AdaptiveParams,
    AdaptiveState,
    current_factor,
    is_idle,
    is_throttling_reply,
    on_throttled,
)
from postline.throttle.rules import ThrottleRules

# --- is_throttling_reply -----------------------------------------------------------------

THROTTLING = [
    (421, "4.7.0", "Try again later, closing connection. (EHLO)"),
    (421, "4.7.28", "Our system has detected an unusual rate of unsolicited mail originating"),
    (450, "4.7.28", "Gmail has detected an unusual rate of mail originating from your IP"),
    (421, "4.7.0", "IP not in whitelist for RCPT domain, rate limited"),
    (451, "4.7.500", "Server busy. Please try again later from [192.0.2.1]. (S77714)"),
    (451, None, "Server busy. (S3150) [DB5EUR03FT012.eop-EUR03.prod.protection.outlook.com]"),
    (
        421,
        "4.3.2",
        "The maximum number of concurrent server connections has exceeded a limit",
    ),
    (421, "4.7.0", "[TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume"),
    (421, None, "[TS01] Messages from 192.0.2.1 temporarily deferred due to user complaints"),
    (450, "4.7.1", "Error: too many messages, try again later"),
    (451, "4.7.1", "Service unavailable, too many connections"),
    (421, None, "Too many concurrent SMTP connections; please try again later."),
    (452, None, "Too many connections from your host"),
    (451, None, "rate limit exceeded"),
    (450, None, "Too many messages in this session"),
    (451, "4.3.0", "Too many connections from your IP address"),
    (421, "4.4.5", "Server busy, try again later"),
]

NOT_THROTTLING = [
    (452, "4.2.2", "The email account that you tried to reach is over quota"),
    (452, None, "Mailbox full"),
    (451, "4.3.0", "Requested action aborted: local error in processing"),
    (451, "4.3.0", "Temporary local problem - please try again later"),
    (421, "4.4.2", "Connection timed out"),
    (451, "4.4.0", "DNS resolution failed, try again later"),
    (450, "4.2.1", "The user you are trying to contact is receiving mail at a rate that"),
    (451, "4.7.1", "Greylisted, please try again later"),
    (450, None, "Recipient address rejected: greylisted for 5 minutes"),
    (452, "4.5.3", "Too many recipients"),
    (450, "4.1.8", "Sender address rejected: Domain not found"),
    (451, None, "Temporary failure"),
    # Every temporary failure says "try again later": not a request to slow down.
    (451, None, "Please try again later"),
    (451, "4.3.0", "Temporary failure, please try again later"),
    (450, None, "Requested action not taken: try again later"),
    (550, "5.7.1", "Service unavailable; rate limit exceeded"),
    (554, None, "Too many connections"),
    (250, "2.0.0", "OK"),
]


@pytest.mark.parametrize(("code", "enhanced", "text"), THROTTLING)
def test_throttling_replies_are_recognised(code: int, enhanced: str | None, text: str) -> None:
    assert is_throttling_reply(code, enhanced, text)


@pytest.mark.parametrize(("code", "enhanced", "text"), NOT_THROTTLING)
def test_other_replies_are_not_throttling(code: int, enhanced: str | None, text: str) -> None:
    assert not is_throttling_reply(code, enhanced, text)


def test_multiline_text_is_searched_as_one_line() -> None:
    assert is_throttling_reply(451, None, "Sorry,\nrate\n  limited")


def test_extra_patterns_add_to_the_shipped_ones_and_win_over_exceptions() -> None:
    reply = (451, "4.3.0", "Mail server temporarily rejected message, busy")
    assert not is_throttling_reply(*reply)
    assert is_throttling_reply(*reply, extra_patterns=[r"4\.3\.0 .*busy"])
    # an extra pattern may even override a shipped exception, but not turn a 5xx into one
    assert is_throttling_reply(452, "4.2.2", "mailbox full", [r"mailbox full"])
    assert not is_throttling_reply(550, "5.7.1", "busy", [r"busy"])


def test_rules_apply_rule_and_global_patterns() -> None:
    rules = ThrottleRules.load(
        [{"name": "corp", "domains": ["corp.test"], "throttle_replies": ["queue is long"]}],
        include_defaults=False,
        throttle_replies=["please breathe"],
    )
    corp = rules.match("corp.test", [])
    other = rules.match("other.test", [])
    long_queue = Reply(code=451, enhanced="4.3.0", text="The queue is long")
    breathe = Reply(code=451, text="Please breathe")
    assert rules.is_throttling(corp, long_queue)
    assert not rules.is_throttling(other, long_queue)
    assert rules.is_throttling(other, breathe)
    assert rules.is_throttling(corp, Reply.from_lines(421, ["4.7.0 [TSS04] deferred"]))


# --- AIMD ------------------------------------------------------------------------------

P = AdaptiveParams(
    decrease=0.5,
    floor=0.1,
    recover_step=0.25,
    recover_interval=10.0,
    cut_cooldown=2.0,
    strikes=3,
    strike_window=60.0,
    suspend_for=300.0,
)


def test_a_fresh_state_runs_at_full_rate() -> None:
    assert current_factor(AdaptiveState(), 1e6, P) == 1.0
    assert is_idle(AdaptiveState(), 0.0, P)


def test_a_throttling_reply_halves_the_factor_and_records_a_strike() -> None:
    s = on_throttled(AdaptiveState(), 100.0, P)
    assert s.factor == 0.5
    assert s.strikes == (100.0,)
    assert s.last_update == 100.0
    assert s.suspended_until == 0.0
    assert current_factor(s, 100.0, P) == 0.5
    assert not is_idle(s, 100.0, P)


def test_replies_within_the_cooldown_are_one_episode() -> None:
    s = on_throttled(AdaptiveState(), 100.0, P)
    assert on_throttled(s, 101.9, P) is s
    s2 = on_throttled(s, 102.0, P)
    assert s2.factor == 0.25
    assert s2.strikes == (100.0, 102.0)


def test_recovery_is_additive_per_whole_interval_and_capped() -> None:
    s = on_throttled(AdaptiveState(), 0.0, P)
    assert current_factor(s, 9.99, P) == 0.5
    assert current_factor(s, 10.0, P) == 0.75
    assert current_factor(s, 19.99, P) == 0.75
    assert current_factor(s, 20.0, P) == 1.0
    assert current_factor(s, 1000.0, P) == 1.0
    assert current_factor(s, -5.0, P) == 0.5  # a clock before the cut does not recover


def test_a_cut_applies_to_the_recovered_factor() -> None:
    s = on_throttled(AdaptiveState(), 0.0, P)  # 0.5
    s = on_throttled(s, 10.0, P)  # recovered to 0.75, cut to 0.375
    assert s.factor == pytest.approx(0.375)


def test_the_factor_never_drops_below_the_floor() -> None:
    s = AdaptiveState()
    params = AdaptiveParams(floor=0.1, strikes=100, cut_cooldown=0.0, recover_interval=1e9)
    for i in range(20):
        s = on_throttled(s, float(i), params)
    assert s.factor == 0.1


def test_strikes_within_the_window_suspend() -> None:
    s = on_throttled(AdaptiveState(), 0.0, P)
    s = on_throttled(s, 5.0, P)
    assert not s.suspended(5.0)
    s = on_throttled(s, 9.0, P)
    assert s.suspended_until == 309.0
    assert s.suspended(308.9)
    assert not s.suspended(309.0)
    assert s.strikes == ()
    assert s.factor == pytest.approx(0.125)


def test_strikes_outside_the_window_do_not_suspend() -> None:
    s = on_throttled(AdaptiveState(), 0.0, P)
    s = on_throttled(s, 50.0, P)
    s = on_throttled(s, 100.0, P)  # the strike at 0.0 left the window
    assert s.suspended_until == 0.0
    assert s.strikes == (50.0, 100.0)


def test_reports_while_suspended_change_nothing_and_recovery_starts_after() -> None:
    s = AdaptiveState()
    for t in (0.0, 5.0, 9.0):
        s = on_throttled(s, t, P)
    assert on_throttled(s, 100.0, P) is s
    assert current_factor(s, 318.9, P) == pytest.approx(0.125)
    assert current_factor(s, 319.0, P) == pytest.approx(0.375)
    assert not is_idle(s, 348.9, P)
    assert is_idle(s, 349.0, P)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"decrease": 1.0},
        {"decrease": 0.0},
        {"floor": 0.0},
        {"floor": 1.5},
        {"recover_step": 0.0},
        {"recover_interval": -1.0},
        {"strikes": 0},
        {"suspend_for": -1.0},
    ],
)
def test_params_refuse_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveParams(**kwargs)  # type: ignore[arg-type]


@given(st.lists(st.tuples(st.booleans(), st.floats(0.0, 120.0)), max_size=40))
def test_the_factor_stays_between_floor_and_one(events: list[tuple[bool, float]]) -> None:
    s, now = AdaptiveState(), 0.0
    for throttled, dt in events:
        now += dt
        if throttled:
            s = on_throttled(s, now, P)
        assert P.floor <= current_factor(s, now, P) <= 1.0
        assert len(s.strikes) < P.strikes
