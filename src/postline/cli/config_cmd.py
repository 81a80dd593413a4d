"""``postline config`` (check, reference) and ``postline openapi``."""

from __future__ import annotations

import json
from typing import Any, cast

import typer
from pydantic import BaseModel

from postline.cli._common import ConfigOption, load
from postline.config import Config

__all__ = ["app", "openapi", "reference_markdown"]

app = typer.Typer(help="Check a configuration file or print the reference.", no_args_is_help=True)


@app.command("check")
def check(config: ConfigOption) -> None:
    """Validate a configuration file and print the effective settings."""
    cfg = load(config)
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))
    typer.echo("configuration OK", err=True)


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return ""
    else:
        value = field.default
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    nested = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            nested.append((name, annotation))
            continue
        key = f"{prefix}{name}"
        rows.append(f"| `{key}` | `{_default(field)}` | {field.description or ''} |")
    for name, sub in nested:
        rows.extend(_rows(sub, f"{prefix}{name}."))
    return rows


def reference_markdown() -> str:
    lines = ["| key | default | meaning |", "|---|---|---|", *_rows(Config, "")]
    return "\n".join(lines)


@app.command("reference")
def reference() -> None:
    """Print every configuration key with its default and meaning (Markdown)."""
    typer.echo(reference_markdown())


def openapi() -> None:
    """Print the HTTP API's OpenAPI document."""
    from postline.api.app import ApiContext, create_app

    ctx = ApiContext(
        config=Config.model_validate({}),
        store=cast(Any, None),
        ingestor=cast(Any, None),
        auth=cast(Any, None),
    )
    typer.echo(json.dumps(create_app(ctx).openapi(), indent=2, sort_keys=True))
