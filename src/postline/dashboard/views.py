"""What each page shows: the data (plain JSON-able dicts, also served to the pages'
polling) read through :mod:`postline.control`, and the HTML of the pages rendered on
the server."""

from __future__ import annotations

import json
import time
from typing import Any

from postline.control import ControlContext, lists, messages, overview, queues, standing
from postline.control import tenants as tenant_control
from postline.control.messages import MessageDetail
from postline.dashboard.context import DashboardContext
from postline.dashboard.html import attrs, e, table, utc
from postline.model.ids import id_time

__all__ = [
    "destinations_data",
    "destinations_html",
    "domains_html",
    "e",
    "message",
    "message_html",
    "overview_data",
    "overview_html",
    "search",
    "search_html",
    "suppressions_html",
    "tenants_data",
    "tenants_html",
]

SERIES = ("accepted", "delivered", "deferred", "bounced", "complained")
_WARNINGS = {
    "ready": "The node is not ready: it refuses new mail until it is (see /readyz).",
    "throttle": "The throttle backend is unreachable: delivery waits (check Redis or the "
    "node-local throttle file).",
    "store_writes": "The store refused writes recently (disk full or database down): new "
    "mail is refused with HTTP 503 / SMTP 451.",
    "acks": "The store is slow to acknowledge writes: submissions wait longer than "
    "[node] ready_ack_budget.",
    "delivery": "Delivery is off on this node ([delivery] enabled = false): it queues mail "
    "but sends none.",
}


def _data(name: str, data: Any) -> str:
    """Data for the page's script, in a non-executed script element (allowed by the
    content security policy; '</' cannot end it early)."""
    text = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{e(name)}">{text}</script>'


# -- overview ------------------------------------------------------------------------------


async def overview_data(ctl: ControlContext, dash: DashboardContext) -> dict[str, Any]:
    now = time.time()
    window = dash.config.dashboard.chart_window
    points = await overview.activity(ctl, window=window, now=now)
    summary = await overview.queue_summary(ctl)
    views = await standing.standings(ctl)
    held = [s.view for s in views if s.view.status.status != "ok"]
    health = dash.health()
    return {
        "now": now,
        "activity": {
            "start": points[0].bucket if points else now,
            "step": overview.MINUTE,
            "series": {name: [getattr(p, name) for p in points] for name in SERIES},
        },
        "queue": {
            "total": summary.total,
            "deferred": summary.deferred,
            "domains": summary.domains,
            "oldest_age": round(now - summary.oldest_at, 1) if summary.oldest_at else None,
            "top": [{"domain": d, "depth": n} for d, n in summary.top],
            "states": summary.states,
        },
        "held": [
            {
                "id": v.tenant.id,
                "name": v.tenant.name,
                "status": v.status.status,
                "reason": v.status.reason,
                "since": v.status.changed_at or None,
            }
            for v in held
        ],
        "warnings": [text for part, text in _WARNINGS.items() if health.get(part) is False],
    }


def overview_html(data: dict[str, Any]) -> str:
    charts = "".join(
        f'<figure class="chart" {attrs(data_series=name)}><figcaption>{e(name)} '
        f'<span class="total"></span></figcaption><svg role="img" '
        f'aria-label="{e(name)} per minute"></svg></figure>'
        for name in SERIES
    )
    return (
        '<section id="warnings"></section>'
        '<section id="queue-cards"></section>'
        f'<h2>Per minute, last <span id="window"></span></h2><div class="charts">{charts}</div>'
        '<div class="two"><section><h2>Deepest destinations</h2><div id="top"></div></section>'
        '<section><h2>Paused and warned tenants</h2><div id="held"></div></section></div>'
        + _data("data", data)
    )


# -- destinations --------------------------------------------------------------------------


def _site(throttle: dict[str, Any] | None) -> str:
    """The MX site of a route's throttle key (``rule:site=mx1,mx2:hash``), if known."""
    key = str((throttle or {}).get("key") or "")
    _, found, rest = key.partition("site=")
    return rest.split(":", 1)[0] if found else ""


