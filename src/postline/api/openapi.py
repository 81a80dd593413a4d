"""The OpenAPI document as the API behaves: who may call each route, and error bodies.

FastAPI describes routes from their Python signatures, which leaves out two things the
API does in shared code rather than in each route: authentication (a dependency reading
``Authorization``) and error answers (the problem handlers, ``application/problem+json``).
:func:`install_openapi` adds both to the generated document, keyed by path prefix, so a
route declares neither and a client generated from the document still gets them right.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from postline.api.problems import MEDIA_TYPE
from postline.api.schemas import ProblemOut

__all__ = ["ADMIN_SCHEME", "API_KEY_SCHEME", "describe", "install_openapi", "scheme_of"]

API_KEY_SCHEME = "ApiKey"
ADMIN_SCHEME = "AdminToken"

_SCHEMES: dict[str, dict[str, Any]] = {
    API_KEY_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "A tenant's API key: 'Authorization: Bearer <key>'. Create one with "
        "'postline tenant create NAME' or 'postline tenant key NAME'.",
    },
    ADMIN_SCHEME: {
        "type": "http",
        "scheme": "bearer",
        "description": "An admin token (pla_...): 'Authorization: Bearer <token>'. A tenant's "
        "API key is refused here.",
    },
}

# Path prefix -> the scheme its routes require. Routes under no prefix are public
# (/healthz, /readyz, the one-click unsubscribe links /u/{token}).
_SECURED = (("/admin/v1/", ADMIN_SCHEME), ("/v1/", API_KEY_SCHEME))

_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemOut"}
_UNAUTHORIZED = {
    API_KEY_SCHEME: "Missing or invalid API key",
    ADMIN_SCHEME: "Missing or invalid admin token",
}
# FastAPI's own description of a 422, replaced by the problem document the API sends.
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")

_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def scheme_of(path: str) -> str | None:
    """The security scheme the route at ``path`` requires, or None for a public one."""
    for prefix, scheme in _SECURED:
        if path.startswith(prefix):
            return scheme
    return None


def describe(document: dict[str, Any]) -> dict[str, Any]:
    """Add security schemes and problem responses to a FastAPI-generated ``document``
    (changed in place and returned)."""
    components = document.setdefault("components", {})
    components.setdefault("securitySchemes", {}).update(_SCHEMES)
    for path, item in document.get("paths", {}).items():
        scheme = scheme_of(path)
        for method in _METHODS:
            operation = item.get(method)
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            if scheme is not None:
                declared = operation.get("security") or []
                if not any(scheme in requirement for requirement in declared):
                    # Routes that declare their scopes (``require``) keep them.
                    operation["security"] = [{scheme: []}]
                responses.setdefault("401", {"description": _UNAUTHORIZED[scheme]})
                # Refused in shared code: strict_query.py and the validation handler.
                if any(p.get("in") == "query" for p in operation.get("parameters", [])):
                    responses.setdefault("400", {"description": "Unknown query parameter"})
                if "requestBody" in operation:
                    responses.setdefault("400", {"description": "The body is not valid JSON"})
                    responses.setdefault("415", {"description": "The body is not sent as JSON"})
            for status, response in responses.items():
                if status[:1] in ("4", "5"):
                    # A route that answers an error with a page (text/html) says so.
                    pages = {
                        media: body
                        for media, body in response.get("content", {}).items()
                        if not _is_json(media)
                    }
                    response["content"] = {MEDIA_TYPE: {"schema": dict(_PROBLEM_REF)}, **pages}
    schemas = components.setdefault("schemas", {})
    schemas.setdefault("ProblemOut", ProblemOut.model_json_schema())
    if not _mentions(document["paths"], _FASTAPI_VALIDATION[0]):
        for name in _FASTAPI_VALIDATION:
            schemas.pop(name, None)
    return document


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def _mentions(value: Any, schema: str) -> bool:
    ref = f"#/components/schemas/{schema}"
    if isinstance(value, dict):
        return value.get("$ref") == ref or any(_mentions(v, schema) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, schema) for v in value)
    return False


def install_openapi(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and /openapi.json) return the described document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = describe(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
