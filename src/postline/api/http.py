"""uvicorn's httptools protocol with a bound on the request head.

httptools parses URLs and headers of any size, so a client could make the node buffer
hundreds of megabytes before a single byte of the application ran. This protocol counts
the request line and header bytes and answers ``431`` (problem JSON) past ``MAX_HEAD``.
"""

from __future__ import annotations

import json

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["MAX_HEAD", "BoundedHttpToolsProtocol"]

MAX_HEAD = 64 * 1024

_BODY = json.dumps(
    {
        "type": "urn:postline:problem:header-too-large",
        "title": "Request header fields too large",
        "status": 431,
        "detail": f"The request line and headers are larger than {MAX_HEAD} bytes.",
        "fix": "Send shorter headers and URLs.",
    }
).encode()


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    _head_bytes = 0
    _head_too_big = False

    def on_message_begin(self) -> None:
        self._head_bytes = 0
        super().on_message_begin()

    def _count(self, n: int) -> None:
        self._head_bytes += n
        if self._head_bytes > MAX_HEAD:
            self._head_too_big = True
            # Surfaces as a parser error; send_400_response below answers it as a 431.
            raise httptools.HttpParserError("request head too large")

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        if not self._head_too_big:
            super().send_400_response(msg)
            return
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/problem+json\r\n"
            b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + _BODY
        )
        self.transport.close()
