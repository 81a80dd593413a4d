"""The message submission shape shared by the HTTP API (and documented in its OpenAPI)."""

from __future__ import annotations

import base64
import binascii
import math
import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from postline.ingest.addresses import InvalidAddress, parse_address

__all__ = [
    "RESERVED_HEADERS",
    "SURROGATES_CHECKED",
    "AddressIn",
    "BatchIn",
    "MessageIn",
    "may_hold_surrogates",
]

_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")
_UNSAFE = re.compile(r"[\r\n\x00]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_TAG = re.compile(r"^[A-Za-z0-9_.:/@+-]{1,64}$")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_NAMED = re.compile(r'\s*(?:"?([^"<]*?)"?\s*)<([^<>]+)>\s*')

RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "return-path",
        "received",
        "dkim-signature",
        "x-postline-id",
        "sender",
    }
)


class AddressIn(BaseModel):
    """A mailbox with an optional display name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str = Field(description="The address, e.g. 'ann@example.com'.")
    name: str | None = Field(None, max_length=256, description="Display name, e.g. 'Ann Lee'.")

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        try:
            return parse_address(value.strip()).address
        except InvalidAddress as exc:
            raise ValueError(str(exc)) from None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and _UNSAFE.search(value):
            raise ValueError("a display name may not contain line breaks or NUL")
        return value


def _address(value: Any) -> Any:
    """Accept 'addr', 'Name <addr>' or {"email", "name"}."""
    if isinstance(value, str):
        text = value.strip()
        if _UNSAFE.search(text):
            raise ValueError("an address may not contain line breaks or NUL")
        m = _NAMED.fullmatch(text) if "<" in text else None
        if m:
            return {"email": m.group(2), "name": m.group(1).strip() or None}
        return {"email": text}
    return value


class _StringOrObject:
    """JSON schema of an address field: what the validators accept, not only the model.

    ``_address`` turns ``'addr'`` and ``'Name <addr>'`` into an :class:`AddressIn` before
    validation; the published schema must allow those strings too, or clients generated
    from it refuse the requests the API takes."""

    def __init__(self, *, single_or_list: bool = False) -> None:
        self.single_or_list = single_or_list

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        described = handler(core_schema)
        if self.single_or_list:
            # list[AddressIn]: {"type": "array", "items": {"$ref": ...}, ...}
            one = _one_address(described["items"])
            out = {k: v for k, v in described.items() if k not in ("type", "items")}
            return {**out, "anyOf": [*one["anyOf"], {"type": "array", "items": one}]}
        return _one_address(described)


def _one_address(model: JsonSchemaValue) -> JsonSchemaValue:
    text = {
        "type": "string",
        "description": "'addr' or 'Name <addr>'",
        "examples": ["Ann Lee <ann@example.com>"],
    }
    return {"anyOf": [text, model]}


Address = Annotated[AddressIn, _StringOrObject()]
"""One mailbox: 'addr', 'Name <addr>' or {email, name}."""

Addresses = Annotated[list[AddressIn], _StringOrObject(single_or_list=True)]
"""One mailbox or a list of them, each as :data:`Address`."""


def _unpaired_surrogate(value: Any, path: tuple[str, ...]) -> str | None:
    """The dotted path of the first string (or key) in ``value`` that holds an unpaired
    surrogate (JSON allows ``"\\ud800"``; no encoding can write it), else None."""
    if isinstance(value, str):
        # Almost every string is ASCII, which no surrogate is: one C-level check.
        if value.isascii() or _SURROGATE.search(value) is None:
            return None
        return ".".join(path)
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            if not name.isascii() and _SURROGATE.search(name):
                return ".".join((*path, "<key>"))
            if isinstance(item, str) and item.isascii():
                continue
            found = _unpaired_surrogate(item, (*path, name))
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, str) and item.isascii():
                continue
            found = _unpaired_surrogate(item, (*path, str(i)))
            if found is not None:
                return found
    return None


SURROGATES_CHECKED = "surrogates_checked"
"""Validation context key: True when the caller found that the JSON text the input was
read from cannot hold an unpaired surrogate (:func:`may_hold_surrogates`), so
:class:`MessageIn` need not look at every string again."""


def may_hold_surrogates(text: bytes) -> bool:
    """Whether JSON ``text`` may decode to a string with an unpaired surrogate. False only
    for ASCII without NUL (read as UTF-8 whatever the decoder, so no surrogate comes from
    its bytes) that has no ``\\uD800``-``\\uDFFF`` escape: one look at a whole batch
    instead of one walk through each message."""
    if not text.isascii() or b"\x00" in text:
        return True
    return b"\\u" in text and _SURROGATE_ESCAPE.search(text) is not None


class MessageIn(BaseModel):
    """One message: either structured fields (from, subject, text/html...) or ``raw``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: Address | None = Field(
        None,
        alias="from",
        description="Sender: 'addr', 'Name <addr>' or {email, name}. Required unless raw "
        "carries a From header.",
    )
    to: Addresses = Field(default_factory=list, description="Recipients (To header).")
    cc: Addresses = Field(default_factory=list, description="Recipients (Cc header).")
    bcc: Addresses = Field(default_factory=list, description="Recipients not shown.")
    reply_to: Addresses = Field(default_factory=list, description="Reply-To addresses.")
    subject: str | None = Field(None, max_length=998, description="Subject line.")
    text: str | None = Field(None, description="Plain-text body.")
    html: str | None = Field(None, description="HTML body.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra headers. Names may not be one postline sets itself (From, To, "
        "Subject, Date, Message-ID, Content-*...); values may not contain line breaks.",
    )
    tags: list[str] = Field(default_factory=list, max_length=20, description="Labels for events.")
    metadata: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, description="Your own key/values, echoed in events."
    )
    send_at: datetime | None = Field(
        None, description="Send no earlier than this time (RFC 3339, with a time zone)."
    )
    stream: str = Field(
        "transactional",
        pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$",
        description="Mail stream (e.g. transactional, marketing).",
    )
    raw: str | None = Field(
        None,
        description="A complete RFC 5322 message, base64-encoded. Recipients still come from "
        "to/cc/bcc.",
    )

    @model_validator(mode="before")
    @classmethod
    def _unicode(cls, data: Any, info: ValidationInfo) -> Any:
        if info.context is not None and info.context.get(SURROGATES_CHECKED):
            return data
        where = _unpaired_surrogate(data, ())
        if where is not None:
            raise ValueError(
                f"{where or 'the message'} contains an unpaired UTF-16 surrogate (such as "
                "\\ud800), which is not a character: send valid Unicode text"
            )
        return data

    @field_validator("from_", mode="before")
    @classmethod
    def _from(cls, value: Any) -> Any:
        return _address(value)

    @field_validator("to", "cc", "bcc", "reply_to", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if isinstance(value, str | dict):
            value = [value]
        if isinstance(value, list):
            return [_address(v) for v in value]
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str | None) -> str | None:
        if value is not None and _UNSAFE.search(value):
            raise ValueError("the subject may not contain line breaks or NUL")
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(
                    f"header name {name[:40]!r} is invalid: use printable ASCII without ':' or "
                    "spaces, at most 76 characters"
                )
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(
                    f"header {name!r} is set by postline; use the matching field "
                    "(from, to, subject...) instead"
                )
            if _UNSAFE.search(text):
                raise ValueError(f"header {name!r} contains a line break or NUL; remove it")
            if len(text) > 998 * 10:
                raise ValueError(f"header {name!r} is longer than 9980 characters")
            if any(len(word) > 900 for word in text.split()):
                raise ValueError(
                    f"header {name!r} has a word longer than 900 characters; a line of a "
                    "message may not exceed 998 (split it with spaces)"
                )
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        for tag in value:
            if not _TAG.match(tag):
                raise ValueError(
                    f"tag {tag[:40]!r} is invalid: 1-64 characters of letters, digits and _.:/@+-"
                )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(value) > 50:
            raise ValueError("at most 50 metadata keys")
        for key, item in value.items():
            if not key or len(key) > 128:
                raise ValueError("metadata keys must be 1-128 characters")
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError(f"metadata value of {key!r} must be a finite number")
            if isinstance(item, str) and len(item) > 1024:
                raise ValueError(f"metadata value of {key!r} is longer than 1024 characters")
        return value

    @field_validator("send_at")
    @classmethod
    def _send_at(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("send_at needs a time zone, e.g. '2026-12-01T09:00:00Z'")
        return value

    @field_validator("raw")
    @classmethod
    def _raw(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("raw must be the message encoded in standard base64") from None
        if b"\x00" in decoded:
            raise ValueError("raw contains a NUL byte, which mail may not carry; remove it")
        return value

    @model_validator(mode="after")
    def _shape(self) -> MessageIn:
        if not (self.to or self.cc or self.bcc):
            raise ValueError("at least one recipient is required in to, cc or bcc")
        if self.raw is not None:
            structured = [
                name for name in ("subject", "text", "html") if getattr(self, name) is not None
            ]
            if structured or self.headers or self.reply_to:
                raise ValueError(
                    "raw carries the whole message: leave out "
                    + ", ".join(
                        structured
                        + (["headers"] if self.headers else [])
                        + (["reply_to"] if self.reply_to else [])
                    )
                )
        else:
            if self.from_ is None:
                raise ValueError("'from' is required (or send the whole message as raw)")
            if self.text is None and self.html is None:
                raise ValueError("give a body: text, html or both (or the whole message as raw)")
        return self

    def raw_bytes(self) -> bytes:
        assert self.raw is not None
        return base64.b64decode(self.raw)

    def all_recipients(self) -> list[str]:
        """Envelope recipients: to + cc + bcc, duplicates removed (first one kept)."""
        seen: set[str] = set()
        out = []
        for a in (*self.to, *self.cc, *self.bcc):
            key = a.email.lower()
            if key not in seen:
                seen.add(key)
                out.append(a.email)
        return out


class _EachMessage:
    """JSON schema of the batch's items: each is a :class:`MessageIn`. The model keeps them
    as plain objects, validated one by one so one bad item does not refuse the batch."""

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        described = handler(core_schema)
        return {**described, "items": handler(MessageIn.__pydantic_core_schema__)}


class BatchIn(BaseModel):
    """Many messages in one request and one durable transaction."""

    model_config = ConfigDict(extra="forbid")

    messages: Annotated[list[dict[str, Any]], _EachMessage()] = Field(
        description="Up to [api] max_batch messages, each shaped like POST /v1/messages."
    )
