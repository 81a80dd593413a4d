"""``/u/{token}``: RFC 8058 one-click unsubscribe, reached from ``List-Unsubscribe``.

No API key, no cookies: the signed token in the path is the only credential, and it
names one recipient of one message. ``POST`` unsubscribes (mailbox providers send
``List-Unsubscribe=One-Click`` form-encoded or as multipart/form-data; an empty body is
taken too, and the body is not otherwise interpreted). ``GET`` only shows a page whose
button sends that POST: link scanners follow GETs, so a GET never unsubscribes.
"""

from __future__ import annotations

import json
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from postline.api.context import ApiContext
from postline.api.problems import Problem
from postline.api.schemas import ProblemOut

__all__ = ["UnsubscribeOut", "router"]

router = APIRouter(tags=["unsubscribe"])

SOURCE = "one-click"

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;"
    "line-height:1.5;color:#222}button{font:inherit;padding:.5rem 1.25rem;cursor:pointer}"
)


class UnsubscribeOut(BaseModel):
    status: Literal["unsubscribed"] = Field(
        description="Always 'unsubscribed', also when the link was used before."
    )


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{title}</title>'
        f"<style>{_STYLE}</style></head><body><main><h1>{title}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=_HEADERS)


_NOT_FOUND = (
    "Not found",
    "<p>This unsubscribe link is not valid. Copy the whole link from the message, or use "
    "the unsubscribe option of your mail program.</p>",
)


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept or "application/xhtml+xml" in accept


@router.get(
    "/u/{token}",
    response_class=HTMLResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "A page with an Unsubscribe button"},
        404: {"content": {"text/html": {}}, "description": "Not a valid unsubscribe link"},
    },
    summary="Unsubscribe page (changes nothing; its button POSTs)",
)
async def unsubscribe_page(request: Request, token: str) -> HTMLResponse:
    ctx: ApiContext = request.app.state.ctx
    if ctx.unsubscribe is None or not ctx.unsubscribe.verify(token):
        return _page(*_NOT_FOUND, status=404)
    return _page(
        "Unsubscribe",
        "<p>Stop receiving these emails at this address?</p>"
        '<form method="post">'
        '<input type="hidden" name="List-Unsubscribe" value="One-Click">'
        '<button type="submit">Unsubscribe</button></form>',
    )


@router.post(
    "/u/{token}",
    response_model=UnsubscribeOut,
    responses={
        200: {
            "content": {"text/html": {}},
            "description": "Unsubscribed (also when it was done before); HTML when the "
            "client accepts text/html",
        },
        404: {"model": ProblemOut, "description": "Not a valid unsubscribe link"},
    },
    summary="RFC 8058 one-click unsubscribe: suppress the address the link names",
)
async def unsubscribe(request: Request, token: str) -> Response:
    ctx: ApiContext = request.app.state.ctx
    done = None
    if ctx.unsubscribe is not None:
        done = await ctx.unsubscribe.apply_token(token, source=SOURCE)
    if done is None:
        raise Problem(
            404,
            "unsubscribe-link",
            "This unsubscribe link is not valid (forged, mangled, or for a message this "
            "node does not have).",
            fix="Use the List-Unsubscribe URL of the message unchanged.",
        )
    if _wants_html(request):
        return _page("Unsubscribed", "<p>You will not receive these emails any more.</p>")
    return Response(
        json.dumps({"status": "unsubscribed"}),
        media_type="application/json",
        headers={"Cache-Control": "no-store"},
    )