async def destinations_data(ctl: ControlContext, dash: DashboardContext) -> dict[str, Any]:
    now = time.time()
    page, _ = await queues.list_queues(ctl, limit=queues.MAX_PAGE)
    # Suspended domains with nothing queued are shown too (to be resumed).
    shown = {d.domain for d in page}
    for s in await queues.suspensions(ctl):
        if s.domain != "*" and s.domain not in shown:
            shown.add(s.domain)
            page += (await queues.list_queues(ctl, domain=s.domain))[0]
    page.sort(key=lambda d: d.domain)
    names = await _tenant_names(ctl)
    rows = []
    providers: dict[str, dict[str, Any]] = {}
    for d in page:
        throttle = await dash.throttle_state(d.domain) if dash.throttle_state else None
        oldest = d.oldest_at
        suspended = d.suspended
        held_all = any(s.tenant_id == "*" and s.domain == d.domain for s in d.suspensions)
        rows.append(
            {
                "domain": d.domain,
                "depth": d.depth,
                "due": d.due,
                "deferred": d.deferred,
                "oldest_age": round(now - oldest, 1) if oldest is not None else None,
                "suspended": suspended or held_all,
                "suspended_until": next(
                    (s.until for s in d.suspensions if s.domain == d.domain and s.until), None
                ),
                "tenants": [
                    {
                        "tenant": t.queue.tenant_id,
                        "name": names.get(t.queue.tenant_id, t.queue.tenant_id),
                        "depth": t.queue.depth,
                        "suspended": t.suspended is not None,
                    }
                    for t in d.tenants
                ],
                "throttle": throttle,
            }
        )
        rule = str((throttle or {}).get("rule") or "(no route yet)")
        site = _site(throttle)
        p = providers.setdefault(
            f"{rule} {site}", {"provider": rule, "site": site, "domains": 0, "depth": 0, "due": 0}
        )
        p["domains"] += 1
        p["depth"] += d.depth
        p["due"] += d.due
    return {
        "now": now,
        "due_cap": queues.DUE_CAP,
        "destinations": rows,
        "providers": sorted(providers.values(), key=lambda p: -int(p["depth"])),
    }


def destinations_html(data: dict[str, Any], csrf: str) -> str:
    del csrf  # the page's script puts the session's token (the csrf meta) in each form
    return (
        "<p>Every tenant's queue per recipient domain (the first 200 domains in name "
        "order), with the throttle state of its route. Suspend holds the domain's mail for "
        "every tenant; retry now makes deferred mail due at once. Each action is written "
        "to the audit log.</p>"
        '<h2>By provider (throttle rule)</h2><div id="providers"></div>'
        '<h2>By domain</h2><div id="destinations"></div>' + _data("data", data)
    )


# -- tenants -------------------------------------------------------------------------------


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


async def tenants_data(ctl: ControlContext) -> dict[str, Any]:
    t = standing.thresholds(ctl)
    return {
        "window": t.window,
        "thresholds": {
            "bounce_warn": t.bounce_warn,
            "bounce_pause": t.bounce_pause,
            "complaint_warn": t.complaint_warn,
            "complaint_pause": t.complaint_pause,
            "min_volume": t.min_volume,
        },
        "tenants": [
            {
                "id": s.view.tenant.id,
                "name": s.view.tenant.name,
                "status": s.view.status.status,
                "reason": s.view.status.reason,
                "changed_by": s.view.status.changed_by,
                "delivered": s.counts.delivered,
                "bounced": s.counts.bounced,
                "complained": s.counts.complained,
                "volume": s.counts.volume,
                "bounce_rate": _rate(s.counts.bounce_rate),
                "complaint_rate": _rate(s.counts.complaint_rate),
            }
            for s in await standing.standings(ctl)
        ],
    }


def tenants_html(data: dict[str, Any], csrf: str) -> str:
    del csrf
    return (
        '<p id="thresholds"></p><div id="tenants"></div>'
        "<p>Pausing a tenant refuses its new mail and holds its queued mail until it is "
        "resumed; resuming judges it only on outcomes from then on.</p>" + _data("data", data)
    )


