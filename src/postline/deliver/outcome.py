"""From a reply to a recipient's next state: delivered, deferred, bounced or expired.

Pure policy, synchronous. 2xx → delivered; 5xx → bounced; 4xx → deferred with backoff, or
expired when the recipient is past its deadline. Also the synthetic replies postline
writes for failures that never reached an SMTP dialogue (DNS, connection), and the
:class:`~postline.store.base.AttemptRecord` of every way a leased recipient leaves the
node: an attempt's reply (:func:`attempt_record`), a deadline passed without one
(:func:`expired_records`), work deferred without an attempt (:func:`deferred_records`) and
work handed back (:func:`handed_back_records`). The engine adds them to its recorder.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from postline.bounce import classify_reply
from postline.bounce.policy import suppresses
from postline.deliver.work import Host, WorkItem
from postline.model import EventType, RecipientState, Reply
from postline.schedule.backoff import RetryPolicy, next_attempt
from postline.store.base import AttemptRecord, LeasedRecipient
from postline.units import format_duration

__all__ = [
    "Attempt",
    "Decision",
    "attempt_record",
    "decide",
    "deferred_records",
    "dns_reply",
    "expired_records",
    "handed_back_records",
    "make_record",
    "suppression",
    "suspended_reply",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Decision:
    state: RecipientState
    event: EventType
    next_attempt_at: float = 0.0


def decide(
    reply: Reply,
    *,
    attempts: int,
    expires_at: float,
    now: float,
    policy: RetryPolicy,
    rng: random.Random | None = None,
) -> Decision:
    """The outcome of an attempt; ``attempts`` counts this one."""
    if reply.positive:
        return Decision(RecipientState.DELIVERED, EventType.DELIVERED)
    if reply.permanent:
        return Decision(RecipientState.BOUNCED, EventType.BOUNCED)
    when = next_attempt(attempts, now=now, expires_at=expires_at, policy=policy, rng=rng)
    if when is None:
        return Decision(RecipientState.EXPIRED, EventType.EXPIRED)
    return Decision(RecipientState.QUEUED, EventType.DEFERRED, when)


def dns_reply(status: str, domain: str, detail: str) -> Reply:
    """The reply recorded when the MX lookup of ``domain`` decided the outcome."""
    if status == "nxdomain":
        return Reply(550, f"domain {domain} does not exist (NXDOMAIN)", "5.1.2", "DNS", True)
    if status == "null_mx":
        return Reply(
            556, f"domain {domain} accepts no mail (null MX, RFC 7505)", "5.1.10", "DNS", True
        )
    if status == "no_mail":
        return Reply(550, f"domain {domain} has no mail server: {detail}", "5.1.2", "DNS", True)
    return Reply(451, f"MX lookup of {domain} failed: {detail}", "4.4.3", "DNS", True)


def make_record(
    item: WorkItem,
    r: LeasedRecipient,
    *,
    state: RecipientState,
    event: EventType | None,
    at: float,
    reply: Reply | None,
    next_attempt_at: float = 0.0,
    counted: bool = True,
    mx: str | None = None,
    data: dict[str, object] | None = None,
    owner: str | None = None,
    suppress: str | None = None,
    suppress_until: float | None = None,
) -> AttemptRecord:
    """The record of one recipient of ``item``."""
    return AttemptRecord(
        message_id=item.message.id,
        idx=r.idx,
        tenant_id=r.tenant_id,
        address=r.address,
        state=state,
        event=event,
        at=at,
        next_attempt_at=next_attempt_at,
        counted=counted,
        code=reply.code if reply else None,
        enhanced=reply.enhanced if reply else None,
        text=reply.text if reply else None,
        mx=mx,
        data=dict(data or {}),
        domain=item.domain,
        owner=owner,
        suppress=suppress,
        suppress_until=suppress_until,
        stream=item.message.stream,
        source=item.message.source,
    )


# -- an attempt's reply -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attempt:
    """Where a reply came from: what the records of one transaction share besides it."""

    host: Host | None = None
    local_ip: str | None = None
    source: str | None = None
    """The egress source's name; given only with ``[[delivery.sources]]``."""
    after_dot: bool = False
    """The conversation broke after the final dot (the message may have arrived)."""
    synthetic: bool = False
    """No SMTP dialogue took place (the route lookup decided)."""


def attempt_record(
    item: WorkItem,
    r: LeasedRecipient,
    reply: Reply,
    attempt: Attempt,
    *,
    now: float,
    policy: RetryPolicy,
    rng: random.Random | None,
    owner: str,
    hard_bounce_ttl: float,
    elsewhere: Callable[[LeasedRecipient], bool] | None = None,
) -> tuple[AttemptRecord, bool]:
    """The record of ``r`` after ``reply``, and whether the reply was a block of the
    source (bounce category ``spam_block``, counted only when ``elsewhere`` is given).

    ``elsewhere`` (with several sources) is asked when a block reply would bounce ``r``:
    True when another source of its pool may send there. The recipient is then deferred
    (``retry_elsewhere``) instead of bounced: the reply judged the source, not it.
    """
    host = attempt.host
    attempts = r.attempts + 1
    d = decide(reply, attempts=attempts, expires_at=r.expires_at, now=now, policy=policy, rng=rng)
    data: dict[str, object] = {"attempt": attempts, "command": reply.command}
    if attempt.synthetic:
        data["synthetic"] = True
    if host is not None:
        data["ip"] = host.address
        data["port"] = host.port
    if attempt.local_ip:
        data["local_ip"] = attempt.local_ip
    if attempt.source is not None:
        data["source"] = attempt.source
    if reply.synthetic and not attempt.synthetic:
        data["synthetic"] = True
    if attempt.after_dot:
        data["after_data_dot"] = True
    blocked = False
    if not reply.positive:
        _classify(reply, host, data)
        if elsewhere is not None and data.get("category") == "spam_block":
            blocked = True
            d = _blocked(d, r, data, elsewhere, attempts=attempts, now=now, policy=policy, rng=rng)
        if d.state is RecipientState.EXPIRED:
            _expired(data)
        elif d.state is RecipientState.BOUNCED:
            _bounce_fields(data, reply, host.name if host else None)
    record = make_record(
        item,
        r,
        state=d.state,
        event=d.event,
        at=now,
        reply=reply,
        next_attempt_at=d.next_attempt_at,
        mx=host.name if host else None,
        data=data,
        owner=owner,
        suppress=suppression(d.state, data),
        suppress_until=now + hard_bounce_ttl if hard_bounce_ttl else None,
    )
    return record, blocked


