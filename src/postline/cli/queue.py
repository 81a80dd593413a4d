"""``postline queue``: every tenant's queues on a node's admin API — list, show, suspend,
resume, bounce, retry now, reroute (``--url`` / POSTLINE_URL, admin token in
POSTLINE_ADMIN_TOKEN)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from postline.cli._remote import JsonOption, TokenOption, UrlOption, admin_client, emit, table

__all__ = ["app"]

app = typer.Typer(
    help="Queues across tenants, over a node's admin API: list (per domain or per MX "
    "site), suspend, resume, bounce, retry, reroute.",
    no_args_is_help=True,
)

TenantOpt = Annotated[str | None, typer.Option("--tenant", "-t", help="A tenant's id.")]
DomainOpt = Annotated[str | None, typer.Option("--domain", "-d", help="A recipient domain.")]
StreamOpt = Annotated[
    str | None, typer.Option("--stream", help="Only the mail of this stream (the message's).")
]
TagOpt = Annotated[str | None, typer.Option("--tag", help="Only the mail carrying this tag.")]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _holds(d: dict[str, Any]) -> str:
    held = [
        f"{s['tenant']}/{s['domain']}" + (f" until {s['until']}" if s["until"] else "")
        for s in d["suspensions"]
    ]
    if d.get("rerouted"):
        r = d["rerouted"]
        held.append(f"rerouted to {r['host']}:{r['port']} until {r['until']}")
    return "; ".join(held)


def _reroutes(data: dict[str, Any]) -> None:
    if data.get("reroutes"):
        table(
            "Reroutes",
            ["id", "destination", "relay", "until", "reason"],
            [
                (
                    r["id"],
                    f"domain {r['domain']}" if r["domain"] else f"provider {r['provider']}",
                    f"{r['host']}:{r['port']}",
                    r["until"],
                    r["reason"],
                )
                for r in data["reroutes"]
            ],
        )


@app.command("ls")
def ls(
    url: UrlOption = None,
    token: TokenOption = None,
    tenant: TenantOpt = None,
    after: Annotated[str, typer.Option(help="next_after of the previous page.")] = "",
    limit: Annotated[int, typer.Option(help="Domains per page (1-200).")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Destination domains with their depth, due and deferred counts, oldest age, holds
    and reroutes."""
    with admin_client(url, token) as api:
        data = api.queues(tenant=tenant, after=after, limit=limit)

    def human() -> None:
        table(
            "Queues",
            ["domain", "depth", "due", "deferred", "oldest age", "tenants", "held / rerouted"],
            [
                (
                    d["domain"],
                    d["depth"],
                    d["due"],
                    d["deferred"],
                    _age(d["oldest_age"]),
                    len(d["tenants"]),
                    _holds(d),
                )
                for d in data["queues"]
            ],
        )
        _reroutes(data)
        if data["next_after"]:
            typer.echo(f"more: --after {data['next_after']}")

    emit(data, as_json, human)


def _connections(site: dict[str, Any]) -> str:
    """``open/limit`` per source bucket (``∞`` for no limit)."""
    limit = site["connection_limit"]
    shown = []
    for t in site["throttle"]:
        where = f"{t['source']}: " if t["source"] else ""
        if t["unavailable"]:
            shown.append(f"{where}unavailable")
        else:
            shown.append(f"{where}{t['connections']}/{limit if limit is not None else '∞'}")
    return ", ".join(shown)


def _rate(site: dict[str, Any]) -> str:
    rate = site["rate_limit"]
    if rate is None:
        return "unlimited"
    factors = {t["rate_factor"] for t in site["throttle"] if t.get("rate_factor") is not None}
    slowed = [f for f in factors if f < 1.0]
    return f"{rate:g}/s" + (f" ×{min(slowed):g}" if slowed else "")


def _site_holds(site: dict[str, Any]) -> str:
    held = []
    for t in site["throttle"]:
        where = f"{t['source']} " if t["source"] else ""
        if t.get("suspended_until"):
            held.append(f"{where}suspended until {t['suspended_until']}")
        elif t.get("barred_until"):
            held.append(f"{where}barred until {t['barred_until']}")
    if site["suspended"]:
        held.append(f"{site['suspended']} of {site['domains']} domains suspended")
    return "; ".join(held)


