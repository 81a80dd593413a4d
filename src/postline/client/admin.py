"""A small typed client of a node's admin API (``/admin/v1``), over httpx.

Each method is one request; answers are the API's JSON as it is (the shapes are in
:mod:`postline.api.admin_schemas` and :mod:`postline.api.admin_queue_schemas`). A
problem answer (RFC 9457) raises :class:`ApiError` with its title, detail and fix; a node
that cannot be reached raises :class:`Unreachable` saying why.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["AdminClient", "ApiError", "Unreachable"]

Json = dict[str, Any]


class ApiError(Exception):
    """The API answered with a problem (or something that is not JSON)."""

    def __init__(self, status: int, problem: Json) -> None:
        self.status = status
        self.problem = problem
        self.title = str(problem.get("title") or f"HTTP {status}")
        self.detail = str(problem.get("detail") or "")
        self.fix = str(problem.get("fix") or "")
        super().__init__(f"{status} {self.title}: {self.detail}".rstrip(": "))


class Unreachable(Exception):
    """No answer from the node: refused, timed out, not HTTP."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach {url}: {reason}")


def _segment(value: str) -> str:
    return quote(value, safe="")


class AdminClient:
    """One node's admin API, authenticated with an admin token (``pla_…``)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "postline-cli"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Json | None = None,
        params: dict[str, str | int] | None = None,
    ) -> Json:
        try:
            r = self._http.request(method, path, json=body, params=params)
        except httpx.ConnectError as exc:
            raise Unreachable(self.url, f"connection failed ({_reason(exc)})") from None
        except httpx.TimeoutException:
            raise Unreachable(self.url, "no answer in time") from None
        except httpx.HTTPError as exc:
            raise Unreachable(self.url, _reason(exc)) from None
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code >= 400 or not isinstance(data, dict):
            problem = data if isinstance(data, dict) else {}
            if not problem:
                problem = {
                    "title": f"HTTP {r.status_code}",
                    "detail": f"the answer of {method} {path} is not JSON"
                    if r.status_code < 400
                    else r.text[:200],
                    "fix": "Check that --url names a postline node's API (its [api] listen).",
                }
            raise ApiError(r.status_code, problem)
        return data

    # -- tenants ---------------------------------------------------------------------
    def tenants(self) -> Json:
        return self._call("GET", "/admin/v1/tenants")

    def tenant(self, tenant_id: str) -> Json:
        return self._call("GET", f"/admin/v1/tenants/{_segment(tenant_id)}")

    def find_tenant(self, name_or_id: str) -> Json:
        """The tenant with this id, else with this name (ApiError 404 if neither)."""
        for t in self.tenants()["tenants"]:
            if name_or_id in (t["id"], t["name"]):
                return dict(t)
        raise ApiError(
            404,
            {
                "title": "Not Found",
                "detail": f"no tenant has the id or name {name_or_id!r}",
                "fix": "List the tenants with 'postline tenant ls'.",
            },
        )

    def create_tenant(self, name: str) -> Json:
        return self._call("POST", "/admin/v1/tenants", body={"name": name})

    def set_tenant_limits(self, tenant_id: str, limits: Json) -> Json:
        """Change the tenant's own limits: ``limits`` maps ``rate_per_second``,
        ``burst``, ``daily_quota``, ``monthly_quota`` to a number (0: unlimited) or None
        (back to the ``[limits]`` default); the fields left out stay."""
        path = f"/admin/v1/tenants/{_segment(tenant_id)}"
        return self._call("PATCH", path, body={"limits": limits})

    def pause_tenant(self, tenant_id: str, reason: str = "") -> Json:
        path = f"/admin/v1/tenants/{_segment(tenant_id)}/pause"
        return self._call("POST", path, body={"reason": reason})

    def resume_tenant(self, tenant_id: str) -> Json:
        return self._call("POST", f"/admin/v1/tenants/{_segment(tenant_id)}/resume")

    def delete_tenant(self, tenant_id: str) -> Json:
        return self._call("DELETE", f"/admin/v1/tenants/{_segment(tenant_id)}")

    # -- API keys --------------------------------------------------------------------
    def keys(self, tenant_id: str) -> Json:
        return self._call("GET", f"/admin/v1/tenants/{_segment(tenant_id)}/keys")

    def create_key(
        self, tenant_id: str, *, name: str = "", scopes: list[str] | None = None
    ) -> Json:
        body: Json = {"name": name, "scopes": scopes}
        return self._call("POST", f"/admin/v1/tenants/{_segment(tenant_id)}/keys", body=body)

    def update_key(self, tenant_id: str, key_id: str, changes: Json) -> Json:
        """Change a key's ``scopes``, ``rate_per_second`` or ``burst`` (None: the
        default); the fields left out stay."""
        path = f"/admin/v1/tenants/{_segment(tenant_id)}/keys/{_segment(key_id)}"
        return self._call("PATCH", path, body=changes)

    def revoke_key(self, tenant_id: str, key_id: str) -> Json:
        path = f"/admin/v1/tenants/{_segment(tenant_id)}/keys/{_segment(key_id)}"
        return self._call("DELETE", path)

    # -- queues ----------------------------------------------------------------------
    def queues(
        self,
        *,
        domain: str | None = None,
        tenant: str | None = None,
        after: str = "",
        limit: int = 100,
    ) -> Json:
        params: dict[str, str | int] = {"limit": limit}
        if domain:
            params["domain"] = domain
        if tenant:
            params["tenant"] = tenant
        if after:
            params["after"] = after
        return self._call("GET", "/admin/v1/queues", params=params)

    def queue_sites(
        self,
        *,
        tenant: str | None = None,
        after: str = "",
        limit: int = 100,
        resolve: bool = True,
    ) -> Json:
        """A page of destination domains grouped by MX site / provider bucket."""
        params: dict[str, str | int] = {"limit": limit}
        if tenant:
            params["tenant"] = tenant
        if after:
            params["after"] = after
        if not resolve:
            params["resolve"] = "false"
        return self._call("GET", "/admin/v1/queues/sites", params=params)

    def queue_action(self, action: str, selector: Json) -> Json:
        """``suspend``, ``resume``, ``retry-now`` or ``bounce`` on a selection (tenant,
        domain, provider; stream and tag for retry-now and bounce; duration for suspend,
        reason for bounce)."""
        body = {k: v for k, v in selector.items() if v is not None}
        return self._call("POST", f"/admin/v1/queues/{action}", body=body)

    def reroute(self, body: Json) -> Json:
        return self._call(
            "POST",
            "/admin/v1/queues/reroute",
            body={k: v for k, v in body.items() if v is not None},
        )

    def end_reroute(self, reroute_id: str) -> Json:
        return self._call("DELETE", f"/admin/v1/queues/reroute/{_segment(reroute_id)}")

    # -- audit -----------------------------------------------------------------------
    def audit(self, *, tenant: str | None = None, after: int = 0, limit: int = 100) -> Json:
        params: dict[str, str | int] = {"after": after, "limit": limit}
        if tenant:
            params["tenant"] = tenant
        return self._call("GET", "/admin/v1/audit", params=params)


def _reason(exc: BaseException) -> str:
    """The innermost cause's words (e.g. 'Connection refused')."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    text = str(exc).strip()
    return text.split("] ", 1)[-1] if text else type(exc).__name__
