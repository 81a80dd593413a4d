"""``postline key``: a tenant's API keys on a node's admin API — list, create with
scopes, revoke (``--url`` / POSTLINE_URL, admin token in POSTLINE_ADMIN_TOKEN)."""

from __future__ import annotations

from typing import Annotated

import typer

from postline.cli._remote import JsonOption, TokenOption, UrlOption, admin_client, emit, table

__all__ = ["app"]

app = typer.Typer(
    help="A tenant's API keys, over a node's admin API: list, create, revoke.",
    no_args_is_help=True,
)

TenantArg = Annotated[str, typer.Argument(help="The tenant: its name or id.")]


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
            ["id", "name", "prefix", "scopes", "created", "last used", "revoked"],
            [
                (
                    k["id"],
                    k["name"],
                    k["prefix"],
                    " ".join(k["scopes"]),
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


@app.command("revoke")
def revoke(
    tenant: TenantArg,
    key_id: Annotated[str, typer.Argument(help="The key's id (see 'key ls').")],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke an API key: refused at once on that node, within [api] key_cache_ttl on
    the others."""
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
