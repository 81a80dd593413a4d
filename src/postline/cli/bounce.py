"""``postline bounce``: classify report messages and check classification rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from postline.bounce import Report, RuleError, RuleSet, analyze, load_rules, shipped_rules
from postline.bounce.classify import shipped_rule_files
from postline.cli._common import fail

__all__ = ["app", "report_lines"]

app = typer.Typer(
    help="Bounces, complaints and auto-replies: classify messages, check rules.",
    no_args_is_help=True,
)
rules_app = typer.Typer(help="The bounce classification rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")

RulesOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules",
        "-r",
        help="A rules file consulted before the shipped rules (repeatable).",
        exists=True,
        dir_okay=False,
    ),
]


def report_lines(file: str, report: Report, *, verbose: bool = False) -> list[dict[str, Any]]:
    """The JSON objects ``classify`` prints for one analysed file: one per recipient, or
    a single one with ``recipient`` null when the report names nobody."""
    lines: list[dict[str, Any]] = []
    for r in report.results:
        line: dict[str, Any] = {
            "file": file,
            "recipient": r.recipient,
            "status": r.status,
            "category": str(r.category),
            "hard": r.hard,
            "kind": report.kind,
        }
        if verbose:
            line |= {
                "action": r.action,
                "alias": r.alias,
                "rule": r.rule,
                "remote_mta": r.remote_mta,
                "diagnostic": r.diagnostic,
                "message_id": report.message_id,
                "postline_id": report.postline_id,
            }
        lines.append(line)
    if not lines:
        line = {
            "file": file,
            "recipient": None,
            "status": None,
            "category": None,
            "hard": False,
            "kind": report.kind,
        }
        if verbose:
            line |= {"message_id": report.message_id, "postline_id": report.postline_id}
        lines.append(line)
    return lines


def _rules(paths: list[Path] | None) -> RuleSet:
    try:
        return load_rules(paths) if paths else shipped_rules()
    except RuleError as exc:
        raise fail(str(exc), 1) from None


@app.command("classify")
def classify_files(
    files: Annotated[
        list[Path], typer.Argument(help="Message files (RFC 5322, as received).", dir_okay=False)
    ],
    rules: RulesOption = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Add action, rule, diagnostic, remote MTA and message ids."
        ),
    ] = False,
) -> None:
    """Print one JSON line per recipient of each DSN, complaint or auto-reply file:
    {"file", "recipient", "status", "category", "hard", "kind"}."""
    ruleset = _rules(rules)
    failed = False
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            typer.echo(json.dumps({"file": str(path), "error": str(exc)}))
            failed = True
            continue
        for line in report_lines(str(path), analyze(raw, rules=ruleset), verbose=verbose):
            typer.echo(json.dumps(line, ensure_ascii=False))
    if failed:
        raise typer.Exit(1)


@rules_app.command("validate")
def validate(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="A rules file to check with the shipped rules; without it, the shipped rules.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Check a rules file (or the shipped rules): TOML shape, categories, regexes, names."""
    try:
        if file is None:
            names = [name for name, _ in shipped_rule_files()]
            count = len(shipped_rules())
            typer.echo(f"OK: {count} shipped rules in {', '.join(names)}")
            return
        if not file.exists():
            raise fail(f"{file}: no such file", 1)
        combined = load_rules([file])
        own = sum(1 for r in combined.rules if r.source == str(file))
        typer.echo(f"OK: {own} rules in {file} (checked together with the shipped rules)")
    except RuleError as exc:
        raise fail(str(exc), 1) from None