# -- messages ------------------------------------------------------------------------------


async def search(ctl: ControlContext, q: str, by: str, *, scan: int) -> list[messages.MessageView]:
    text = q.strip()
    if by == "auto":
        by = "id" if id_time(text) is not None else "recipient" if "@" in text else "tag"
    if by == "id":
        return await messages.find(ctl, message_id=text)
    if by == "recipient":
        return await messages.find(ctl, recipient=text, scan=scan)
    return await messages.find(ctl, tag=text, scan=scan)


def _by_options(by: str) -> str:
    return "".join(
        f"<option {attrs(value=v, selected=v == by)}>{e(label)}</option>"
        for v, label in (
            ("auto", "any"),
            ("id", "message id"),
            ("recipient", "recipient"),
            ("tag", "tag"),
        )
    )


def search_html(q: str, by: str, found: list[messages.MessageView] | None) -> str:
    form = (
        '<form method="get" action="/ui/messages" class="search" id="search-form">'
        f'<input type="search" name="q" id="q" value="{e(q)}" '
        'placeholder="message id, recipient address or tag" required>'
        f'<select name="by" id="by">{_by_options(by)}</select>'
        '<button type="submit" id="search">Search</button></form>'
        '<p class="hint">A recipient or tag is looked for among the latest messages '
        "([dashboard] search_scan); a message id anywhere.</p>"
    )
    if found is None:
        return form
    rows = [
        (
            f'<a href="/ui/messages/{e(m.id)}" class="message-link">{e(m.id)}</a>',
            e(utc(m.created_at)),
            e(m.tenant_id),
            e(m.mail_from),
            e(", ".join(r.address for r in m.recipients[:3]))
            + (" …" if len(m.recipients) > 3 else ""),
            e(m.subject),
            e(", ".join(m.tags)),
            e(" ".join(sorted({r.state.value for r in m.recipients}))),
        )
        for m in found
    ]
    headers = ("id", "created", "tenant", "from", "to", "subject", "tags", "state")
    return form + table(headers, rows, id_="results", empty="No message found.")


async def message(ctl: ControlContext, message_id: str) -> MessageDetail | None:
    return await messages.show(ctl, message_id.strip())


def _event_detail(data: dict[str, Any]) -> str:
    keys = ("code", "enhanced", "text", "mx", "ip", "category", "reason", "hard", "source")
    parts = [f"{k}={data[k]}" for k in keys if data.get(k) not in (None, "")]
    return e(" ".join(str(p) for p in parts)[:400])


def message_html(d: MessageDetail) -> str:
    m = d.message
    facts = table(
        ("field", "value"),
        [
            ("id", f"<code>{e(m.id)}</code>"),
            ("tenant", e(m.tenant_id)),
            ("created", e(utc(m.created_at))),
            ("from", e(m.mail_from)),
            ("subject", e(m.subject)),
            ("Message-ID", e(m.message_id_header)),
            ("stream / source", e(f"{m.stream} / {m.source}")),
            ("size", e(f"{m.size} bytes")),
            ("tags", e(", ".join(m.tags))),
            ("body", e("deleted " + utc(m.body_deleted_at) if m.body_deleted_at else "kept")),
        ],
    )
    recipients = table(
        ("#", "recipient", "state", "attempts", "next attempt", "last reply", "MX"),
        [
            (
                e(r.idx),
                e(r.address),
                f'<span class="state {e(r.state.value)}">{e(r.state.value)}</span>',
                e(r.attempts),
                e(utc(r.next_attempt_at) if r.state.value == "queued" else ""),
                e(" ".join(str(x) for x in (r.last_code, r.last_enhanced, r.last_text) if x)),
                e(r.last_mx),
            )
            for r in m.recipients
        ],
        id_="recipients",
    )
    timeline = "".join(
        f'<li class="event {e(ev.type)}"><time>{e(utc(ev.at))}</time> '
        f"<strong>{e(ev.type)}</strong> {e(ev.recipient or '')} "
        f'<span class="detail">{_event_detail(ev.data)}</span></li>'
        for ev in d.events
    )
    return (
        f"{facts}<h2>Recipients and attempts</h2>{recipients}"
        f'<h2>Timeline</h2><ol class="timeline" id="timeline">'
        f"{timeline or '<li>No events yet.</li>'}</ol>"
    )


