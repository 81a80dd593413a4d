"""``postline config`` (check, reference) and ``postline openapi``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, cast, get_args, get_origin

import typer
from pydantic import BaseModel

from postline import preflight
from postline.cli._common import ConfigOption, fail, load
from postline.config import Config, _duration
from postline.errors import ConfigError
from postline.units import format_duration

__all__ = ["app", "openapi", "reference_markdown", "with_reference"]

app = typer.Typer(help="Check a configuration file or print the reference.", no_args_is_help=True)


@app.command("check")
def check(
    config: ConfigOption,
    listen: Annotated[
        bool,
        typer.Option(
            help="Also check that the listen addresses are free (--no-listen for the "
            "configuration of a node that is running)."
        ),
    ] = True,
) -> None:
    """Validate a configuration file, check what a node needs from this host to start
    with it (certificate and key files, listen addresses; the checks `serve` makes), and
    print the effective settings."""
    cfg = load(config)
    try:
        preflight.check(cfg, listen=listen)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))
    typer.echo("configuration OK", err=True)


def _is_duration(field: Any) -> bool:
    return any(getattr(m, "func", None) is _duration for m in field.metadata)


def _default(field: Any) -> str:
    if field.is_required():
        return "(required)"
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return ""
    else:
        value = field.default
    if _is_duration(field) and isinstance(value, int | float):
        return f'"{format_duration(value)}"'
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) is list:
        (item,) = get_args(annotation)
        if isinstance(item, type) and issubclass(item, BaseModel):
            return item
    return None


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    nested = []
    for name, field in model.model_fields.items():
        sub = _model_of(field.annotation)
        if sub is not None:
            is_list = get_origin(field.annotation) is list
            if is_list:
                rows.append(f"| `{prefix}{name}` | `[]` | {field.description or ''} |")
            nested.append((f"{name}[]" if is_list else name, sub))
            continue
        key = f"{prefix}{name}"
        rows.append(f"| `{key}` | `{_default(field)}` | {field.description or ''} |")
    for name, sub in nested:
        rows.extend(_rows(sub, f"{prefix}{name}."))
    return rows


def reference_markdown() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|", *_rows(Config, "")]
    return "\n".join(lines)


START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"


def with_reference(text: str) -> str:
    """``text`` (the README) with the reference table between its markers replaced."""
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{reference_markdown()}\n{END}{tail}"


@app.command("reference")
def reference(
    update: Annotated[
        Path | None, typer.Option(help="Rewrite the table between the markers of this file.")
    ] = None,
) -> None:
    """Print every configuration key with its default and meaning (Markdown)."""
    if update is None:
        typer.echo(reference_markdown())
        return
    update.write_text(with_reference(update.read_text(encoding="utf-8")), encoding="utf-8")


def openapi() -> None:
    """Print the HTTP API's OpenAPI document."""
    from postline.api.app import create_app
    from postline.api.context import ApiContext

    ctx = ApiContext(
        config=Config.model_validate({}),
        store=cast(Any, None),
        ingestor=cast(Any, None),
        auth=cast(Any, None),
    )
    typer.echo(json.dumps(create_app(ctx).openapi(), indent=2, sort_keys=True))
