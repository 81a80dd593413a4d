"""Unknown query parameters are refused, not ignored.

A misspelt or invented parameter (``GET /v1/events?after=…`` where the API reads
``cursor``) would otherwise be dropped silently and the client would get an answer to
another question. :func:`known_query_parameters` runs before every route of ``/v1`` and
``/admin/v1`` and answers 400 with the parameters the route does read.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from postline.api.problems import Problem

__all__ = ["known_query_parameters"]

_CHECKED = ("/v1/", "/admin/v1/")
_known: dict[int, frozenset[str]] = {}


def _query_names(dependant: Dependant) -> set[str]:
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


def _names(route: APIRoute) -> frozenset[str]:
    names = _known.get(id(route))
    if names is None:
        names = frozenset(_query_names(route.dependant))
        _known[id(route)] = names
    return names


async def known_query_parameters(request: Request) -> None:
    """Refuse a request to ``/v1`` or ``/admin/v1`` naming a query parameter its route
    does not read."""
    if not request.url.path.startswith(_CHECKED) or not request.query_params:
        return
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    known = _names(route)
    unknown = sorted(set(request.query_params.keys()) - known)
    if not unknown:
        return
    reads = ", ".join(sorted(known)) if known else "no query parameters"
    raise Problem(
        400,
        "unknown-parameter",
        f"{request.method} {route.path} does not read the query parameter"
        f"{'s' if len(unknown) > 1 else ''} {', '.join(repr(u) for u in unknown)}; "
        f"it reads {reads}.",
        fix="Remove or correct the parameter (see the API reference for this route).",
        errors=[{"field": f"query.{u}", "message": "unknown query parameter"} for u in unknown],
    )
