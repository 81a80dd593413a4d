"""From a reply to a recipient's next state: delivered, deferred, bounced or expired.

Pure policy. 2xx → delivered; 5xx → bounced; 4xx → deferred with backoff, or expired
when the recipient is past its deadline. Also the synthetic replies postline writes for
failures that never reached an SMTP dialogue (DNS, connection).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from postline.model import EventType, RecipientState, Reply
from postline.schedule.backoff import RetryPolicy, next_attempt

__all__ = ["Decision", "decide", "dns_reply"]


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
