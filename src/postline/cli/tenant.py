"""``postline tenant``: tenants — listed, shown, created, limited, paused, resumed and
deleted.

With ``--url`` (or POSTLINE_URL) a command talks to that node's admin API (an admin token
in POSTLINE_ADMIN_TOKEN); without it, ``create``, ``pause``, ``resume``, ``key``,
``revoke``, ``list`` and ``status`` open the store of the node's ``--config`` file on this
host (bootstrap, before any admin token exists). ``ls``, ``show``, ``limits`` and
``delete`` are over the admin API only."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from postline.cli._common import ConfigOption, as_operator, fail, load, run
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
from postline.config import Config
from postline.control import ControlContext, tenants
from postline.errors import IntegrityViolation, ValidationError
from postline.reputation.rates import OK, Counts, percent
from postline.reputation.service import tenant_counts
from postline.store import Store, create_store
from postline.store.base import Tenant
from postline.tenants import generate_key, hash_key, key_prefix

__all__ = ["app"]

T = TypeVar("T")

app = typer.Typer(help="Tenants, API keys, pauses.", no_args_is_help=True)

Name = Annotated[str, typer.Argument(help="Tenant name (letters, digits, '.', '_', '-').")]
Either = Annotated[str, typer.Argument(help="The tenant: its name (or, with --url, its id).")]
LocalConfig = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="The node's TOML configuration file: open its store on this host (when no "
        "--url is given).",
        envvar="POSTLINE_CONFIG",
        show_default=False,
    ),
]


def _local(config: Path | None) -> Config:
    if config is None:
        raise fail(
            "give --url (or POSTLINE_URL) for a node's admin API, or --config for the "
            "store of a node on this host"
        )
    return load(config)


def _status(t: dict[str, Any]) -> str:
    s = t["status"]
    return str(s["status"]) + (f" ({s['reason']})" if s["reason"] and s["status"] != "ok" else "")


def _tenant_table(tenants: list[dict[str, Any]]) -> None:
    table(
        "Tenants",
        ["name", "id", "status", "changed", "by", "created"],
        [
            (
                t["name"],
                t["id"],
                _status(t),
                t["status"]["changed_at"],
                t["status"]["changed_by"],
                t["created_at"],
            )
            for t in tenants
        ],
    )


@app.command("ls")
def ls(url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """Every tenant with its sending status (over the admin API)."""
    with admin_client(url, token) as api:
        data = api.tenants()
    emit(data, as_json, lambda: _tenant_table(data["tenants"]))


def _unlimited(n: int) -> str:
    return str(n) if n else "unlimited"


def _limits_table(t: dict[str, Any]) -> None:
    """The tenant's limits (its own or the [limits] default) and its usage against them."""
    lim = t["limits"]
    own = set(lim["overridden"])
    usage = t.get("usage") or {}

    def whose(field: str) -> str:
        return "tenant" if field in own else "[limits] default"

    def used(period: str) -> tuple[str, str, str]:
        u = usage.get(period)
        if not u:
            return ("-", "-", "-")
        left = "-" if u["remaining"] is None else str(u["remaining"])
        return (f"{u['used']} ({u['period']})", left, u["resets_at"])

    rate = lim["rate_per_second"]
    table(
        f"Limits of {t['name']}",
        ["limit", "value", "set by", "used", "remaining", "resets"],
        [
            ("rate", f"{rate}/s" if rate else "unlimited", whose("rate_per_second"), "", "", ""),
            ("burst", lim["burst"] if rate else "-", whose("burst"), "", "", ""),
            ("daily", _unlimited(lim["daily_quota"]), whose("daily_quota"), *used("day")),
            ("monthly", _unlimited(lim["monthly_quota"]), whose("monthly_quota"), *used("month")),
        ],
    )


