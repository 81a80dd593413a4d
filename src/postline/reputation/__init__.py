"""Sending reputation: rolling bounce and complaint rates per tenant (and stream), with
warnings and automatic pauses at thresholds like SES's.

:mod:`postline.reputation.rates` holds the arithmetic and the status rules (pure);
:mod:`postline.reputation.service` counts outcomes, judges tenants and enforces pauses.
"""

from __future__ import annotations

from postline.reputation.rates import OK, PAUSED, WARNED, Counts, Thresholds, judge, transition
from postline.reputation.service import Reputation, pause_tenant, refusal, resume_tenant

__all__ = [
    "OK",
    "PAUSED",
    "WARNED",
    "Counts",
    "Reputation",
    "Thresholds",
    "judge",
    "pause_tenant",
    "refusal",
    "resume_tenant",
    "transition",
]
