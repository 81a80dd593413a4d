"""What delivery outcomes write besides the recipient rows, worked out once for every
backend: the events (with the reply folded into their data), the suppressions they add,
and the soft-bounce runs a delivery ends."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from postline.model import RecipientState
from postline.store.base import AttemptRecord

__all__ = ["OutcomePlan", "event_data", "plan_outcomes"]


def event_data(r: AttemptRecord) -> dict[str, Any]:
    """An outcome's event data: its own, plus the reply and the next attempt."""
    data = dict(r.data)
    if r.code is not None:
        data.setdefault("code", r.code)
        data.setdefault("enhanced", r.enhanced)
        data.setdefault("text", r.text)
    if r.mx is not None:
        data.setdefault("mx", r.mx)
    if r.state is RecipientState.QUEUED:
        data.setdefault("next_attempt_at", r.next_attempt_at)
    return data


@dataclass(slots=True)
class OutcomePlan:
    events: list[tuple[float, str, str, str, int, str, str]] = field(default_factory=list)
    """(at, tenant id, type, message id, index, address, data as JSON), in record order."""
    suppressions: list[tuple[str, str, str, float, float | None, str, str]] = field(
        default_factory=list
    )
    """(tenant id, address lower-cased, reason, at, until, detail, message id)."""
    cleared: list[tuple[str, str]] = field(default_factory=list)
    """(tenant id, address lower-cased) whose soft-bounce run a delivery ends."""


def plan_outcomes(records: Sequence[AttemptRecord]) -> OutcomePlan:
    plan = OutcomePlan()
    for r in records:
        if r.suppress is not None:
            plan.suppressions.append(
                (
                    r.tenant_id,
                    r.address.lower(),
                    r.suppress,
                    r.at,
                    r.suppress_until,
                    r.text or "",
                    r.message_id,
                )
            )
        if r.state is RecipientState.DELIVERED:
            plan.cleared.append((r.tenant_id, r.address.lower()))
        if r.event is not None:
            plan.events.append(
                (
                    r.at,
                    r.tenant_id,
                    r.event.value,
                    r.message_id,
                    r.idx,
                    r.address,
                    json.dumps(event_data(r)),
                )
            )
    return plan
