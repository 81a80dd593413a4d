"""The operator dashboard over real HTTP against a node delivering to the mail simulator:
sign-in with an admin token (and the refusals), the session cookie, CSRF on every
state-changing form, expiry, sign-out, revocation, the pages and their JSON feeds, and
the audit log of what was done from the dashboard."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import httpx

from postline.control.tokens import generate_token, hash_token
from postline.runtime import Node
from support.e2e import FAST_RETRY, domain, internet
from support.node import api_client, wait_for

CSRF = re.compile(r'name="csrf" (?:content|value)="([^"]+)"')


def _client(node: Node) -> httpx.AsyncClient:
    assert node.api_address is not None
    host, port = node.api_address
    return httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=30)


async def _admin_token(node: Node, name: str = "ops") -> tuple[str, str]:
    """A new admin token: (secret, id)."""
    secret = generate_token()
    token = await node.store.add_admin_token(name, hash_token(secret), secret[:11])
    return secret, token.id


async def _login_form(ui: httpx.AsyncClient) -> str:
    r = await ui.get("/ui/login")
    assert r.status_code == 200, r.text
    found = CSRF.search(r.text)
    assert found is not None
    return found.group(1)


async def _sign_in(ui: httpx.AsyncClient, token: str) -> httpx.Response:
    csrf = await _login_form(ui)
    return await ui.post("/ui/login", data={"csrf": csrf, "token": token, "next": "/ui"})


async def _page_csrf(ui: httpx.AsyncClient, path: str = "/ui") -> str:
    r = await ui.get(path)
    assert r.status_code == 200, r.text
    found = CSRF.search(r.text)
    assert found is not None
    return found.group(1)


def _cookie_header(r: httpx.Response, name: str) -> str:
    return next(v for v in r.headers.get_list("set-cookie") if v.startswith(f"{name}="))


async def _secure_sign_in(ui: httpx.AsyncClient, token: str) -> httpx.Response:
    """Sign in where every cookie is Secure: httpx keeps those from plain http, so the
    test carries them over by hand (as a browser would over TLS)."""
    r = await ui.get("/ui/login")
    found = CSRF.search(r.text)
    assert found is not None
    login = _cookie_header(r, "pl_login")
    assert "secure" in login.lower()
    ui.cookies.set("pl_login", login.split(";", 1)[0].split("=", 1)[1], path="/ui")
    r = await ui.post("/ui/login", data={"csrf": found.group(1), "token": token})
    assert r.status_code == 303, r.text
    value = _cookie_header(r, "pl_session").split(";", 1)[0].split("=", 1)[1]
    ui.cookies.set("pl_session", value, path="/ui")
    return r


async def test_sign_in_refusals_csrf_and_actions_are_audited(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("plain.test")]) as e:
        node = e.node
        secret, token_id = await _admin_token(node)
        tenant_key = (e.api.headers["authorization"]).split(" ", 1)[1]
        async with _client(node) as ui, api_client(node, secret) as admin:
            # Not signed in: pages go to the sign-in form, feeds answer 401 problems.
            r = await ui.get("/ui/destinations")
            assert r.status_code == 303
            assert r.headers["location"] == "/ui/login?next=%2Fui%2Fdestinations"
            r = await ui.get("/ui/api/overview")
            assert r.status_code == 401
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["fix"] == "Sign in again at /ui/login."

            # The login form itself needs its CSRF token (bound to the nonce cookie).
            await _login_form(ui)
            r = await ui.post("/ui/login", data={"token": secret})
            assert r.status_code == 403 and "pl_session" not in r.headers.get("set-cookie", "")
            r = await ui.post("/ui/login", data={"token": secret, "csrf": "forged"})
            assert r.status_code == 403

            # A wrong token and a tenant's API key are refused, each with its reason.
            r = await _sign_in(ui, generate_token())
            assert r.status_code == 401 and "not valid" in r.text
            assert "pl_session=" not in r.headers.get("set-cookie", "")
            r = await _sign_in(ui, tenant_key)
            assert r.status_code == 403 and "tenant&#x27;s API key cannot sign in" in r.text
            assert "pl_session=" not in r.headers.get("set-cookie", "")

            # The admin token signs in: an HttpOnly, SameSite=Strict cookie for /ui.
            r = await _sign_in(ui, secret)
            assert r.status_code == 303 and r.headers["location"] == "/ui"
            cookie = _cookie_header(r, "pl_session").lower()
            assert "httponly" in cookie and "samesite=strict" in cookie
            assert "path=/ui" in cookie and "max-age=28800" in cookie
            assert "secure" not in cookie  # plain HTTP without an https public_url
            page = await ui.get("/ui")
            assert page.status_code == 200 and "Overview" in page.text
            assert "default-src 'none'" in page.headers["content-security-policy"]
            assert page.headers["x-frame-options"] == "DENY"

            # Every page loads.
            for path in ("/ui/destinations", "/ui/tenants", "/ui/messages", "/ui/domains"):
                r = await ui.get(path)
                assert r.status_code == 200, (path, r.text)
            r = await ui.get("/ui/suppressions", params={"tenant": "*"})
            assert r.status_code == 200 and 'id="suppressions"' in r.text

            # A state-changing form without (or with a wrong) CSRF token does nothing.
            for data in ({"domain": "plain.test"}, {"domain": "plain.test", "csrf": "x"}):
                r = await ui.post("/ui/destinations/suspend", data=data)
                assert r.status_code == 403 and "CSRF" in r.text
            held = (await admin.get("/admin/v1/queues", params={"domain": "plain.test"})).json()
            assert held["queues"][0]["suspensions"] == []

            # With it, the destination is suspended (seen through the admin API) ...
            csrf = await _page_csrf(ui, "/ui/destinations")
            r = await ui.post(
                "/ui/destinations/suspend",
                data={"domain": "plain.test", "csrf": csrf, "duration": "2h"},
            )
            assert r.status_code == 303 and "suspended" in r.headers["location"]
            held = (await admin.get("/admin/v1/queues", params={"domain": "plain.test"})).json()
            [suspension] = held["queues"][0]["suspensions"]
            assert suspension["tenant"] == "*" and suspension["until"] is not None
            page = await ui.get(r.headers["location"])
            assert "suspended */plain.test" in page.text
            feed = (await ui.get("/ui/api/destinations")).json()
            [row] = [d for d in feed["destinations"] if d["domain"] == "plain.test"]
            assert row["suspended"] is True

            # ... held mail stays queued, and resume from the dashboard sends it.
            sent = await e.send("someone@plain.test", tags=["spring"])
            await asyncio.sleep(0.5)
            assert (await e.message(sent["id"]))["recipients"][0]["status"] == "queued"
            resume = {"domain": "plain.test", "csrf": csrf}
            r = await ui.post("/ui/destinations/resume", data=resume)
            assert r.status_code == 303
            await e.settle(1)

            # A bad duration is an error on the page, not a crash.
            r = await ui.post(
                "/ui/destinations/suspend",
                data={"domain": "plain.test", "csrf": csrf, "duration": "soon"},
            )
            assert r.status_code == 303 and "error=" in r.headers["location"]

            # Pause and resume a tenant.
            acme = await node.store.get_tenant(name="acme")
            assert acme is not None
            r = await ui.post(f"/ui/tenants/{acme.id}/pause", data={"csrf": csrf})
            assert r.status_code == 303
            status = (await admin.get(f"/admin/v1/tenants/{acme.id}")).json()["status"]
            assert status["status"] == "paused" and status["changed_by"] == "operator"
            overview = (await ui.get("/ui/api/overview")).json()
            assert [t["name"] for t in overview["held"]] == ["acme"]
            r = await ui.post(f"/ui/tenants/{acme.id}/resume", data={"csrf": csrf})
            status = (await admin.get(f"/admin/v1/tenants/{acme.id}")).json()["status"]
            assert status["status"] == "ok"

            # The audit log names the token behind the session for each action.
            entries = (await admin.get("/admin/v1/audit")).json()["entries"]
            mine = [(x["action"], x["actor"]["id"]) for x in entries]
            assert mine == [
                ("dashboard.login", token_id),
                ("queue.suspend", token_id),
                ("queue.resume", token_id),
                ("tenant.pause", token_id),
                ("tenant.resume", token_id),
            ]

            # Sign out: the cookie is cleared and the old one is refused.
            old = ui.cookies.get("pl_session", path="/ui")
            assert old
            r = await ui.post("/ui/logout", data={"csrf": csrf})
            assert r.status_code == 303 and r.headers["location"] == "/ui/login"
            assert (await ui.get("/ui")).status_code == 303
            async with _client(node) as stolen:
                stolen.cookies.set("pl_session", old, path="/ui")
                assert (await stolen.get("/ui/api/overview")).status_code == 401


async def test_search_feeds_and_activity_counts(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("plain.test")]) as e:
        secret, _ = await _admin_token(e.node)
        sent = await e.send(["Ann@plain.test", "bob@plain.test"], tags=["invoice", "q3"])
        other = await e.send("carl@plain.test", tags=["newsletter"])
        await e.settle(3)
        async with _client(e.node) as ui:
            assert (await _sign_in(ui, secret)).status_code == 303
            # By recipient (any case), by tag, and by id (auto-detected or chosen).
            r = await ui.get("/ui/messages", params={"q": "ann@PLAIN.test"})
            assert r.status_code == 200
            assert re.findall(r'class="message-link">([^<]+)<', r.text) == [sent["id"]]
            r = await ui.get("/ui/messages", params={"q": "newsletter", "by": "tag"})
            assert re.findall(r'class="message-link">([^<]+)<', r.text) == [other["id"]]
            r = await ui.get("/ui/messages", params={"q": sent["id"]})
            assert re.findall(r'class="message-link">([^<]+)<', r.text) == [sent["id"]]
            r = await ui.get("/ui/messages", params={"q": "nobody@plain.test"})
            assert "No message found." in r.text
            # The message page: recipients with attempts, and the event timeline.
            r = await ui.get(f"/ui/messages/{sent['id']}")
            assert r.status_code == 200
            timeline = re.findall(r'<li class="event ([a-z_]+)">', r.text)
            assert timeline.count("delivered") == 2 and "accepted" in timeline
            assert "250" in r.text  # the last reply of each recipient
            r = await ui.get("/ui/messages/01J0000000000000000000000X")
            assert "No message has id" in r.text

            # The overview's per-minute counts come from the activity rows, written by
            # the node within its flush interval.
            async def counted() -> dict[str, Any] | None:
                data = (await ui.get("/ui/api/overview")).json()
                series = data["activity"]["series"]
                done = sum(series["accepted"]) == 3 and sum(series["delivered"]) == 3
                return data if done else None

            data = await wait_for(counted, timeout=20, interval=0.5)
            assert len(data["activity"]["series"]["accepted"]) == 180  # 3 h of minutes
            assert data["queue"]["total"] == 0 and data["warnings"] == []
            assert data["queue"]["states"]["delivered"] == 3
            rows = await e.node.store.activity(since=0)
            assert sum(r.accepted for r in rows) == 3 and sum(r.bounced for r in rows) == 0

            tenants = (await ui.get("/ui/api/tenants")).json()
            [acme] = tenants["tenants"]
            assert acme["name"] == "acme" and acme["status"] == "ok"
            assert tenants["thresholds"]["bounce_pause"] == 0.1


async def test_session_expires_and_revoked_token_ends_it(tmp_path: Path) -> None:
    extra = FAST_RETRY + '[dashboard]\nsession_ttl = "2s"\n'
    async with internet(
        tmp_path,
        [domain("plain.test")],
        node_extra=extra,
        api_extra='public_url = "https://mail.example.test"',
    ) as e:
        secret, token_id = await _admin_token(e.node)
        async with _client(e.node) as ui, api_client(e.node, secret) as admin:
            # Served behind TLS (an https public_url): the cookies are Secure.
            r = await _secure_sign_in(ui, secret)
            cookie = _cookie_header(r, "pl_session")
            assert "secure" in cookie.lower() and "max-age=2" in cookie.lower()
            assert (await ui.get("/ui/api/tenants")).status_code == 200
            await asyncio.sleep(2.2)
            assert (await ui.get("/ui/api/tenants")).status_code == 401
            r = await ui.get("/ui/tenants")
            assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")

            # A new session ends when its admin token is revoked.
            other, other_id = await _admin_token(e.node, "second")
            async with _client(e.node) as ui2:
                await _secure_sign_in(ui2, other)
                assert (await ui2.get("/ui/api/tenants")).status_code == 200
                assert (await admin.delete(f"/admin/v1/tokens/{other_id}")).status_code == 200
                assert (await ui2.get("/ui/api/tenants")).status_code == 401
            assert token_id != other_id
