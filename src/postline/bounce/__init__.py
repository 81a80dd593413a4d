"""Bounces, complaints and auto-replies: classification rules and report parsing.

* :func:`classify_reply` / :func:`classify` — a failure (SMTP reply or DSN fields) →
  :class:`Classification` (category, hard/soft, the rule that decided), from the rules
  in ``rules/*.toml``;
* :func:`analyze` — an inbound message (RFC 3464 DSN, non-standard bounce, RFC 5965
  complaint, RFC 3834 auto-reply) → :class:`Report` with one result per recipient and
  the original message's identifiers.
"""

from postline.bounce.arf import FeedbackReport
from postline.bounce.classify import (
    CATEGORIES,
    HARD_CATEGORIES,
    Category,
    Classification,
    Rule,
    RuleSet,
    classify,
    classify_reply,
    load_rules,
    parse_rules,
    shipped_rules,
)
from postline.bounce.errors import RuleError
from postline.bounce.parse import Kind, RecipientResult, Report, analyze

__all__ = [
    "CATEGORIES",
    "HARD_CATEGORIES",
    "Category",
    "Classification",
    "FeedbackReport",
    "Kind",
    "RecipientResult",
    "Report",
    "Rule",
    "RuleError",
    "RuleSet",
    "analyze",
    "classify",
    "classify_reply",
    "load_rules",
    "parse_rules",
    "shipped_rules",
]