def _blocked(
    d: Decision,
    r: LeasedRecipient,
    data: dict[str, object],
    elsewhere: Callable[[LeasedRecipient], bool],
    *,
    attempts: int,
    now: float,
    policy: RetryPolicy,
    rng: random.Random | None,
) -> Decision:
    """A block reply (blocklist, IP reputation) judges the source, not the recipient:
    when another source of the pool may send there, the recipient is retried from it
    instead of bouncing."""
    if d.state is not RecipientState.BOUNCED:
        return d
    if not elsewhere(r):
        return d
    when = next_attempt(attempts, now=now, expires_at=r.expires_at, policy=policy, rng=rng)
    if when is None:
        return d
    data["retry_elsewhere"] = True
    return Decision(RecipientState.QUEUED, EventType.DEFERRED, when)


def _classify(reply: Reply, host: Host | None, data: dict[str, object]) -> None:
    """Bounce category and hard/soft verdict of a failure, from the shared rules."""
    try:
        verdict = classify_reply(reply, host.name if host else None)
    except Exception:  # a classifier problem must never lose an outcome
        log.exception("bounce classification failed", extra={"action": "deliver.classify"})
        return
    data["category"] = verdict.category.value
    data["hard"] = verdict.hard


def _bounce_fields(data: dict[str, object], reply: Reply, remote: str | None) -> None:
    """The fields every ``bounced`` event has, synchronous or not."""
    data["async"] = False
    data["status"] = reply.enhanced
    data["diagnostic"] = " ".join(str(p) for p in (reply.code, reply.enhanced, reply.text) if p)
    data["remote_mta"] = remote


def _expired(data: dict[str, object]) -> None:
    """An expiry is its own bounce category; the last reply's stays as ``reply_category``."""
    if "category" in data:
        data["reply_category"] = data["category"]
    data["category"] = "expired"
    data["hard"] = False


def suppression(state: RecipientState, data: Mapping[str, object]) -> str | None:
    """The suppression a final state asks for: ``hard_bounce`` for a hard bounce of a
    category that suppresses (see :func:`postline.bounce.policy.suppresses`)."""
    if state is RecipientState.BOUNCED and suppresses(
        str(data.get("category")), data.get("hard") is True
    ):
        return "hard_bounce"
    return None


# -- without an attempt -------------------------------------------------------------


def expired_records(
    item: WorkItem,
    recipients: Iterable[LeasedRecipient],
    *,
    now: float,
    max_age: float,
    owner: str,
) -> list[AttemptRecord]:
    """Recipients that sat past their deadline (in a paused queue, behind a suspension)
    expire without an attempt."""
    reply = Reply(451, f"not delivered within {format_duration(max_age)}", "4.4.7", "QUEUE", True)
    return [
        make_record(
            item,
            r,
            state=RecipientState.EXPIRED,
            event=EventType.EXPIRED,
            at=now,
            reply=reply,
            counted=False,
            data={"reason": "max_age", "category": "expired", "hard": False},
            owner=owner,
        )
        for r in recipients
    ]


def deferred_records(
    item: WorkItem,
    reply: Reply,
    *,
    now: float,
    until: float,
    data: Mapping[str, object],
    owner: str,
) -> list[AttemptRecord]:
    """``item`` deferred until ``until`` without an attempt counted: its destination is
    suspended, or no source of its pool may send there now."""
    return [
        make_record(
            item,
            r,
            state=RecipientState.QUEUED,
            event=EventType.DEFERRED,
            at=now,
            reply=reply,
            next_attempt_at=until,
            counted=False,
            data=dict(data),
            owner=owner,
        )
        for r in item.recipients
    ]


def suspended_reply(seconds: float) -> Reply:
    """The reply of work deferred while its throttle bucket is suspended."""
    return Reply(
        451,
        f"destination suspended for {seconds:.0f}s after repeated throttling replies",
        "4.7.0",
        "THROTTLE",
        True,
    )


def handed_back_records(
    items: Sequence[WorkItem], *, now: float, owner: str
) -> Iterable[AttemptRecord]:
    """Leased work handed back to the queue, due at once, without an attempt counted."""
    return (
        make_record(
            item,
            r,
            state=RecipientState.QUEUED,
            event=None,
            at=now,
            reply=None,
            next_attempt_at=now,
            counted=False,
            owner=owner,
        )
        for item in items
        for r in item.recipients
    )
