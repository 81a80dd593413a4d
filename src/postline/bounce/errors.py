"""Errors of the bounce package.

ConfigError
└── RuleError        a bounce rules file is invalid; the message names the file and rule
"""

from __future__ import annotations

from postline.errors import ConfigError

__all__ = ["RuleError"]


class RuleError(ConfigError):
    """A bounce classification rule is invalid."""

    def __init__(self, message: str, *, source: str = "", rule: str = "") -> None:
        where = source + (f": rule {rule!r}" if rule else "")
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.rule = rule
