"""HTML of the dashboard's pages: a layout and small helpers, every value escaped."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from html import escape

__all__ = ["NAV", "ago", "attrs", "e", "layout", "login_page", "table", "utc"]

NAV = (
    ("overview", "/ui", "Overview"),
    ("destinations", "/ui/destinations", "Destinations"),
    ("tenants", "/ui/tenants", "Tenants"),
    ("messages", "/ui/messages", "Messages"),
    ("suppressions", "/ui/suppressions", "Suppressions"),
    ("domains", "/ui/domains", "Sender domains"),
)


def e(value: object) -> str:
    """``value`` as escaped HTML text (None: empty)."""
    return "" if value is None else escape(str(value), quote=True)


def attrs(**values: object) -> str:
    """HTML attributes (``data_x`` → ``data-x``); None and False left out."""
    out = []
    for name, value in values.items():
        if value is None or value is False:
            continue
        key = name.rstrip("_").replace("_", "-")
        out.append(key if value is True else f'{key}="{e(value)}"')
    return " ".join(out)


def utc(ts: float | None) -> str:
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts)) + "Z"


def ago(seconds: float | None) -> str:
    """``3h 12m``-style age."""
    if seconds is None:
        return ""
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], *, id_: str = "", empty: str = ""
) -> str:
    """A table; cells are HTML already (escape values with :func:`e`)."""
    head = "".join(f"<th>{e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    if not body and empty:
        body = f'<tr><td class="empty" colspan="{len(headers)}">{e(empty)}</td></tr>'
    return (
        f"<table {attrs(id=id_ or None)}><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>"
    )


def layout(
    title: str,
    body: str,
    *,
    active: str = "",
    actor: str = "",
    csrf: str = "",
    page: str = "",
    notice: str = "",
    error: str = "",
) -> str:
    """A whole page: the navigation (when signed in), a notice or error, the body."""
    nav = ""
    if actor:
        links = "".join(
            f"<a {attrs(href=href, class_='active' if key == active else None)}>{e(label)}</a>"
            for key, href, label in NAV
        )
        nav = (
            f'<nav><span class="brand">postline</span>{links}'
            f'<form method="post" action="/ui/logout" class="logout">'
            f'<input type="hidden" name="csrf" value="{e(csrf)}">'
            f'<span class="who">{e(actor)}</span>'
            f'<button type="submit" id="logout">Sign out</button></form></nav>'
        )
    flash = ""
    if notice:
        flash += f'<p class="notice" id="notice">{e(notice)}</p>'
    if error:
        flash += f'<p class="error" id="error">{e(error)}</p>'
    return (
        "<!doctype html>"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} · postline</title>"
        f'<meta name="csrf" content="{e(csrf)}">'
        '<link rel="icon" href="/ui/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/ui/static/app.css">'
        '<script src="/ui/static/app.js" defer></script>'
        f"</head><body {attrs(data_page=page or None)}>{nav}<main>"
        f"<h1>{e(title)}</h1>{flash}{body}</main></body></html>"
    )


def login_page(csrf: str, *, error: str = "", next_: str = "/ui") -> str:
    form = (
        '<form method="post" action="/ui/login" class="login" id="login-form">'
        f'<input type="hidden" name="csrf" value="{e(csrf)}">'
        f'<input type="hidden" name="next" value="{e(next_)}">'
        '<label for="token">Admin token</label>'
        '<input type="password" id="token" name="token" autocomplete="off" '
        'placeholder="pla_…" required autofocus>'
        '<button type="submit" id="sign-in">Sign in</button>'
        '<p class="hint">The same tokens as the admin API: make one with '
        "<code>postline admin token create --config FILE</code>. A tenant's API key "
        "cannot sign in.</p></form>"
    )
    return layout("Operator sign-in", form, error=error, page="login")