@app.command("show")
def show(
    tenant: Either, url: UrlOption = None, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """One tenant: its status, limits, usage of today and this month, and its API keys
    (over the admin API)."""
    with admin_client(url, token) as api:
        data = api.tenant(api.find_tenant(tenant)["id"])
        keys = api.keys(data["id"])["keys"]

    def human() -> None:
        _tenant_table([data])
        _limits_table(data)
        table(
            "API keys",
            ["id", "name", "prefix", "scopes", "rate", "last used", "revoked"],
            [
                (
                    k["id"],
                    k["name"],
                    k["prefix"],
                    " ".join(k["scopes"]),
                    key_rate(k),
                    k["last_used_at"],
                    k["revoked_at"],
                )
                for k in keys
            ],
        )

    emit(data, as_json, human)


_LIMIT_NAMES = {
    "rate": "rate_per_second",
    "burst": "burst",
    "daily": "daily_quota",
    "monthly": "monthly_quota",
}


@app.command("limits")
def limits(
    tenant: Either,
    url: UrlOption = None,
    token: TokenOption = None,
    rate: Annotated[
        int | None,
        typer.Option(
            "--rate",
            min=0,
            help="Recipients per second, HTTP and SMTP together (0: unlimited).",
            show_default=False,
        ),
    ] = None,
    burst: Annotated[
        int | None,
        typer.Option(
            "--burst",
            min=0,
            help="Recipients at once from an idle bucket (0: one second's worth).",
            show_default=False,
        ),
    ] = None,
    daily: Annotated[
        int | None,
        typer.Option(
            "--daily", min=0, help="Recipients per UTC day (0: unlimited).", show_default=False
        ),
    ] = None,
    monthly: Annotated[
        int | None,
        typer.Option(
            "--monthly",
            min=0,
            help="Recipients per UTC month (0: unlimited).",
            show_default=False,
        ),
    ] = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(
            "--clear",
            help="Put a limit back to its [limits] default: rate, burst, daily, monthly "
            "(repeatable) or all.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change a tenant's own rate limit and quotas (over the admin API); the limits not
    named stay. Applies at once in the worker process that takes it, within [api]
    key_cache_ttl elsewhere. Without options, show the limits and the usage."""
    values = {"rate": rate, "burst": burst, "daily": daily, "monthly": monthly}
    changes = limit_changes(_LIMIT_NAMES, values, clear)
    with admin_client(url, token) as api:
        found = api.find_tenant(tenant)
        tid = found["id"]
        data = api.set_tenant_limits(tid, changes) if changes else api.tenant(tid)
    emit(data, as_json, lambda: _limits_table(data))


async def _with_tenant(cfg: Config, name: str, fn: Callable[[Store, Tenant], Awaitable[T]]) -> T:
    """Open the configured store, find the tenant ``name`` (or fail), run ``fn``, close."""
    store = create_store(cfg)
    await store.open()
    try:
        tenant = await store.get_tenant(name=name)
        if tenant is None:
            raise fail(f"no tenant named {name!r}; create it with 'postline tenant create'")
        return await fn(store, tenant)
    finally:
        await store.close()


@app.command("create")
def create(
    name: Name,
    config: LocalConfig = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Create a tenant and print its first API key (alone on the last line)."""
    if url:
        with admin_client(url, token) as api:
            data = api.create_tenant(name)

        def human() -> None:
            typer.echo(f"tenant {name!r} created (id {data['tenant']['id']})")
            typer.echo(
                "API key (shown once; keep it secret). Use it as 'Authorization: Bearer "
                f"<key>' and as the SMTP AUTH password with user '{name}':"
            )
            typer.echo(data["api_key"])

        emit(data, as_json, human)
        return
    cfg = _local(config)
    try:
        new = run(as_operator(cfg, lambda ctx: tenants.create_tenant(ctx, name)))
    except ValidationError as exc:
        raise fail(f"{exc}: {exc.fix}") from None
    except IntegrityViolation:
        raise fail(f"a tenant named {name!r} already exists; use 'postline tenant key'") from None
    typer.echo(f"tenant {name!r} created (id {new.tenant.id})")
    typer.echo(
        f"API key (shown once; keep it secret). Use it as 'Authorization: Bearer <key>' and as "
        f"the SMTP AUTH password with user '{name}':"
    )
    typer.echo(new.key)


@app.command("key")
def new_key(name: Name, config: ConfigOption) -> None:
    """Create another API key for a tenant (printed alone on the last line)."""
    cfg = load(config)

    async def add_key(store: Store, tenant: Tenant) -> str:
        key = generate_key()
        await store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
        return key

    key = run(_with_tenant(cfg, name, add_key))
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

    async def revoke(store: Store, tenant: Tenant) -> bool:
        return await store.revoke_api_key(tenant.id, prefix)

    if not run(_with_tenant(cfg, name, revoke)):
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


@app.command("pause")
def pause(
    name: Either,
    config: LocalConfig = None,
    reason: Annotated[
        str, typer.Option("--reason", help="Why; shown to the tenant in every refusal.")
    ] = "",
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Pause a tenant: its new mail is refused and its queued mail held (not sent, not
    dropped, still ageing) until 'postline tenant resume'."""
    if url:
        with admin_client(url, token) as api:
            data = api.pause_tenant(api.find_tenant(name)["id"], reason)
        emit(data, as_json, lambda: typer.echo(f"{data['name']!r}: {_status(data)}"))
        return
    cfg = _local(config)

    async def do_pause(ctx: ControlContext) -> bool:
        tenant = await ctx.store.get_tenant(name=name)
        if tenant is None:
            raise fail(f"no tenant named {name!r}; create it with 'postline tenant create'")
        return (await tenants.pause(ctx, tenant, reason=reason)).changed

    if not run(as_operator(cfg, do_pause)):
        raise fail(f"{name!r} is paused already", code=1)
    typer.echo(
        f"paused {name!r}: new mail is refused, queued mail is held (running nodes follow "
        f"within [reputation] evaluate_interval); resume with 'postline tenant resume {name}'"
    )


@app.command("resume")
def resume(
    name: Either,
    config: LocalConfig = None,
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Resume a paused (or warned) tenant: new mail is accepted again, held mail is sent,
    and the tenant is judged only on outcomes from now on (the minimum volume again)."""
    if url:
        with admin_client(url, token) as api:
            data = api.resume_tenant(api.find_tenant(name)["id"])
        emit(data, as_json, lambda: typer.echo(f"{data['name']!r}: {_status(data)}"))
        return
    cfg = _local(config)

    async def do_resume(ctx: ControlContext) -> bool:
        tenant = await ctx.store.get_tenant(name=name)
        if tenant is None:
            raise fail(f"no tenant named {name!r}; create it with 'postline tenant create'")
        return (await tenants.resume(ctx, tenant)).changed

    if not run(as_operator(cfg, do_resume)):
        raise fail(f"{name!r} is neither paused nor warned", code=1)
    typer.echo(
        f"resumed {name!r}: its mail is accepted and sent again (running nodes follow within "
        "[reputation] evaluate_interval); it is judged on outcomes from now on"
    )


@app.command("delete")
def delete(
    tenant: Either,
    url: UrlOption = None,
    token: TokenOption = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="Do not ask (the deletion cannot be undone).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Delete a tenant (over the admin API): its API keys are revoked, its queued mail is
    cancelled, its sender domains, webhooks and suppressions removed; its messages and
    events stay for the retention period. Its name is not reused."""
    with admin_client(url, token) as api:
        found = api.find_tenant(tenant)
        if not yes:
            typer.confirm(
                f"Delete tenant {found['name']!r} ({found['id']}) and cancel its queued mail?",
                abort=True,
            )
        data = api.delete_tenant(found["id"])

    def human() -> None:
        left = (
            f"; {data['remaining']} still queued are being cancelled by the nodes"
            if data["remaining"]
            else ""
        )
        typer.echo(
            f"deleted {data['name']!r} ({data['id']}): {data['keys_revoked']} API keys "
            f"revoked, {data['cancelled']} queued recipients cancelled, "
            f"{data['domains_removed']} sender domains, {data['webhooks_removed']} webhooks "
            f"and {data['suppressions_removed']} suppressions removed{left}"
        )

    emit(data, as_json, human)


@app.command("status")
def status(
    config: ConfigOption,
    name: Annotated[str | None, typer.Argument(help="One tenant; default: every tenant.")] = None,
) -> None:
    """Reputation of tenants: status, rates over the window, reason (tab-separated)."""
    cfg = load(config)
    window = cfg.reputation.window

    async def main() -> list[str]:
        store = create_store(cfg)
        await store.open()
        try:
            tenants = await store.list_tenants()
            if name is not None:
                tenants = [t for t in tenants if t.name == name]
                if not tenants:
                    raise fail(f"no tenant named {name!r}")
            statuses = {s.tenant_id: s for s in await store.tenant_statuses()}
            counts = tenant_counts(await store.reputation_totals(since=time.time() - window))
            lines = []
            for t in tenants:
                s = statuses.get(t.id)
                c = Counts.total(counts.get(t.id, {}).values())
                bounce = percent(c.bounce_rate) if c.bounce_rate is not None else "-"
                complaint = percent(c.complaint_rate) if c.complaint_rate is not None else "-"
                lines.append(
                    "\t".join(
                        (
                            t.name,
                            s.status if s else OK,
                            f"bounce {bounce} ({c.bounced}/{c.volume})",
                            f"complaint {complaint} ({c.complained}/{c.delivered})",
                            s.reason if s and s.status != OK else "",
                        )
                    )
                )
            return lines
        finally:
            await store.close()

    for line in run(main()):
        typer.echo(line)
