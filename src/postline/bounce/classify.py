"""Bounce classification: (reply code, enhanced status, text, hosts, command) → category.

Pure and synchronous. The rules are data (``postline/bounce/rules/*.toml``, read in file
name order, rules in file order); the first rule whose conditions all hold wins, and a
failure no rule matches is ``unknown``. The same rules serve a synchronous SMTP reply
(:func:`classify_reply`) and one recipient of a delivery status notification
(:func:`classify`, called by the DSN parser with the ``Status``, ``Diagnostic-Code``,
``Remote-MTA``, ``Reporting-MTA`` and ``Action`` fields and the SMTP command the
refusal answered).

A rule file is a list of ``[[rule]]`` tables::

    [[rule]]
    name = "user-unknown"                 # unique, [a-z0-9._-]
    category = "invalid_recipient"        # one of CATEGORIES
    hard = true                           # optional: how the wording bears on the
                                          #   address (the rows of the hard/soft table in
                                          #   postline.bounce.policy): true = it says the
                                          #   address does not exist; "rcpt" = a generic
                                          #   refusal, hard only at RCPT TO or with an
                                          #   X.1.x status; false = never hard (filter or
                                          #   policy wording). Default: the category's.
    codes = ["5xx"]                       # optional: reply codes, ``x`` = any digit
    statuses = ["x.1.1", "5.7.6xx"]       # optional: enhanced codes; a field ``x`` is any
                                          #   number, an ``x`` among digits any digit
    actions = ["failed"]                  # optional: DSN actions (a synchronous reply
                                          #   has none, so such a rule never matches it)
    remote = 'google\\.com$'              # optional: regex searched in the remote host
                                          #   (the Remote-MTA, else the host the text
                                          #   names, else the recipient's domain)
    reporting = 'messagelabs\\.com$'      # optional: regex searched in the reporting host
    commands = ["DATA"]                   # optional: the SMTP command the refusal
                                          #   answered: CONNECT, EHLO, STARTTLS, AUTH,
                                          #   MAIL FROM, RCPT TO or DATA (end of data too)
    text = ['user unknown', 'no such user']   # optional: regexes searched in the text
    description = "why"                   # optional

Every given condition must hold (``text``: any one of its patterns). Text patterns are
searched case-insensitively anywhere in the reply text, whose runs of white space have
been folded to one space.

All rules compile into ONE regular expression, an alternation in priority order over a
canonical subject line ``code NUL status NUL action NUL remote NUL reporting NUL command
NUL text``, so matching a
reply costs one call into the regex engine, however many rules there are.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Any

from postline.bounce._prefilter import required_literals
from postline.bounce.errors import RuleError
from postline.bounce.policy import DEFAULT_READING, Reading, is_hard
from postline.model import Reply

__all__ = [
    "CATEGORIES",
    "HARD_CATEGORIES",
    "Category",
    "Classification",
    "Rule",
    "RuleSet",
    "classify",
    "classify_reply",
    "extract_codes",
    "extract_command",
    "load_rules",
    "parse_rules",
    "shipped_rule_files",
    "shipped_rules",
]


class Category(StrEnum):
    """What went wrong, in the words a sender acts on (docs/bounce-categories.md)."""

    INVALID_RECIPIENT = "invalid_recipient"
    BAD_DOMAIN = "bad_domain"
    INACTIVE_MAILBOX = "inactive_mailbox"
    MAILBOX_FULL = "mailbox_full"
    MESSAGE_TOO_LARGE = "message_too_large"
    SPAM_BLOCK = "spam_block"
    SPAM_CONTENT = "spam_content"
    POLICY = "policy"
    AUTH_FAILURE = "auth_failure"
    RATE_LIMITED = "rate_limited"
    RELAY_DENIED = "relay_denied"
    ROUTING = "routing"
    TRANSIENT = "transient"
    EXPIRED = "expired"
    PROTOCOL = "protocol"
    VIRUS = "virus"
    AUTO_REPLY = "auto_reply"
    COMPLAINT = "complaint"
    UNKNOWN = "unknown"


CATEGORIES: tuple[str, ...] = tuple(c.value for c in Category)

# Categories whose permanent failures are hard (the address itself will never work) unless
# a rule says otherwise (the policy's default readings).
HARD_CATEGORIES: frozenset[Category] = frozenset(
    Category(c) for c, reading in DEFAULT_READING.items() if reading != "never"
)

_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_CODE = re.compile(r"^[245x][0-9x]{2}$")
_STATUS = re.compile(r"^([245x])\.([0-9x]{1,3})\.([0-9x]{1,3})$")
_KEYS = {"name", "category", "hard", "codes", "statuses", "actions", "remote", "text"}
_KEYS |= {"description", "reporting", "commands"}
COMMANDS = ("CONNECT", "EHLO", "STARTTLS", "AUTH", "MAIL FROM", "RCPT TO", "DATA")
_MAX_TEXT = 4000
_FLAGS = re.IGNORECASE | re.DOTALL


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict on one failure.

    ``hard`` means the address itself is undeliverable (suppress it); it is only ever
    true for a permanent failure. ``rule`` names the rule that decided (``"default"``
    when none matched). ``status`` is the enhanced status code the decision used (given,
    or found in the text), ``diagnostic`` the text that was classified.
    """

    category: Category
    hard: bool
    rule: str
    status: str | None = None
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """One classification rule (see the module docstring for the file format)."""

    name: str
    category: Category
    hard: bool
    codes: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    remote: str | None = None
    text: tuple[str, ...] = ()
    description: str = ""
    reporting: str | None = None
    commands: tuple[str, ...] = ()
    source: str = ""
    weak: bool = False
    hard_needs_rcpt: bool = False

    @property
    def reading(self) -> Reading:
        """The row of the hard/soft table (:data:`postline.bounce.policy.HARD_TABLE`)."""
        if not self.hard:
            return "never"
        return "generic" if self.hard_needs_rcpt else "address"

    @property
    def has_conditions(self) -> bool:
        """Whether the rule looks at anything besides the text."""
        return bool(
            self.codes
            or self.statuses
            or self.actions
            or self.remote
            or self.reporting
            or self.commands
        )

    def condition_pattern(self) -> str:
        """A regex for ``code NUL status NUL action NUL remote NUL reporting NUL command``
        (the non-text conditions)."""
        code = _alternatives(_code_regex(c) for c in self.codes) if self.codes else r"\d*"
        status = (
            _alternatives(_status_regex(s) for s in self.statuses) if self.statuses else r"[\d.]*"
        )
        action = _alternatives(re.escape(a) for a in self.actions) if self.actions else r"[a-z]*"
        remote = rf"[^\x00]*?(?:{self.remote})[^\x00]*" if self.remote else r"[^\x00]*"
        reporting = rf"[^\x00]*?(?:{self.reporting})[^\x00]*" if self.reporting else r"[^\x00]*"
        command = (
            _alternatives(re.escape(c.lower()) for c in self.commands)
            if self.commands
            else r"[a-z ]*"
        )
        return rf"{code}\x00{status}\x00{action}\x00{remote}\x00{reporting}\x00{command}"

    def pattern(self) -> str:
        """This rule as one regex over the whole subject line (conditions NUL text)."""
        text = ".*?" + _alternatives(self.text) if self.text else ""
        return rf"{self.condition_pattern()}\x00{text}"


