"""RFC 9457 problem details: every API error says what was wrong and how to fix it."""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from postline.errors import (
    IntegrityViolation,
    NotFound,
    QuotaExceeded,
    RateLimited,
    SendingPaused,
    StoreUnavailable,
    ThrottleUnavailable,
    ValidationError,
)

__all__ = ["Problem", "install_problem_handlers", "problem_response"]

log = logging.getLogger(__name__)

PROBLEM_TYPE = "urn:postline:problem:"
MEDIA_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Invalid request",
    429: "Too many requests",
    500: "Internal error",
    503: "Service unavailable",
}


class Problem(Exception):
    """An error answered as problem JSON."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        fix: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.extensions = extensions
        self.status = status
        self.slug = slug
        self.detail = detail
        self.fix = fix
        self.title = title or _TITLES.get(status, "Error")
        self.errors = errors
        self.headers = headers

    def body(self, instance: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": PROBLEM_TYPE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.fix:
            out["fix"] = self.fix
        if self.errors:
            out["errors"] = self.errors
        if self.extensions:
            out.update(self.extensions)
        if instance:
            out["instance"] = instance
        return out


def problem_response(problem: Problem, instance: str | None = None) -> Response:
    return Response(
        json.dumps(problem.body(instance)),
        status_code=problem.status,
        media_type=MEDIA_TYPE,
        headers=problem.headers,
    )


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def _loc(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "body"


def validation_problem(errors: list[dict[str, Any]], *, prefix: tuple[Any, ...] = ()) -> Problem:
    items = []
    json_error = None
    for err in errors:
        if err.get("type") == "json_invalid":
            ctx = err.get("ctx") or {}
            json_error = ctx.get("error", "invalid JSON")
            continue
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "extra_forbidden":
            msg = "unknown field; check its spelling against the API reference"
        elif err.get("type") == "missing":
            msg = "this field is required"
        items.append({"field": _loc(prefix + loc), "message": msg})
    if json_error is not None:
        return Problem(
            400,
            "malformed-json",
            f"The request body is not valid JSON: {json_error}.",
            fix="Send a JSON object with Content-Type: application/json.",
        )
    summary = "; ".join(f"{i['field']}: {i['message']}" for i in items[:5])
    return Problem(
        422,
        "validation",
        f"The request is invalid: {summary}.",
        fix="Correct the fields listed in 'errors' and send the request again.",
        errors=items,
    )


_FASTAPI_BODY_ERROR = "There was an error parsing the body"


def _is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def _not_json(media: str) -> Problem:
    return Problem(
        415,
        "unsupported-media-type",
        f"The body was sent as {media!r}; this API reads JSON.",
        fix="Send the header 'Content-Type: application/json' (with curl: --json '{...}', "
        "or -H 'Content-Type: application/json' beside -d).",
    )


def bad_cursor(cursor: str) -> Problem:
    """The answer to a ``cursor`` query parameter that no page of this API gave out."""
    return Problem(
        422,
        "validation",
        f"cursor={cursor!r} is not a cursor from this API.",
        fix="Pass the next_cursor value of the previous page unchanged.",
        errors=[{"field": "cursor", "message": "invalid"}],
    )


def id_cursor(cursor: str | None) -> int:
    """The row id a numeric ``cursor`` continues after (0: the first page)."""
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 18):
        raise bad_cursor(cursor)
    return int(cursor)


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc, request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = list(exc.errors())
        media = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        body_error = any(tuple(e.get("loc", ()))[:1] == ("body",) for e in errors)
        if body_error and media and not _is_json(media):
            return problem_response(_not_json(media), request.url.path)
        return problem_response(validation_problem(errors), request.url.path)

    async def on_ingest_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ValidationError)
        errors = [{"field": exc.field, "message": str(exc)}] if exc.field else None
        return problem_response(
            Problem(422, "validation", str(exc), fix=exc.fix, errors=errors), request.url.path
        )

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 400 and detail == _FASTAPI_BODY_ERROR:
            # FastAPI's answer to a body it cannot decode at all (not UTF-8 text).
            problem = Problem(
                400,
                "malformed-json",
                "The request body is not valid JSON: it is not UTF-8 text.",
                fix="Send a JSON object, encoded as UTF-8, with Content-Type: application/json.",
            )
            return problem_response(problem, request.url.path)
        fixes = {
            404: "Check the URL; the API lives under /v1 (see /openapi.json).",
            405: "Check the method; see /openapi.json for what this path accepts.",
        }
        return problem_response(
            Problem(
                exc.status_code,
                f"http-{exc.status_code}",
                detail,
                fix=fixes.get(exc.status_code),
                headers=dict(exc.headers) if exc.headers else None,
            ),
            request.url.path,
        )

    async def on_unavailable(request: Request, exc: Exception) -> Response:
        # Counted and logged with the store's outage, not a line per request.
        ctx = getattr(request.app.state, "ctx", None)
        if ctx is not None:
            ctx.store.health.refused("api", exc)
        return problem_response(
            Problem(
                503,
                "store-unavailable",
                f"The message store cannot take the request right now: {exc}",
                fix="Retry after a short delay; nothing from this request was stored.",
                headers={"Retry-After": "5"},
            ),
            request.url.path,
        )

    async def on_paused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SendingPaused)
        return problem_response(
            Problem(403, "sending-paused", str(exc), fix=exc.fix, title="Sending paused"),
            request.url.path,
        )

    async def on_rate_limited(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RateLimited)
        retry = max(1, math.ceil(exc.retry_after))
        return problem_response(
            Problem(
                429,
                "rate-limited",
                _sentence(str(exc)),
                fix=f"Wait {retry} s (Retry-After) and send the request again, or spread the "
                f"recipients out: {exc.rate} per second with bursts of {exc.burst}. Nothing "
                "of this request was stored.",
                title="Rate limit reached",
                headers={"Retry-After": str(retry)},
                extensions={
                    "limit": exc.scope,
                    "rate": exc.rate,
                    "burst": exc.burst,
                    "retry_after": retry,
                },
            ),
            request.url.path,
        )

    async def on_quota(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, QuotaExceeded)
        resets = datetime.fromtimestamp(exc.resets_at, UTC).isoformat().replace("+00:00", "Z")
        return problem_response(
            Problem(
                403,
                "quota-exceeded",
                _sentence(f"{exc}; it resets at {resets}"),
                fix=f"Send again after {resets}, or fewer recipients "
                f"({max(0, exc.limit - exc.used)} remain), or ask the operator for a higher "
                "quota. Nothing of this request was stored.",
                title="Quota exceeded",
                extensions={
                    "quota": exc.period,
                    "limit": exc.limit,
                    "used": exc.used,
                    "requested": exc.requested,
                    "resets_at": resets,
                },
            ),
            request.url.path,
        )

    async def on_throttle_down(request: Request, exc: Exception) -> Response:
        return problem_response(
            Problem(
                503,
                "limits-unavailable",
                f"The rate limits cannot be checked right now: {exc}",
                fix="Retry after a short delay; nothing from this request was stored.",
                headers={"Retry-After": "5"},
            ),
            request.url.path,
        )

    async def on_conflict(request: Request, exc: Exception) -> Response:
        return problem_response(
            Problem(409, "conflict", str(exc), fix="Use a different name or identifier."),
            request.url.path,
        )

    async def on_not_found(request: Request, exc: Exception) -> Response:
        return problem_response(
            Problem(404, "not-found", str(exc), fix="Check the id; list the objects to find it."),
            request.url.path,
        )

    async def on_internal(request: Request, exc: Exception) -> Response:
        log.error(
            "unhandled error in %s %s",
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"action": "api.internal_error"},
        )
        return problem_response(
            Problem(
                500,
                "internal",
                "The server failed to handle the request; the error was logged.",
                fix="Retry later; if it persists, report it with the time of the request.",
            ),
            request.url.path,
        )

    app.add_exception_handler(Exception, on_internal)
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(ValidationError, on_ingest_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(StoreUnavailable, on_unavailable)
    app.add_exception_handler(IntegrityViolation, on_conflict)
    app.add_exception_handler(NotFound, on_not_found)
    app.add_exception_handler(SendingPaused, on_paused)
    app.add_exception_handler(RateLimited, on_rate_limited)
    app.add_exception_handler(QuotaExceeded, on_quota)
    app.add_exception_handler(ThrottleUnavailable, on_throttle_down)
