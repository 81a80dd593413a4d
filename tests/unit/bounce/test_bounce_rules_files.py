"""Rules as data: loading, validation errors that name the rule, user rules first."""

from __future__ import annotations

from pathlib import Path

import pytest

from postline.bounce import Category, RuleError, classify, load_rules, parse_rules, shipped_rules
from postline.bounce.classify import CATEGORIES, shipped_rule_files


def test_shipped_rules_load_and_cover_every_failure_category() -> None:
    rules = shipped_rules()
    assert len(rules) > 40
    used = {r.category for r in rules.rules}
    # auto_reply and complaint come from the message kind; unknown is the default and the
    # category of the registry's success details (X.1.5, X.1.9, X.3.6).
    assert used == set(CATEGORIES) - {"auto_reply", "complaint"}
    assert [name for name, _ in shipped_rule_files()] == sorted(
        name for name, _ in shipped_rule_files()
    )


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[rule]]\nname = "a"\ncategory = "nope"\ntext = ["x"]\n', "category 'nope'"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\ntext = ["("]\n', "not a valid regular"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\ntext = ["^x"]\n', "starts with '^'"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\ntext = ["(?P<n>x)"]\n', "named groups"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\n', "at least one condition"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\ntext = ["x"]\ncolour = 1\n', "unknown key"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\ncodes = ["5"]\n', "not a reply code"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\nstatuses = ["5.1"]\n', "enhanced status"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\nactions = ["gone"]\n', "action 'gone'"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\nhard = "yes"\ntext = ["x"]\n', "'hard'"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\ntext = []\n', "non-empty list"),
        (
            '[[rule]]\nname = "a"\ncategory = "policy"\ntext = ["x"]\n'
            '[[rule]]\nname = "a"\ncategory = "policy"\ntext = ["y"]\n',
            "duplicate rule name",
        ),
    ],
)
def test_invalid_rules_are_refused_with_the_rule_named(toml: str, message: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(toml, "custom.toml")
    text = str(info.value)
    assert message in text
    assert "custom.toml" in text
    assert "rule 'a'" in text


def test_broken_toml_and_nameless_rules_are_refused() -> None:
    with pytest.raises(RuleError, match="not valid TOML"):
        parse_rules("[[rule]\n", "x.toml")
    with pytest.raises(RuleError, match="needs a 'name'"):
        parse_rules('[[rule]]\ncategory = "policy"\ntext = ["x"]\n', "x.toml")
    with pytest.raises(RuleError, match="unknown top-level"):
        parse_rules("rules = 1\n", "x.toml")


def test_user_rules_come_before_the_shipped_ones(tmp_path: Path) -> None:
    custom = tmp_path / "ours.toml"
    custom.write_text(
        '[[rule]]\nname = "our-mx-quota"\ncategory = "rate_limited"\n'
        'remote = "\\\\.mx\\\\.example$"\ntext = ["quota"]\n',
        encoding="utf-8",
    )
    rules = load_rules([custom])
    ours = classify("452 4.2.2 quota exceeded", remote="in.mx.example", rules=rules)
    assert (ours.category, ours.rule) == (Category.RATE_LIMITED, "our-mx-quota")
    elsewhere = classify("452 4.2.2 quota exceeded", remote="mx.other.example", rules=rules)
    assert elsewhere.category == Category.MAILBOX_FULL


def test_a_user_rule_may_not_reuse_a_shipped_name(tmp_path: Path) -> None:
    custom = tmp_path / "dup.toml"
    custom.write_text('[[rule]]\nname = "virus"\ncategory = "policy"\ntext = ["x"]\n')
    with pytest.raises(RuleError, match="duplicate rule name"):
        load_rules([custom])


def test_hard_rcpt_and_weak_files_are_understood() -> None:
    rules = parse_rules(
        'weak = true\n[[rule]]\nname = "w"\ncategory = "invalid_recipient"\nhard = "rcpt"\n'
        'text = ["nobody"]\n',
        "w.toml",
    )
    (rule,) = rules
    assert rule.weak and rule.hard and rule.hard_needs_rcpt


def test_rules_may_name_the_reporting_host_and_the_smtp_command() -> None:
    rules = parse_rules(
        '[[rule]]\nname = "late-unknown"\ncategory = "policy"\ncommands = ["data"]\n'
        'text = ["unknown user"]\n'
        '[[rule]]\nname = "gateway"\ncategory = "spam_block"\n'
        'reporting = "gw\\\\.example$"\ntext = ["unknown user"]\n',
        "custom.toml",
    )
    assert rules[0].commands == ("DATA",)
    ruleset = load_rules([], shipped=False)
    assert len(ruleset) == 0
    from postline.bounce.classify import RuleSet

    ours = RuleSet(tuple(rules))
    late = classify("550 unknown user (in reply to end of DATA command)", rules=ours)
    assert late.rule == "late-unknown"
    early = classify("550 unknown user (in reply to RCPT TO command)", rules=ours)
    assert early.rule == "default"
    gateway = classify("550 unknown user", reporting="mx.gw.example", rules=ours)
    assert gateway.rule == "gateway"
    elsewhere = classify("550 unknown user", reporting="gw.example.org", rules=ours)
    assert elsewhere.rule == "default"
    given = classify("550 unknown user", command="DATA", rules=ours)
    assert given.rule == "late-unknown"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[[rule]]\nname = "a"\ncategory = "policy"\ncommands = ["QUIT"]\n', "command 'QUIT'"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\nreporting = "("\n', "not a valid regular"),
        ('[[rule]]\nname = "a"\ncategory = "policy"\nreporting = ""\n', "'reporting' must"),
    ],
)
def test_invalid_reporting_and_commands_are_refused(toml: str, message: str) -> None:
    with pytest.raises(RuleError) as info:
        parse_rules(toml, "custom.toml")
    assert message in str(info.value)
