"""What a pre-flight check answers: one :class:`Finding` per check — ``ok``, ``warning``
(receivers may hold it against the message) or ``error`` (receivers reject it, file it
as spam, or the mail fails authentication) — each with a ``fix``, gathered in a
:class:`CheckReport`.

"Bulk" streams are those in ``[domains] list_unsubscribe_streams`` and those whose name
looks like bulk mail (marketing, newsletter, promo...): Gmail and Yahoo ask more of bulk
senders (SPF and DKIM, a DMARC record, alignment, one-click unsubscribe).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final, Literal, TypeAlias

from postline.check.spamd import SpamVerdict
from postline.config import Config

__all__ = ["CheckReport", "Finding", "Status", "is_bulk_stream"]

Status: TypeAlias = Literal["ok", "warning", "error"]

_BULK: Final = re.compile(
    r"market|newsletter|news|promo|bulk|campaign|digest|announce|broadcast|blast|offer",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's result: ``status`` ok, warning or error, what was found, the fix."""

    check: str
    status: Status
    message: str
    fix: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "check": self.check,
            "status": self.status,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(slots=True)
class CheckReport:
    """Every finding about one message; ``ok`` when none is an error."""

    findings: list[Finding]
    from_domain: str = ""
    stream: str = ""
    size: int = 0
    spam: SpamVerdict | None = None

    @property
    def ok(self) -> bool:
        return not any(f.status == "error" for f in self.findings)

    def count(self, status: Status) -> int:
        return sum(1 for f in self.findings if f.status == status)

    def as_dict(self) -> dict[str, Any]:
        spam: dict[str, Any] | None = None
        if self.spam is not None:
            spam = {
                "score": self.spam.score,
                "threshold": self.spam.threshold,
                "spam": self.spam.spam,
                "rules": [
                    {"name": r.name, "score": r.score, "description": r.description}
                    for r in self.spam.rules
                ],
            }
        return {
            "ok": self.ok,
            "errors": self.count("error"),
            "warnings": self.count("warning"),
            "from_domain": self.from_domain,
            "stream": self.stream,
            "size": self.size,
            "findings": [f.as_dict() for f in self.findings],
            "spam": spam,
        }


def is_bulk_stream(stream: str, config: Config) -> bool:
    """Whether mail of ``stream`` is bulk mail to receivers (see the module docstring)."""
    return stream in config.domains.list_unsubscribe_streams or bool(_BULK.search(stream))
