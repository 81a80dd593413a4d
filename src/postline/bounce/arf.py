"""RFC 5965 Abuse Reporting Format: the fields of a feedback report.

Feedback loops (Yahoo, Microsoft JMRP, AOL, Comcast, Mail.ru...) send a
``multipart/report; report-type=feedback-report`` whose ``message/feedback-report`` part
holds ``Feedback-Type``, ``User-Agent``, ``Original-Rcpt-To``... followed by the
complained-about message (or its headers). Some send the same fields in a plain-text part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postline.bounce.dsn import address_of, parse_fields

__all__ = ["FeedbackReport", "looks_like_feedback", "parse_feedback"]

_FEEDBACK_TYPE = re.compile(r"^feedback-type:[ \t]*\S", re.IGNORECASE | re.MULTILINE)
_ARF_COMPANION = re.compile(
    r"^(?:user-agent|version|original-mail-from|original-rcpt-to|arrival-date|source-ip|"
    r"reported-domain|reported-uri|removal-recipient):",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class FeedbackReport:
    """The machine-readable part of one complaint."""

    feedback_type: str
    user_agent: str | None = None
    version: str | None = None
    original_mail_from: str | None = None
    recipients: tuple[str, ...] = ()
    arrival_date: str | None = None
    source_ip: str | None = None
    reported_domain: str | None = None


def looks_like_feedback(text: str) -> bool:
    """Whether ``text`` carries ARF fields (a ``Feedback-Type`` and a companion field)."""
    return bool(_FEEDBACK_TYPE.search(text)) and bool(_ARF_COMPANION.search(text))


def parse_feedback(text: str) -> FeedbackReport:
    """Read the fields of a ``message/feedback-report`` body (or of text carrying them)."""
    fields: dict[str, list[str]] = {}
    for block in parse_fields(text):
        for name, value in block.items():
            fields.setdefault(name, []).append(value)
    # Original-Rcpt-To and Removal-Recipient may repeat within one block; read them all.
    for name in ("original-rcpt-to", "removal-recipient"):
        repeated = re.findall(rf"^{name}:[ \t]*(.+)$", text, re.IGNORECASE | re.MULTILINE)
        if len(repeated) > len(fields.get(name, [])):
            fields[name] = [v.strip() for v in repeated]

    def first(name: str) -> str | None:
        values = fields.get(name)
        return values[0].strip() if values and values[0].strip() else None

    recipients: list[str] = []
    for name in ("original-rcpt-to", "removal-recipient"):
        for value in fields.get(name, []):
            addr = address_of(value)
            if addr and addr.lower() not in {r.lower() for r in recipients}:
                recipients.append(addr)
    feedback_type = (first("feedback-type") or "abuse").split()[0].lower()
    return FeedbackReport(
        feedback_type=feedback_type,
        user_agent=first("user-agent"),
        version=first("version"),
        original_mail_from=address_of(first("original-mail-from") or ""),
        recipients=tuple(recipients),
        arrival_date=first("arrival-date") or first("received-date"),
        source_ip=first("source-ip"),
        reported_domain=first("reported-domain"),
    )
