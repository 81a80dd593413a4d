"""The dashboard's routes under ``/ui``: sign-in and out, the pages, the small JSON feeds
the pages poll, and the operator's actions (each one action of :mod:`postline.control`,
which does the work and writes the audit entry with the signed-in admin as the actor).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from postline.control import Actor, ControlContext, audit, queues, tenants
from postline.dashboard import views
from postline.dashboard.context import DashboardContext
from postline.dashboard.html import layout, login_page
from postline.dashboard.session import LOGIN_TTL, Session, SessionCodec
from postline.errors import NotFound, PostlineError, ValidationError
from postline.units import parse_duration

__all__ = ["COOKIE", "LOGIN_COOKIE", "router"]

COOKIE = "pl_session"
LOGIN_COOKIE = "pl_login"
_PATH = "/ui"
_STATIC = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_FORM = "application/x-www-form-urlencoded"
_MAX_FORM = 16_384

router = APIRouter(prefix=_PATH, include_in_schema=False)


@dataclass(frozen=True, slots=True)
class Operator:
    """The signed-in admin of a request."""

    actor: Actor
    session: Session
    csrf: str


def _dash(request: Request) -> DashboardContext:
    ctx: DashboardContext = request.app.state.dashboard
    return ctx


def _codec(request: Request) -> SessionCodec:
    codec: SessionCodec = request.app.state.dashboard_codec
    return codec


def _secure(request: Request) -> bool:
    """Cookies are Secure when the dashboard is reached over TLS: the request's scheme,
    or ``[api] public_url`` (TLS ended by a proxy in front of the node)."""
    public = _dash(request).config.api.public_url
    return request.url.scheme == "https" or public.startswith("https://")


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _problem(status: int, slug: str, detail: str, fix: str) -> JSONResponse:
    body = {
        "type": f"urn:postline:problem:{slug}",
        "title": {401: "Unauthorized", 403: "Forbidden", 404: "Not found"}.get(status, "Error"),
        "status": status,
        "detail": detail,
        "fix": fix,
    }
    return JSONResponse(
        body, status_code=status, media_type="application/problem+json", headers=_HEADERS
    )


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=_HEADERS)


async def _operator(request: Request) -> Operator | None:
    """The request's signed-in admin: a valid, unexpired session whose token is live."""
    value = request.cookies.get(COOKIE, "")
    if not value:
        return None
    codec = _codec(request)
    session = codec.read(value)
    dash = _dash(request)
    if session is None or session.nonce in dash.logged_out:
        return None
    if session.kind not in ("admin_token", "config_token"):
        return None
    actor = Actor(session.kind, session.id)  # type: ignore[arg-type]
    if not await dash.still_valid(actor):
        return None
    return Operator(actor, session, codec.csrf(session))


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return _redirect(f"{_PATH}/login?{urlencode({'next': target})}")