@app.command("sites")
def sites(
    url: UrlOption = None,
    token: TokenOption = None,
    tenant: TenantOpt = None,
    after: Annotated[str, typer.Option(help="next_after of the previous page.")] = "",
    limit: Annotated[int, typer.Option(help="Domains per page (1-200), then grouped.")] = 100,
    resolve: Annotated[
        bool,
        typer.Option(
            help="Look up routes the node does not know yet (at most 2 s); --no-resolve: "
            "list those domains as unrouted."
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Destination domains grouped by MX site / provider (throttle bucket): depth, due,
    deferred, oldest age, connections open and allowed, rate and slow-down, holds."""
    with admin_client(url, token) as api:
        data = api.queue_sites(tenant=tenant, after=after, limit=limit, resolve=resolve)

    def human() -> None:
        table(
            "Sites",
            [
                "provider",
                "rule",
                "domains",
                "depth",
                "due",
                "deferred",
                "oldest age",
                "connections",
                "rate",
                "held",
            ],
            [
                (
                    s["provider"],
                    s["rule"],
                    s["domains"],
                    s["depth"],
                    s["due"],
                    s["deferred"],
                    _age(s["oldest_age"]),
                    _connections(s),
                    _rate(s),
                    _site_holds(s),
                )
                for s in data["sites"]
            ],
        )
        for s in data["sites"]:
            more = s["domains"] - len(s["domain_names"])
            names = ", ".join(s["domain_names"]) + (f" and {more} more" if more else "")
            typer.echo(f"{s['provider']}: {names}")
        if data["unrouted"]:
            table(
                "Not routed yet",
                ["domain", "reason", "depth", "due", "deferred", "oldest age"],
                [
                    (
                        u["domain"],
                        u["reply"] or u["reason"],
                        u["depth"],
                        u["due"],
                        u["deferred"],
                        _age(u["oldest_age"]),
                    )
                    for u in data["unrouted"]
                ],
            )
        w = data["worker"]
        typer.echo(
            f"{data['domains']} domains; routes of {w['node']} (worker {w['index'] + 1} of "
            f"{w['count']}), throttle state of the node"
        )
        if data["next_after"]:
            typer.echo(f"more: --after {data['next_after']}")

    emit(data, as_json, human)


@app.command("show")
def show(
    domain: Annotated[str, typer.Argument(help="The recipient domain.")],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """One destination domain: each tenant's queue, its holds and reroute."""
    with admin_client(url, token) as api:
        data = api.queues(domain=domain)

    def human() -> None:
        for d in data["queues"]:
            typer.echo(
                f"{d['domain']}: {d['depth']} queued, {d['due']} due, {d['deferred']} deferred, "
                f"oldest {_age(d['oldest_age'])}" + (f"; {_holds(d)}" if _holds(d) else "")
            )
            table(
                "",
                ["tenant", "depth", "due", "deferred", "oldest", "next attempt", "suspended"],
                [
                    (
                        t["tenant"],
                        t["depth"],
                        t["due"],
                        t["deferred"],
                        t["oldest_at"],
                        t["next_attempt_at"],
                        (t["suspended"] or {}).get("until") or ("yes" if t["suspended"] else ""),
                    )
                    for t in d["tenants"]
                ],
            )
        _reroutes(data)

    emit(data, as_json, human)


def _action(
    action: str, selector: dict[str, Any], url: str | None, token: str | None, as_json: bool
) -> None:
    with admin_client(url, token) as api:
        data = api.queue_action(action, selector)

    def human() -> None:
        what = " ".join(
            f"{k} {data[k]}"
            for k in ("tenant", "domain", "provider", "stream", "tag")
            if data.get(k)
        )
        until = f" until {data['until']}" if data.get("until") else ""
        typer.echo(f"{action} {what}: {data['count']} queued recipients{until}")

    emit(data, as_json, human)


@app.command("suspend")
def suspend(
    url: UrlOption = None,
    token: TokenOption = None,
    tenant: TenantOpt = None,
    domain: DomainOpt = None,
    duration: Annotated[
        str | None, typer.Option(help="How long, e.g. 30m or 2h; default: until resumed.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Hold the selected queues (a tenant's, a domain's, or both): nothing is sent."""
    sel = {"tenant": tenant, "domain": domain, "duration": duration}
    _action("suspend", sel, url, token, as_json)


@app.command("resume")
def resume(
    url: UrlOption = None,
    token: TokenOption = None,
    tenant: TenantOpt = None,
    domain: DomainOpt = None,
    provider: Annotated[
        str | None, typer.Option(help="End this provider's reroute (alone).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Resume the selected queues; a domain or provider alone also ends its reroute."""
    sel = {"tenant": tenant, "domain": domain, "provider": provider}
    _action("resume", sel, url, token, as_json)


@app.command("retry")
def retry(
    url: UrlOption = None,
    token: TokenOption = None,
    tenant: TenantOpt = None,
    domain: DomainOpt = None,
    stream: StreamOpt = None,
    tag: TagOpt = None,
    as_json: JsonOption = False,
) -> None:
    """Make the selected deferred mail due now (of one stream or tag with --stream,
    --tag)."""
    sel = {"tenant": tenant, "domain": domain, "stream": stream, "tag": tag}
    _action("retry-now", sel, url, token, as_json)


@app.command("bounce")
def bounce(
    url: UrlOption = None,
    token: TokenOption = None,
    tenant: TenantOpt = None,
    domain: DomainOpt = None,
    stream: StreamOpt = None,
    tag: TagOpt = None,
    reason: Annotated[str, typer.Option(help="Why; the text of every bounced event.")] = "",
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (bouncing is final).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Bounce the selected queued mail (final; no address is suppressed), of one stream
    or tag with --stream, --tag."""
    if not yes:
        parts = (("tenant", tenant), ("domain", domain), ("stream", stream), ("tag", tag))
        what = " and ".join(f"{k} {v}" for k, v in parts if v)
        typer.confirm(f"Bounce every queued recipient of {what or 'nothing'}?", abort=True)
    sel = {"tenant": tenant, "domain": domain, "stream": stream, "tag": tag, "reason": reason}
    _action("bounce", sel, url, token, as_json)


@app.command("reroute")
def reroute(
    host: Annotated[str, typer.Option(help="The relay: host name or IP address.")],
    duration: Annotated[str, typer.Option(help="How long, e.g. 30m, 2h (at most 30d).")],
    url: UrlOption = None,
    token: TokenOption = None,
    domain: DomainOpt = None,
    provider: Annotated[
        str | None,
        typer.Option(
            help="A throttle rule (google, microsoft, …) or MX site, instead of a domain."
        ),
    ] = None,
    port: Annotated[int, typer.Option(help="The relay's SMTP port.")] = 25,
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    as_json: JsonOption = False,
) -> None:
    """Send a domain's (or provider's) mail to a static host for a while; ended by
    'queue resume', 'queue reroute-end' or its time."""
    body = {
        "domain": domain,
        "provider": provider,
        "host": host,
        "port": port,
        "duration": duration,
        "reason": reason,
    }
    with admin_client(url, token) as api:
        data = api.reroute(body)

    def human() -> None:
        what = f"domain {data['domain']}" if data["domain"] else f"provider {data['provider']}"
        typer.echo(
            f"rerouted {what} to {data['host']}:{data['port']} until {data['until']} "
            f"(id {data['id']}; every node follows within [queue] scan_interval)"
        )

    emit(data, as_json, human)


@app.command("reroute-end")
def reroute_end(
    reroute_id: Annotated[str, typer.Argument(help="The reroute's id (see 'queue ls').")],
    url: UrlOption = None,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """End a reroute now."""
    with admin_client(url, token) as api:
        data = api.end_reroute(reroute_id)
    emit(data, as_json, lambda: typer.echo(f"reroute {data['id']} ended"))