# -- suppressions and sender domains -------------------------------------------------------


async def _tenant_names(ctl: ControlContext) -> dict[str, str]:
    return {v.tenant.id: v.tenant.name for v in await tenant_control.list_tenants(ctl)}


def _tenant_select(names: dict[str, str], chosen: str, *, all_label: str) -> str:
    options = [(k, v) for k, v in sorted(names.items(), key=lambda kv: kv[1])]
    return "".join(
        f"<option {attrs(value=k, selected=k == chosen)}>{e(label)}</option>"
        for k, label in [("", all_label), *options]
    )


async def suppressions_html(ctl: ControlContext, tenant: str, after: str, address: str) -> str:
    names = await _tenant_names(ctl)
    chosen = tenant if tenant in names or tenant == lists.GLOBAL else ""
    select = _tenant_select({**names, lists.GLOBAL: "(global list)"}, chosen, all_label="choose")
    form = (
        '<form method="get" action="/ui/suppressions" class="search" id="suppressions-form">'
        f'<select name="tenant" id="tenant">{select}</select>'
        '<button type="submit">Show</button></form>'
    )
    if not chosen:
        return form + "<p>Choose a tenant (or the global list) to see its suppressions.</p>"
    page = await lists.suppressions(ctl, chosen, after=after, limit=100)
    rows = [
        (
            e(s.address),
            e(s.reason),
            e(s.source),
            e(utc(s.created_at)),
            e(utc(s.expires_at) if s.expires_at else "never"),
            e(s.detail[:200]),
        )
        for s in page
    ]
    more = ""
    if len(page) == 100:
        more = (
            f'<p><a href="/ui/suppressions?tenant={e(chosen)}&amp;after={e(page[-1].address)}">'
            "Next page</a></p>"
        )
    headers = ("address", "reason", "source", "since", "expires", "detail")
    return form + table(headers, rows, id_="suppressions", empty="No suppression.") + more


def _checks(raw: str) -> str:
    """The last DNS check per record: its purpose (SPF, DKIM, DMARC...) and status, with
    the fix as the tooltip."""
    try:
        checks = json.loads(raw)
    except ValueError:
        return ""
    out = []
    for c in checks if isinstance(checks, list) else []:
        if isinstance(c, dict):
            status = str(c.get("status", ""))
            label = f"{c.get('purpose') or c.get('type') or 'record'}: {status}"
            tip = str(c.get("fix") or c.get("name") or "")
            out.append(
                f"<span {attrs(class_=f'check {status}', title=tip or None)}>{e(label)}</span>"
            )
    return " ".join(out)


async def domains_html(ctl: ControlContext, tenant: str) -> str:
    names = await _tenant_names(ctl)
    chosen = tenant if tenant in names else ""
    form = (
        '<form method="get" action="/ui/domains" class="search">'
        f'<select name="tenant">{_tenant_select(names, chosen, all_label="every tenant")}'
        '</select><button type="submit">Show</button></form>'
    )
    found = await lists.sender_domains(ctl, chosen or None)
    rows = [
        (
            e(d.domain),
            e(names.get(d.tenant_id, d.tenant_id)),
            f'<span class="status {e(d.status)}">{e(d.status)}</span>',
            e(utc(d.verified_at)),
            e(utc(d.checked_at)),
            _checks(d.check),
            e(", ".join(f"{k.selector} ({k.state})" for k in d.keys)),
        )
        for d in found
    ]
    headers = ("domain", "tenant", "status", "verified", "checked", "DNS records", "DKIM keys")
    return form + table(headers, rows, id_="domains", empty="No sender domain.")
