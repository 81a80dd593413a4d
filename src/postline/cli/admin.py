"""``postline admin``: admin API tokens, made on the node with its configuration file."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from postline.cli._common import ConfigOption, as_operator, fail, load, run
from postline.control import tokens
from postline.errors import NotFound, ValidationError

__all__ = ["app"]


app = typer.Typer(help="The admin API: its tokens.", no_args_is_help=True)
token_app = typer.Typer(help="Admin API tokens: create, list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@token_app.command("create")
def create(
    config: ConfigOption,
    name: Annotated[str, typer.Option("--name", help="What the token is for.")] = "",
) -> None:
    """Create an admin token and print it (alone on the last line; shown once)."""
    cfg = load(config)
    new = run(as_operator(cfg, lambda ctx: tokens.create_token(ctx, name)))
    typer.echo(
        f"admin token {new.token.id} created. Shown once; keep it secret. Use it as "
        "'Authorization: Bearer <token>' on /admin/v1:"
    )
    typer.echo(new.secret)


@token_app.command("list")
def list_tokens(config: ConfigOption) -> None:
    """List admin tokens: id, name, prefix, source, created, last used, revoked (tab-separated)."""
    cfg = load(config)
    for t in run(as_operator(cfg, tokens.list_tokens)):
        fields = (t.id, t.name or "-", t.prefix or "-", t.source)
        times = (_when(t.created_at), _when(t.last_used_at), _when(t.revoked_at))
        typer.echo("\t".join((*fields, *times)))


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="The token's id (see 'list').")],
    config: ConfigOption,
) -> None:
    """Revoke an admin token: it is refused from the next request on."""
    cfg = load(config)
    try:
        run(as_operator(cfg, lambda ctx: tokens.revoke_token(ctx, token_id)))
    except (NotFound, ValidationError) as exc:
        raise fail(str(exc)) from None
    typer.echo(f"revoked admin token {token_id}")
