"""Helpers shared by the command modules."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from postline.config import Config, load_config
from postline.control import Actor, ControlContext
from postline.errors import ConfigError
from postline.store import create_store

__all__ = ["ConfigOption", "as_operator", "fail", "load", "run"]

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


async def as_operator(cfg: Config, fn: Callable[[ControlContext], Awaitable[T]]) -> T:
    """Open the configured store, run ``fn`` as the node's operator (actor ``cli``), close."""
    store = create_store(cfg)
    await store.open()
    try:
        return await fn(ControlContext(store, cfg, Actor.cli(), node_id="cli"))
    finally:
        await store.close()
