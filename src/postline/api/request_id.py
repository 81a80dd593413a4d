"""Every request gets an id: the client's ``X-Request-Id`` when it is a sane token, else
a new one. Routes read it as ``request.state.request_id`` (the audit log keeps it), and
every answer carries it back in ``X-Request-Id``, so a client's log line and the
operator's audit entry can be matched."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postline.model.ids import new_id

__all__ = ["HEADER", "RequestId", "request_id_of"]

HEADER = "x-request-id"
_SANE = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


def request_id_of(scope: Scope) -> str:
    state = scope.get("state") or {}
    return str(state.get("request_id", ""))


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", []) if k == HEADER.encode()), b"")
        rid = given.decode("ascii") if _SANE.fullmatch(given) else new_id()
        scope.setdefault("state", {})["request_id"] = rid

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != HEADER.encode()]
                headers.append((HEADER.encode(), rid.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)
