"""Messages as an operator finds them: by id, recipient or tag across tenants, each
with its recipients (attempts, last reply) and its events. Reads only."""

from __future__ import annotations

from dataclasses import dataclass

from postline.control.context import ControlContext
from postline.errors import ValidationError
from postline.store.base import Event, EventQuery, MessageView

__all__ = ["MAX_RESULTS", "MessageDetail", "MessageView", "find", "show"]

MAX_RESULTS = 50
_TIMELINE = 1000


@dataclass(frozen=True, slots=True)
class MessageDetail:
    message: MessageView
    events: list[Event]
    """The message's events, oldest first (at most 1000)."""


async def find(
    ctx: ControlContext,
    *,
    message_id: str = "",
    recipient: str = "",
    tag: str = "",
    scan: int = 10_000,
) -> list[MessageView]:
    """Messages with that id, or with that recipient and/or tag among the latest
    ``scan`` messages (newest first, at most :data:`MAX_RESULTS`)."""
    message_id, recipient, tag = message_id.strip(), recipient.strip(), tag.strip()
    if message_id:
        found = await ctx.store.get_message(None, message_id)
        return [found] if found is not None else []
    if not recipient and not tag:
        raise ValidationError(
            "a search needs a message id, a recipient or a tag",
            field="q",
            fix="Give a message id (msg_…), a recipient address or a tag.",
        )
    ids = await ctx.store.find_messages(
        recipient=recipient or None, tag=tag or None, scan=scan, limit=MAX_RESULTS
    )
    out = []
    for found_id in ids:
        view = await ctx.store.get_message(None, found_id)
        if view is not None:
            out.append(view)
    return out


async def show(ctx: ControlContext, message_id: str) -> MessageDetail | None:
    """One message (any tenant's) and its event timeline; None when unknown."""
    view = await ctx.store.get_message(None, message_id)
    if view is None:
        return None
    events = await ctx.store.events(
        EventQuery(tenant_id=view.tenant_id, message_id=view.id, limit=_TIMELINE)
    )
    return MessageDetail(view, events)