async def _form(request: Request) -> dict[str, str]:
    """A urlencoded form body (first value of each field); anything else is empty."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != _FORM:
        return {}
    body = await request.body()
    if len(body) > _MAX_FORM:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in fields.items() if v}


def _csrf_refused() -> HTMLResponse:
    body = layout(
        "Refused",
        "<p>The form was not sent from this dashboard (its CSRF token is missing or "
        'wrong), so nothing was done. <a href="/ui">Reload the dashboard</a> and try '
        "again.</p>",
        error="CSRF check failed",
    )
    return _html(body, 403)


def _safe_next(value: str) -> str:
    """A local dashboard path to go to after sign-in (anything else: the overview)."""
    if value.startswith(f"{_PATH}") and not value.startswith("//") and "\\" not in value:
        return value
    return _PATH


def _control(request: Request, op: Operator) -> ControlContext:
    return _dash(request).control(op.actor, request)


# -- sign-in and out ---------------------------------------------------------------------


@router.get("/login")
async def login_form(request: Request, next: str = _PATH, error: str = "") -> Response:
    if await _operator(request) is not None:
        return _redirect(_safe_next(next))
    codec = _codec(request)
    nonce = codec.login_nonce()
    response = _html(login_page(codec.login_csrf(nonce), error=error, next_=_safe_next(next)))
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=int(LOGIN_TTL),
        path=_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


def _login_again(request: Request, error: str, status: int, next_: str = _PATH) -> Response:
    codec = _codec(request)
    nonce = request.cookies.get(LOGIN_COOKIE) or codec.login_nonce()
    response = _html(login_page(codec.login_csrf(nonce), error=error, next_=next_), status)
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        max_age=int(LOGIN_TTL),
        path=_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    form = await _form(request)
    codec = _codec(request)
    dash = _dash(request)
    next_ = _safe_next(form.get("next", _PATH))
    if not codec.check_login(request.cookies.get(LOGIN_COOKIE, ""), form.get("csrf", "")):
        return _login_again(
            request, "The sign-in form expired or was not sent from this page; try again.", 403
        )
    token = form.get("token", "").strip()
    actor = await dash.authenticate(token) if token else None
    if actor is None:
        if token and await dash.is_tenant_key(token):
            return _login_again(
                request,
                "A tenant's API key cannot sign in to the operator dashboard: use an admin "
                "token ('postline admin token create --config FILE').",
                403,
                next_,
            )
        return _login_again(
            request,
            "That admin token is not valid (unknown or revoked).",
            401,
            next_,
        )
    ttl = dash.config.dashboard.session_ttl
    value = codec.issue(actor.kind, actor.id, ttl)
    session = codec.read(value)
    assert session is not None
    await audit.record(
        dash.control(actor, request),
        "dashboard.login",
        actor.id,
        detail={"expires_at": round(session.expires_at, 3)},
    )
    response = _redirect(next_)
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(ttl),
        path=_PATH,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path=_PATH)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    op = await _operator(request)
    if op is None:
        return _to_login(request)
    form = await _form(request)
    if not _codec(request).check_csrf(op.session, form.get("csrf", "")):
        return _csrf_refused()
    dash = _dash(request)
    now = time.time()
    for nonce, until in list(dash.logged_out.items()):
        if until <= now:
            del dash.logged_out[nonce]
    dash.logged_out[op.session.nonce] = op.session.expires_at
    await audit.record(_control(request, op), "dashboard.logout", op.actor.id)
    response = _redirect(f"{_PATH}/login")
    response.delete_cookie(COOKIE, path=_PATH, httponly=True, samesite="strict")
    return response


# -- static files --------------------------------------------------------------------------


@router.get("/static/{name}")
async def static(name: str) -> Response:
    kind = _STATIC.get(name)
    if kind is None:
        return _problem(404, "not-found", f"No dashboard file {name!r}.", "See /ui.")
    data = resources.files("postline.dashboard").joinpath("static", name).read_bytes()
    headers = {**_HEADERS, "Cache-Control": "public, max-age=300"}
    return Response(data, media_type=kind, headers=headers)


# -- pages ---------------------------------------------------------------------------------


def _page(title: str, body: str, op: Operator, active: str, **kw: str) -> HTMLResponse:
    who = op.actor.id
    return _html(layout(title, body, active=active, actor=who, csrf=op.csrf, page=active, **kw))


@router.get("")
async def overview_page(request: Request) -> Response:
    op = await _operator(request)
    if op is None:
        return _to_login(request)
    data = await views.overview_data(_control(request, op), _dash(request))
    return _page("Overview", views.overview_html(data), op, "overview")


@router.get("/destinations")
async def destinations_page(request: Request, done: str = "", error: str = "") -> Response:
    op = await _operator(request)
    if op is None:
        return _to_login(request)
    data = await views.destinations_data(_control(request, op), _dash(request))
    body = views.destinations_html(data, op.csrf)
    return _page("Destinations", body, op, "destinations", notice=done, error=error)


@router.get("/tenants")
async def tenants_page(request: Request, done: str = "", error: str = "") -> Response:
    op = await _operator(request)
    if op is None:
        return _to_login(request)
    data = await views.tenants_data(_control(request, op))
    body = views.tenants_html(data, op.csrf)
    return _page("Tenants", body, op, "tenants", notice=done, error=error)


@router.get("/messages")
async def messages_page(request: Request, q: str = "", by: str = "auto") -> Response:
    op = await _operator(request)
    if op is None:
        return _to_login(request)
    ctl = _control(request, op)
    error = ""
    found = None
    if q.strip():
        try:
            found = await views.search(ctl, q, by, scan=_dash(request).config.dashboard.search_scan)
        except ValidationError as exc:
            error = f"{exc} — {exc.fix}" if exc.fix else str(exc)
    body = views.search_html(q, by, found)
    return _page("Messages", body, op, "messages", error=error)


@router.get("/messages/{message_id}")
async def message_page(request: Request, message_id: str) -> Response:
    op = await _operator(request)
    if op is None:
        return _to_login(request)
    detail = await views.message(_control(request, op), message_id)
    if detail is None:
        body = (
            f"<p>No message has id <code>{views.e(message_id)}</code> (or it was deleted "
            "by retention).</p>"
        )
        return _page("Message", body, op, "messages", error="not found")
    return _page("Message", views.message_html(detail), op, "messages")


@router.get("/suppressions")
async def suppressions_page(
    request: Request, tenant: str = "", after: str = "", address: str = ""
) -> Response:
    op = await _operator(request)
    if op is None:
        return _to_login(request)
    body = await views.suppressions_html(_control(request, op), tenant, after, address)
    return _page("Suppressions", body, op, "suppressions")


@router.get("/domains")
async def domains_page(request: Request, tenant: str = "") -> Response:
    op = await _operator(request)
    if op is None:
        return _to_login(request)
    body = await views.domains_html(_control(request, op), tenant)
    return _page("Sender domains", body, op, "domains")


# -- JSON feeds the pages poll ---------------------------------------------------------------


def _json(data: Any) -> Response:
    return Response(
        json.dumps(data, separators=(",", ":")), media_type="application/json", headers=_HEADERS
    )


def _signed_out() -> JSONResponse:
    return _problem(
        401,
        "unauthenticated",
        "The dashboard session is missing, expired or signed out.",
        "Sign in again at /ui/login.",
    )


@router.get("/api/overview")
async def overview_feed(request: Request) -> Response:
    op = await _operator(request)
    if op is None:
        return _signed_out()
    return _json(await views.overview_data(_control(request, op), _dash(request)))


@router.get("/api/destinations")
async def destinations_feed(request: Request) -> Response:
    op = await _operator(request)
    if op is None:
        return _signed_out()
    return _json(await views.destinations_data(_control(request, op), _dash(request)))


@router.get("/api/tenants")
async def tenants_feed(request: Request) -> Response:
    op = await _operator(request)
    if op is None:
        return _signed_out()
    return _json(await views.tenants_data(_control(request, op)))


# -- actions -------------------------------------------------------------------------------


async def _action(request: Request) -> tuple[Operator, dict[str, str]] | Response:
    """The signed-in admin and the form of a state-changing request whose CSRF token is
    right; else the answer to give (sign in again, or refused)."""
    op = await _operator(request)
    if op is None:
        return _to_login(request)
    form = await _form(request)
    token = form.get("csrf", "") or request.headers.get("x-csrf-token", "")
    if not _codec(request).check_csrf(op.session, token):
        return _csrf_refused()
    return op, form


def _back(page: str, **query: str) -> RedirectResponse:
    shown = {k: v[:300] for k, v in query.items() if v}
    return _redirect(f"{_PATH}/{page}" + (f"?{urlencode(shown)}" if shown else ""))


def _message(exc: PostlineError) -> str:
    fix = getattr(exc, "fix", None)
    return f"{exc} ({fix})" if fix else str(exc)


_QUEUE_ACTIONS = ("suspend", "resume", "retry-now")


@router.post("/destinations/{action}")
async def destination_action(request: Request, action: str) -> Response:
    checked = await _action(request)
    if isinstance(checked, Response):
        return checked
    op, form = checked
    if action not in _QUEUE_ACTIONS:
        return _back("destinations", error=f"unknown action {action!r}")
    ctl = _control(request, op)
    domain = form.get("domain", "").strip().lower()
    tenant = form.get("tenant", "").strip() or None
    try:
        sel = queues.QueueSelector(tenant, domain or None)
        if action == "suspend":
            text = form.get("duration", "").strip()
            duration = parse_duration(text) if text else None
            count = await queues.suspend(ctl, sel, duration=duration)
            done = f"suspended {sel.target}: {count} queued recipients held"
            if duration:
                done += f" for {text}"
        elif action == "resume":
            count = await queues.resume(ctl, sel)
            done = f"resumed {sel.target}: {count} queued recipients resumed"
        else:
            count = await queues.retry_now(ctl, sel)
            done = f"retry now {sel.target}: {count} recipients made due"
    except ValueError:
        return _back("destinations", error="the duration is not one like '30m' or '2h'")
    except (ValidationError, NotFound) as exc:
        return _back("destinations", error=_message(exc))
    return _back("destinations", done=done)


@router.post("/tenants/{tenant_id}/{action}")
async def tenant_action(request: Request, tenant_id: str, action: str) -> Response:
    checked = await _action(request)
    if isinstance(checked, Response):
        return checked
    op, form = checked
    if action not in ("pause", "resume"):
        return _back("tenants", error=f"unknown action {action!r}")
    ctl = _control(request, op)
    try:
        tenant = await tenants.find_tenant(ctl, id=tenant_id)
        if action == "pause":
            reason = form.get("reason", "").strip() or "paused from the dashboard"
            change = await tenants.pause(ctl, tenant, reason=reason)
        else:
            change = await tenants.resume(ctl, tenant)
    except (ValidationError, NotFound) as exc:
        return _back("tenants", error=_message(exc))
    state = change.view.status.status
    verb = "paused" if action == "pause" else "resumed"
    done = f"{verb} {tenant.name}" if change.changed else f"{tenant.name} was {state} already"
    return _back("tenants", done=done)
