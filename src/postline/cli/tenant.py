"""``postline tenant``: create tenants and manage their API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from postline.cli._common import ConfigOption, fail, load, run
from postline.errors import IntegrityViolation
from postline.store import create_store
from postline.tenants import generate_key, hash_key, key_prefix

__all__ = ["app"]

app = typer.Typer(help="Tenants and API keys.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="Tenant name (letters, digits, '.', '_', '-').")]


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        raise fail(f"tenant name {name!r} is invalid: use 1-64 letters, digits, '.', '_' or '-'")


@app.command("create")
def create(name: Name, config: ConfigOption) -> None:
    """Create a tenant and print its first API key (alone on the last line)."""
    _check_name(name)
    cfg = load(config)

    async def main() -> str:
        store = create_store(cfg)
        await store.open()
        try:
            tenant = await store.create_tenant(name)
            key = generate_key()
            await store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
            typer.echo(f"tenant {name!r} created (id {tenant.id})")
            return key
        except IntegrityViolation:
            raise fail(
                f"a tenant named {name!r} already exists; use 'postline tenant key'"
            ) from None
        finally:
            await store.close()

    key = run(main())
    typer.echo(
        f"API key (shown once; keep it secret). Use it as 'Authorization: Bearer <key>' and as "
        f"the SMTP AUTH password with user '{name}':"
    )
    typer.echo(key)


@app.command("key")
def new_key(name: Name, config: ConfigOption) -> None:
    """Create another API key for a tenant (printed alone on the last line)."""
    cfg = load(config)

    async def main() -> str:
        store = create_store(cfg)
        await store.open()
        try:
            tenant = await store.get_tenant(name=name)
            if tenant is None:
                raise fail(f"no tenant named {name!r}; create it with 'postline tenant create'")
            key = generate_key()
            await store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
            return key
        finally:
            await store.close()

    key = run(main())
    typer.echo(f"new API key for {name!r}:")
    typer.echo(key)


@app.command("revoke")
def revoke(
    name: Name,
    prefix: Annotated[str, typer.Argument(help="The first 10 characters of the key.")],
    config: ConfigOption,
) -> None:
    """Revoke an API key by its prefix."""
    cfg = load(config)

    async def main() -> bool:
        store = create_store(cfg)
        await store.open()
        try:
            tenant = await store.get_tenant(name=name)
            if tenant is None:
                raise fail(f"no tenant named {name!r}")
            return await store.revoke_api_key(tenant.id, prefix)
        finally:
            await store.close()

    if not run(main()):
        raise fail(f"no active key of {name!r} starts with {prefix!r}")
    typer.echo(f"revoked {prefix}… of {name!r} (running nodes forget it within 10 seconds)")


@app.command("list")
def list_tenants(config: ConfigOption) -> None:
    """List tenants."""
    cfg = load(config)

    async def main() -> None:
        store = create_store(cfg)
        await store.open()
        try:
            for t in await store.list_tenants():
                typer.echo(f"{t.name}\t{t.id}")
        finally:
            await store.close()

    run(main())
