"""``postline key``: a tenant's API keys on a node's admin API — list, create with
scopes, change their rate limit or scopes, revoke (``--url`` / POSTLINE_URL, admin token
in POSTLINE_ADMIN_TOKEN)."""

from __future__ import annotations

from typing import Annotated

import typer

from postline.cli._common import fail
from postline.cli._remote import (
    JsonOption,
    TokenOption,
    UrlOption,
    admin_client,
    emit,
    key_rate,
    limit_changes,
    table,
)

__all__ = ["app"]

app = typer.Typer(
    help="A tenant's API keys, over a node's admin API: list, create, change, revoke.",
    no_args_is_help=True,
)

TenantArg = Annotated[str, typer.Argument(help="The tenant: its name or id.")]
KeyArg = Annotated[str, typer.Argument(help="The key's id (see 'key ls').")]


@app.command("ls")
def ls(
    tenant: TenantArg,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The tenant's API keys (revoked ones too): id, name, prefix, scopes, use."""
    with admin_client(url, token) as api:
        found = api.find_tenant(tenant)
        data = api.keys(found["id"])

    def human() -> None:
        table(
            f"API keys of {found['name']}",
            ["id", "name", "prefix", "scopes", "rate", "created", "last used", "revoked"],
            [
                (
                    k["id"],
                    k["name"],
                    k["prefix"],
                    " ".join(k["scopes"]),
                    key_rate(k),
                    k["created_at"],
                    k["last_used_at"],
                    k["revoked_at"],
                )
                for k in data["keys"]
            ],
        )

    emit(data, as_json, human)


@app.command("create")
def create(
    tenant: TenantArg,
    url: UrlOption = None,
    token: TokenOption = None,
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="send, read, suppressions, domains or webhooks (repeatable); default: all.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create an API key and print it (alone on the last line; shown once)."""
    with admin_client(url, token) as api:
        found = api.find_tenant(tenant)
        data = api.create_key(found["id"], name=name, scopes=scope or None)

    def human() -> None:
        k = data["key"]
        typer.echo(
            f"API key {k['id']} of {found['name']!r} created with scopes "
            f"{', '.join(k['scopes'])}. Shown once; keep it secret:"
        )
        typer.echo(data["secret"])

    emit(data, as_json, human)


_KEY_LIMITS = {"rate": "rate_per_second", "burst": "burst"}


@app.command("limits")
def limits(
    tenant: TenantArg,
    key_id: KeyArg,
    url: UrlOption = None,
    token: TokenOption = None,
    rate: Annotated[
        int | None,
        typer.Option(
            "--rate",
            min=0,
            help="The key's own recipients per second, on top of its tenant's (0: none).",
            show_default=False,
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(
            "--burst", min=0, help="Its burst (0: one second's worth).", show_default=False
        ),
    ] = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(
            "--clear",
            help="Put rate or burst back to the [limits] key default (repeatable; 'all' for both).",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change an API key's own rate limit: applies at once in the worker process that
    takes it, within [api] key_cache_ttl elsewhere. Without options, show it."""
    changes = limit_changes(_KEY_LIMITS, {"rate": rate, "burst": burst}, clear)
    with admin_client(url, token) as api:
        found = api.find_tenant(tenant)
        if changes:
            data = api.update_key(found["id"], key_id, changes)
        else:
            listed = [k for k in api.keys(found["id"])["keys"] if k["id"] == key_id]
            if not listed:
                raise fail(f"tenant {found['name']!r} has no API key with id {key_id!r}", code=1)
            data = listed[0]
    emit(
        data,
        as_json,
        lambda: typer.echo(
            f"API key {data['id']} ({data['prefix']}…) of {found['name']!r}: rate {key_rate(data)}"
        ),
    )


@app.command("scopes")
def scopes(
    tenant: TenantArg,
    key_id: KeyArg,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="send, read, suppressions, domains or webhooks (repeatable)."),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every tenant scope.")] = False,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace an API key's scopes (applies at once in the worker process that takes
    it, within [api] key_cache_ttl elsewhere)."""
    if every == bool(scope):
        raise fail("give the scopes (--scope, repeatable) or --all", code=2)
    with admin_client(url, token) as api:
        found = api.find_tenant(tenant)
        data = api.update_key(found["id"], key_id, {"scopes": None if every else scope})
    emit(
        data,
        as_json,
        lambda: typer.echo(
            f"API key {data['id']} ({data['prefix']}…) of {found['name']!r}: scopes "
            f"{', '.join(data['scopes'])}"
        ),
    )


@app.command("revoke")
def revoke(
    tenant: TenantArg,
    key_id: KeyArg,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke an API key: refused at once by the worker process that takes it, within
    [api] key_cache_ttl elsewhere."""
    with admin_client(url, token) as api:
        found = api.find_tenant(tenant)
        data = api.revoke_key(found["id"], key_id)
    emit(
        data,
        as_json,
        lambda: typer.echo(
            f"revoked API key {data['id']} ({data['prefix']}…) of {found['name']!r}"
        ),
    )
