"""An SMTP reply: code, enhanced status code, text and the command that drew it."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Reply", "parse_enhanced"]

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")


def parse_enhanced(text: str) -> tuple[str | None, str]:
    """Split a leading RFC 3463 enhanced status code off ``text``.

    >>> parse_enhanced("5.1.1 no such user")
    ('5.1.1', 'no such user')
    """
    m = _ENHANCED.match(text)
    if not m:
        return None, text
    return f"{m.group(1)}.{m.group(2)}.{m.group(3)}", text[m.end() :]


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply.

    ``text`` holds the reply lines without the code prefixes, joined by ``\\n``, with the
    enhanced status code (if the first line had one) moved into ``enhanced``.
    ``command`` names what drew the reply: ``CONNECT``, ``EHLO``, ``MAIL FROM``,
    ``RCPT TO``, ``DATA``, ``DATA END`` (the final dot), ``STARTTLS``... A reply that
    postline made up itself (a timeout, a refused connection) has ``synthetic=True``.
    """

    code: int
    text: str = ""
    enhanced: str | None = None
    command: str = ""
    synthetic: bool = False

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @classmethod
    def from_lines(cls, code: int, lines: list[str], command: str = "") -> Reply:
        """Build a reply from its lines (code prefixes already removed)."""
        first = lines[0] if lines else ""
        enhanced, rest = parse_enhanced(first)
        if enhanced is not None and enhanced[0] != str(code)[0]:
            # An enhanced code whose class disagrees with the reply code is not one.
            enhanced, rest = None, first
        body = [rest, *lines[1:]]
        if enhanced is not None:
            # Continuation lines usually repeat the enhanced code; drop the repeats.
            body = [rest] + [
                ln[len(enhanced) :].lstrip() if ln.startswith(enhanced) else ln for ln in lines[1:]
            ]
        return cls(code=code, text="\n".join(body).strip(), enhanced=enhanced, command=command)

    def __str__(self) -> str:
        parts = [str(self.code)]
        if self.enhanced:
            parts.append(self.enhanced)
        if self.text:
            parts.append(self.text.replace("\n", " "))
        return " ".join(parts)