@functools.lru_cache(maxsize=256)
def _trigrams(text: str) -> frozenset[str]:
    # Cached: a bounce that lists many recipients classifies its whole text for each.
    return frozenset(text[i : i + 3] for i in range(len(text) - 2))


def _compile_text(pattern: str) -> re.Pattern[str]:
    """Compile a text pattern for the lower-cased text: without IGNORECASE (several
    times faster) unless the pattern itself has upper-case letters outside escapes."""
    if re.search(r"[A-Z]", re.sub(r"\\.", "", pattern)):
        return re.compile(pattern, _FLAGS)
    return re.compile(pattern, re.DOTALL)


def _alternatives(parts: Iterable[str]) -> str:
    return "(?:" + "|".join(f"(?:{p})" for p in parts) + ")"


def _code_regex(code: str) -> str:
    return "".join(r"\d" if ch == "x" else ch for ch in code)


def _status_regex(status: str) -> str:
    """``x`` alone is any number; ``x`` inside digits is one digit (``7xx`` = 700-799)."""
    return r"\.".join(
        r"\d{1,3}" if part == "x" else part.replace("x", r"\d") for part in status.split(".")
    )


@dataclass(frozen=True)
class RuleSet:
    """An ordered list of rules, matched as one set (first matching rule wins).

    Matching is a regex-set search: every text pattern is reduced at load time to
    literals one of which any match must contain (:mod:`postline.bounce._prefilter`), a
    reply's text is checked for those literals, and only the rules whose literals occur
    (plus the rules without text) are tried, in priority order, each as one anchored
    regex over the canonical subject line. :meth:`match_reference` runs the whole set
    as a single alternation instead; both always agree.
    """

    rules: tuple[Rule, ...]
    by_name: dict[str, Rule] = field(init=False, repr=False, compare=False)
    # (rule index, pattern index or -1 for "no text") → compiled checks
    _conditions: tuple[re.Pattern[str] | None, ...] = field(init=False, repr=False, compare=False)
    _patterns: dict[tuple[int, int], re.Pattern[str]] = field(init=False, repr=False, compare=False)
    # trigram → the literals it was chosen for, each with the (rule, pattern) keys it gates
    _by_trigram: dict[str, tuple[tuple[str, tuple[tuple[int, int], ...]], ...]] = field(
        init=False, repr=False, compare=False
    )
    _trigrams: frozenset[str] = field(init=False, repr=False, compare=False)
    _always: frozenset[tuple[int, int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names: dict[str, Rule] = {}
        for rule in self.rules:
            if rule.name in names:
                first = names[rule.name]
                raise RuleError(
                    f"duplicate rule name (first defined in {first.source or 'this file'})",
                    source=rule.source,
                    rule=rule.name,
                )
            names[rule.name] = rule
        conditions = tuple(
            re.compile(r.condition_pattern(), _FLAGS | re.MULTILINE) if r.has_conditions else None
            for r in self.rules
        )
        patterns: dict[tuple[int, int], re.Pattern[str]] = {}
        by_literal: dict[str, list[tuple[int, int]]] = {}
        always: set[tuple[int, int]] = set()
        for i, rule in enumerate(self.rules):
            if not rule.text:
                always.add((i, -1))
                continue
            for j, pattern in enumerate(rule.text):
                patterns[(i, j)] = _compile_text(pattern)
                need = required_literals(pattern)
                if need is None:
                    always.add((i, j))
                    continue
                for literal in need:
                    by_literal.setdefault(literal, []).append((i, j))
        object.__setattr__(self, "by_name", names)
        object.__setattr__(self, "_conditions", conditions)
        object.__setattr__(self, "_patterns", patterns)
        # Each literal is looked up through its rarest trigram (rarest among the literals),
        # so a text is only tested for the few literals whose trigram it contains.
        counts: dict[str, int] = {}
        for literal in by_literal:
            for gram in _trigrams(literal):
                counts[gram] = counts.get(gram, 0) + 1
        by_trigram: dict[str, list[tuple[str, tuple[tuple[int, int], ...]]]] = {}
        for literal, keys in sorted(by_literal.items()):
            gram = min(sorted(_trigrams(literal)), key=lambda g: counts[g])
            by_trigram.setdefault(gram, []).append((literal, tuple(keys)))
        object.__setattr__(self, "_by_trigram", {k: tuple(v) for k, v in by_trigram.items()})
        object.__setattr__(self, "_trigrams", frozenset(by_trigram))
        object.__setattr__(self, "_always", frozenset(always))

    @staticmethod
    def _head(
        code: int | None,
        status: str | None,
        action: str | None,
        remote: str | None,
        reporting: str | None = None,
        command: str | None = None,
    ) -> str:
        return "\x00".join(
            (
                str(code) if code is not None else "",
                status or "",
                action or "",
                # A host ends in a line break so that a pattern's ``$`` (matched in
                # MULTILINE mode) means the end of the host name.
                (remote or "").lower().replace("\x00", "").replace("\n", " ") + "\n",
                (reporting or "").lower().replace("\x00", "").replace("\n", " ") + "\n",
                (command or "").lower() if command in COMMANDS else "",
            )
        )

    def match(
        self,
        *,
        code: int | None,
        status: str | None,
        action: str | None,
        remote: str | None,
        text: str,
        reporting: str | None = None,
        command: str | None = None,
    ) -> Rule | None:
        """The first rule whose conditions hold, or None. ``text`` must be normalised;
        ``command`` is one of :data:`COMMANDS` (anything else counts as unknown)."""
        head = self._head(code, status, action, remote, reporting, command)
        candidates = set(self._always)
        for gram in self._trigrams.intersection(_trigrams(text)):
            for literal, keys in self._by_trigram[gram]:
                if literal in text:
                    candidates.update(keys)
        failed_rule = -1
        for i, j in sorted(candidates):
            if i == failed_rule:
                continue
            condition = self._conditions[i]
            if condition is not None and condition.fullmatch(head) is None:
                failed_rule = i
                continue
            if j < 0 or self._patterns[(i, j)].search(text):
                return self.rules[i]
        return None

    @functools.cached_property
    def _reference(self) -> re.Pattern[str]:
        body = "|".join(f"(?P<r{i}>{r.pattern()})" for i, r in enumerate(self.rules))
        return re.compile(body or "(?!)", _FLAGS | re.MULTILINE)

    def match_reference(
        self,
        *,
        code: int | None,
        status: str | None,
        action: str | None,
        remote: str | None,
        text: str,
        reporting: str | None = None,
        command: str | None = None,
    ) -> Rule | None:
        """:meth:`match` as one alternation of every rule (slower; the specification)."""
        head = self._head(code, status, action, remote, reporting, command)
        m = self._reference.match(head + "\x00" + text)
        if m is None or m.lastgroup is None:
            return None
        return self.rules[int(m.lastgroup[1:])]

    def rank(self, name: str) -> int:
        """The priority of rule ``name`` (0 = first); past the end for unknown names."""
        rule = self.by_name.get(name)
        return self.rules.index(rule) if rule is not None else len(self.rules)

    def __len__(self) -> int:
        return len(self.rules)


# --- loading and validation -------------------------------------------------------------


def _string_list(value: Any, key: str, source: str, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise RuleError(f"{key!r} must be a non-empty list of strings", source=source, rule=name)
    return tuple(value)


def _check_regex(pattern: str, key: str, source: str, name: str) -> None:
    if pattern.startswith("^"):
        raise RuleError(
            f"{key} pattern {pattern!r} starts with '^': patterns are searched anywhere "
            "in the text, remove the anchor",
            source=source,
            rule=name,
        )
    if "(?P<" in pattern or "(?P=" in pattern or re.search(r"\\[1-9]", pattern):
        raise RuleError(
            f"{key} pattern {pattern!r} uses named groups or back-references, "
            "which rules may not use",
            source=source,
            rule=name,
        )
    try:
        re.compile(f"(?:{pattern})", re.IGNORECASE | re.DOTALL)
    except re.error as exc:
        raise RuleError(
            f"{key} pattern {pattern!r} is not a valid regular expression: {exc}",
            source=source,
            rule=name,
        ) from exc


def _rule_from_table(table: Any, source: str, index: int, weak: bool) -> Rule:
    if not isinstance(table, dict):
        raise RuleError(f"entry {index} of [[rule]] is not a table", source=source)
    name = table.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise RuleError(
            f"[[rule]] number {index} needs a 'name' of lower-case letters, digits, '.', '_' "
            f"or '-' (got {name!r})",
            source=source,
        )
    unknown = set(table) - _KEYS
    if unknown:
        raise RuleError(
            f"unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}", source=source, rule=name
        )
    category = table.get("category")
    if category not in CATEGORIES:
        raise RuleError(
            f"category {category!r} is not one of {', '.join(CATEGORIES)}",
            source=source,
            rule=name,
        )
    cat = Category(category)
    hard = table.get("hard", cat in HARD_CATEGORIES)
    needs_rcpt = hard == "rcpt"
    if needs_rcpt:
        hard = True
    if not isinstance(hard, bool):
        raise RuleError("'hard' must be true, false or \"rcpt\"", source=source, rule=name)
    codes: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    text: tuple[str, ...] = ()
    if "codes" in table:
        codes = tuple(c.lower() for c in _string_list(table["codes"], "codes", source, name))
        for c in codes:
            if not _CODE.match(c):
                raise RuleError(
                    f"code {c!r} is not a reply code like '550', '55x' or '4xx'",
                    source=source,
                    rule=name,
                )
    if "statuses" in table:
        statuses = tuple(
            s.lower() for s in _string_list(table["statuses"], "statuses", source, name)
        )
        for s in statuses:
            if not _STATUS.match(s):
                raise RuleError(
                    f"status {s!r} is not an enhanced status code like '5.1.1', 'x.7.x' "
                    "or '5.7.6xx'",
                    source=source,
                    rule=name,
                )
    if "actions" in table:
        actions = tuple(a.lower() for a in _string_list(table["actions"], "actions", source, name))
        for a in actions:
            if a not in _ACTIONS:
                raise RuleError(
                    f"action {a!r} is not one of {', '.join(_ACTIONS)}", source=source, rule=name
                )
    remote = table.get("remote")
    if remote is not None:
        if not isinstance(remote, str) or not remote:
            raise RuleError("'remote' must be a non-empty regex string", source=source, rule=name)
        _check_regex(remote, "remote", source, name)
    reporting = table.get("reporting")
    if reporting is not None:
        if not isinstance(reporting, str) or not reporting:
            raise RuleError(
                "'reporting' must be a non-empty regex string", source=source, rule=name
            )
        _check_regex(reporting, "reporting", source, name)
    commands: tuple[str, ...] = ()
    if "commands" in table:
        commands = tuple(
            " ".join(c.upper().split())
            for c in _string_list(table["commands"], "commands", source, name)
        )
        for c in commands:
            if c not in COMMANDS:
                raise RuleError(
                    f"command {c!r} is not one of {', '.join(COMMANDS)}", source=source, rule=name
                )
    if "text" in table:
        text = _string_list(table["text"], "text", source, name)
        for pattern in text:
            _check_regex(pattern, "text", source, name)
    if not (codes or statuses or actions or remote or reporting or commands or text):
        raise RuleError(
            "a rule needs at least one condition (codes, statuses, actions, remote, "
            "reporting, commands or text)",
            source=source,
            rule=name,
        )
    description = table.get("description", "")
    if not isinstance(description, str):
        raise RuleError("'description' must be a string", source=source, rule=name)
    rule = Rule(
        name=name,
        category=cat,
        hard=hard,
        codes=codes,
        statuses=statuses,
        actions=actions,
        remote=remote,
        text=text,
        description=description,
        reporting=reporting,
        commands=commands,
        source=source,
        weak=weak,
        hard_needs_rcpt=needs_rcpt,
    )
    try:
        re.compile(rule.pattern(), re.IGNORECASE | re.DOTALL)
    except re.error as exc:
        raise RuleError(f"does not compile: {exc}", source=source, rule=name) from exc
    return rule


def parse_rules(text: str, source: str = "<rules>") -> list[Rule]:
    """Parse and validate one rules file; :class:`RuleError` names the faulty rule."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"not valid TOML: {exc}", source=source) from exc
    unknown = set(data) - {"rule", "weak"}
    if unknown:
        raise RuleError(
            f"unknown top-level key(s) {sorted(unknown)}; a rules file holds [[rule]] tables "
            "and optionally weak = true",
            source=source,
        )
    weak = data.get("weak", False)
    if not isinstance(weak, bool):
        raise RuleError("'weak' must be true or false", source=source)
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        raise RuleError("'rule' must be an array of tables ([[rule]])", source=source)
    rules = [_rule_from_table(t, source, i + 1, weak) for i, t in enumerate(tables)]
    RuleSet(tuple(rules))  # duplicate names within the file
    return rules


def shipped_rule_files() -> list[tuple[str, str]]:
    """(file name, text) of the shipped rule files, in load order."""
    folder = resources.files("postline.bounce").joinpath("rules")
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".toml")), key=lambda p: p.name)
    return [(p.name, p.read_text("utf-8")) for p in files]


@functools.cache
def shipped_rules() -> RuleSet:
    """The rules shipped in ``postline/bounce/rules/*.toml`` (compiled once)."""
    rules: list[Rule] = []
    for name, text in shipped_rule_files():
        rules.extend(parse_rules(text, f"postline/bounce/rules/{name}"))
    return RuleSet(tuple(rules))


def load_rules(paths: Sequence[Path], *, shipped: bool = True) -> RuleSet:
    """Rules from ``paths`` (in order, first match wins), then the shipped ones."""
    rules: list[Rule] = []
    for path in paths:
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise RuleError(f"cannot read: {exc}", source=str(path)) from exc
        rules.extend(parse_rules(text, str(path)))
    if shipped:
        rules.extend(shipped_rules().rules)
    return RuleSet(tuple(rules))


# --- classification ---------------------------------------------------------------------

_CODE_AND_STATUS = re.compile(
    r"(?<![\d.])([245]\d\d)[ \t-]+(?:#|\()?([245]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)"
)
_STATUS_ONLY = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)")
_CODE_ONLY = re.compile(
    r"(?:^|said:|<<<|\bsmtp;|reply:|response:|error:|code\s*:|\]:|\):|\s:)"
    r"[ \t]*([245]\d\d)(?=[ \t,;-]|$)",
    re.IGNORECASE | re.MULTILINE,
)


# The code (and enhanced code) that starts each line of a multi-line reply, once the
# reply has been folded onto one line: "550-5.7.1 a 550-5.7.1 b 550 5.7.1 c".
@functools.lru_cache(maxsize=256)
def extract_codes(text: str) -> tuple[int | None, str | None]:
    """The first SMTP reply code and enhanced status code found in ``text``.

    >>> extract_codes("host mx said: 550 5.1.1 <a@b>: no such user")
    (550, '5.1.1')
    """
    m = _CODE_AND_STATUS.search(text)
    if m:
        return int(m.group(1)), m.group(2)
    code_m = _CODE_ONLY.search(text)
    status_m = _STATUS_ONLY.search(text)
    code = int(code_m.group(1)) if code_m else None
    status = status_m.group(1) if status_m else None
    if code is not None and status is not None and str(code)[0] != status[0]:
        status = None
    return code, status


_COMMAND = re.compile(
    r"(?:in reply to|after|>>>|did not like our|most progress was|smtp command:?|smtp:|\[)\s*"
    r"(rcpt[ _]to|rcpt|mail[ _]from|end\s+of\s+data|final\s+data|pipelined\s+data|data|"
    r"initial connection|helo|ehlo|starttls|auth)\b",
    re.IGNORECASE,
)
_COMMAND_NAMES = {
    "rcpt to": "RCPT TO",
    "rcpt": "RCPT TO",
    "mail from": "MAIL FROM",
    "end of data": "DATA",
    "final data": "DATA",
    "pipelined data": "DATA",
    "data": "DATA",
    "initial connection": "CONNECT",
    "helo": "EHLO",
    "ehlo": "EHLO",
    "starttls": "STARTTLS",
    "auth": "AUTH",
}


@functools.lru_cache(maxsize=256)
def extract_command(text: str) -> str | None:
    """The SMTP command a bounce text says drew the failure (``RCPT TO``, ``DATA``...).

    >>> extract_command("host mx said: 550 no such user (in reply to RCPT TO command)")
    'RCPT TO'
    """
    m = _COMMAND.search(text)
    if m is None:
        return None
    return _COMMAND_NAMES.get(" ".join(m.group(1).lower().replace("_", " ").split()))


def _command_name(command: str | None) -> str | None:
    if not command:
        return None
    upper = " ".join(command.replace("_", " ").upper().split())
    if upper.startswith("DATA") or upper in ("END OF DATA", "BDAT"):
        return "DATA"
    return {"RCPT": "RCPT TO", "MAIL": "MAIL FROM", "HELO": "EHLO"}.get(upper, upper)


def _generic(status: str | None) -> bool:
    return status is None or status.endswith(".0.0")


# The local part of an e-mail address: a mailbox named "spam-reports", "policy" or
# "virus-alerts" says nothing about why the message failed.
_LOCAL_PART = re.compile(r"[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?=\[?[a-z0-9-]+[.\]])")


def normalise(text: str) -> str:
    """Fold white space and case the way rule patterns expect.

    Reply codes repeated at the start of each line of a multi-line reply are dropped
    after the first, so a phrase broken across lines still reads as one. The local
    part of every address becomes ``x`` (``<x@example.com>``), so that a mailbox name
    is never read as a reason.
    """
    folded = " ".join(text[:_MAX_TEXT].replace("\x00", " ").split()).lower()
    if "@" in folded:
        folded = _LOCAL_PART.sub("x@", folded)
    m = _CODE_AND_STATUS.search(folded)
    if m is None:
        return folded
    head, tail = folded[: m.end()], folded[m.end() :]
    code = m.group(1)
    tail = re.sub(rf"(?<=\s){code}[ -](?:{re.escape(m.group(2))}\s)?", "", " " + tail)
    return " ".join((head + tail).split())


def classify(
    text: str = "",
    *,
    code: int | None = None,
    status: str | None = None,
    action: str | None = None,
    remote: str | None = None,
    command: str | None = None,
    permanent: bool | None = None,
    rules: RuleSet | None = None,
    reporting: str | None = None,
) -> Classification:
    """Classify one failure.

    ``text`` is the reply text or DSN diagnostic; a reply code and enhanced status
    code found in it fill in ``code`` and ``status`` when those are missing (or when
    ``status`` is a generic ``X.0.0``). ``action`` is the DSN action (``failed``,
    ``delayed``...). ``remote`` is the host that refused, ``reporting`` the host that
    wrote the report. ``command`` is the SMTP command that drew the reply (found in
    the text when not given). ``permanent`` defaults to what the codes and action say.
    """
    rules = rules if rules is not None else shipped_rules()
    found_code, found_status = (
        (None, None) if code is not None and not _generic(status) else extract_codes(text)
    )
    if code is None:
        code = found_code
    if found_status and _generic(status) and (status is None or found_status[0] == status[0]):
        status = found_status
    if permanent is None:
        if action in ("failed", "delayed"):
            permanent = action == "failed"
        elif status is not None:
            permanent = status[0] == "5"
        else:
            permanent = code is None or code >= 500
    norm = normalise(text)
    command = _command_name(command) or extract_command(text)
    rule = rules.match(
        code=code,
        status=status,
        action=action,
        remote=remote,
        text=norm,
        reporting=reporting,
        command=command,
    )
    if rule is None:
        return Classification(Category.UNKNOWN, False, "default", status, text.strip())
    hard = is_hard(
        rule.reading,
        permanent=permanent,
        temporary_code=(status or str(code or ""))[:1] == "4",
        command=command,
        status=status,
        unknown_every_try=(
            action == "failed" and status == "4.1.1" and rule.category is Category.INVALID_RECIPIENT
        ),
    )
    return Classification(rule.category, hard, rule.name, status, text.strip())


def classify_reply(
    reply: Reply, remote: str | None = None, *, rules: RuleSet | None = None
) -> Classification:
    """Classify a synchronous SMTP reply (any 4xx or 5xx) from host ``remote``."""
    result = classify(
        reply.text,
        code=reply.code,
        status=reply.enhanced,
        remote=remote,
        command=reply.command or None,
        permanent=reply.permanent,
        rules=rules,
    )
    return Classification(result.category, result.hard, result.rule, result.status, str(reply))
