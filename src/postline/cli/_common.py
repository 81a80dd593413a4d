"""Helpers shared by the command modules."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from postline.config import Config, load_config
from postline.errors import ConfigError

__all__ = ["ConfigOption", "fail", "load", "run"]

T = TypeVar("T")

ConfigOption = Annotated[
    Path,
    typer.Option(
        "--config", "-c", help="The node's TOML configuration file.", envvar="POSTLINE_CONFIG"
    ),
]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"postline: {message}", err=True)
    return typer.Exit(code)


def load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise fail(str(exc)) from None


def run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
