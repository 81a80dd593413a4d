"""``postline bounce classify`` and ``postline bounce rules validate``."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from postline.cli.bounce import app

SAMPLES = Path(__file__).resolve().parent / "samples"
KEYS = {"file", "recipient", "status", "category", "hard", "kind"}


def test_classify_prints_one_json_line_per_recipient() -> None:
    files = [SAMPLES / "exim_plain.eml", SAMPLES / "ordinary_reply.eml", SAMPLES / "arf_abuse.eml"]
    result = CliRunner().invoke(app, ["classify", *map(str, files)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert all(set(line) == KEYS for line in lines)
    assert [(Path(x["file"]).name, x["recipient"], x["kind"]) for x in lines] == [
        ("exim_plain.eml", "frank@example.net", "dsn"),
        ("exim_plain.eml", "grace@example.org", "dsn"),
        ("ordinary_reply.eml", None, "other"),
        ("arf_abuse.eml", "wendy@example-mail.com", "arf"),
    ]
    frank = lines[0]
    assert (frank["status"], frank["category"], frank["hard"]) == (
        "5.1.1",
        "invalid_recipient",
        True,
    )


def test_classify_verbose_adds_the_details() -> None:
    result = CliRunner().invoke(app, ["classify", "-v", str(SAMPLES / "postfix_dsn.eml")])
    assert result.exit_code == 0, result.output
    first = json.loads(result.output.splitlines()[0])
    assert set(first) > KEYS
    assert first["postline_id"] == "01JNB7Y3K2QW"
    assert first["rule"]


def test_classify_with_extra_rules(tmp_path: Path) -> None:
    rules = tmp_path / "ours.toml"
    rules.write_text('[[rule]]\nname = "ours"\ncategory = "policy"\ntext = ["quota exceeded"]\n')
    result = CliRunner().invoke(
        app, ["classify", "--rules", str(rules), str(SAMPLES / "exim_plain.eml")]
    )
    assert result.exit_code == 0, result.output
    grace = json.loads(result.output.splitlines()[1])
    assert grace["category"] == "policy"


def test_rules_validate_shipped_and_given_files(tmp_path: Path) -> None:
    runner = CliRunner()
    shipped = runner.invoke(app, ["rules", "validate"])
    assert shipped.exit_code == 0
    assert shipped.output.startswith("OK:")
    good = tmp_path / "good.toml"
    good.write_text('[[rule]]\nname = "x"\ncategory = "policy"\ntext = ["nope"]\n')
    ok = runner.invoke(app, ["rules", "validate", str(good)])
    assert ok.exit_code == 0 and "1 rules" in ok.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "broken"\ncategory = "policy"\ntext = ["("]\n')
    refused = runner.invoke(app, ["rules", "validate", str(bad)])
    assert refused.exit_code == 1
    assert "rule 'broken'" in refused.output
    missing = runner.invoke(app, ["rules", "validate", str(tmp_path / "none.toml")])
    assert missing.exit_code == 1
