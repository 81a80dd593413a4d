"""/v1/messages: submit (single and batch), check before sending, inspect, cancel."""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from pydantic import ValidationError as PydanticValidationError

from postline.api.context import ApiContext, require
from postline.api.problems import Problem, validation_problem
from postline.api.schemas import BatchOut, CancelOut, MessageAccepted, MessageOut, ProblemOut, iso
from postline.check import Finding, spamd_client
from postline.check import check_message as run_checks
from postline.domains.service import DomainService
from postline.errors import SendingPaused, StoreUnavailable, ValidationError
from postline.ingest.collection import collection_paused
from postline.ingest.schema import SURROGATES_CHECKED, BatchIn, MessageIn, may_hold_surrogates
from postline.model import RecipientState
from postline.model.ids import id_time, recipient_id
from postline.store.base import (
    EventQuery,
    IdempotencyClaim,
    KeyIdentity,
    MessageView,
    NewMessage,
    Tenant,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["messages"])

_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ProblemOut, "description": "Malformed JSON"},
    401: {"model": ProblemOut, "description": "Missing or invalid API key"},
    403: {
        "model": ProblemOut,
        "description": "Sending is paused for this tenant (bounce or complaint rate; "
        "'detail' says which rate crossed which threshold, 'fix' how to get resumed), or "
        "its daily or monthly quota would be exceeded (type quota-exceeded: 'quota', "
        "'limit', 'used', 'requested' and 'resets_at' say which, how much and until when; "
        "nothing was stored)",
    },
    409: {"model": ProblemOut, "description": "Idempotency-Key reused with a different body"},
    413: {"model": ProblemOut, "description": "Body too large"},
    422: {"model": ProblemOut, "description": "Invalid message"},
    429: {
        "model": ProblemOut,
        "description": "The tenant's or the API key's rate limit (recipients per second) is "
        "reached (type rate-limited: 'limit', 'rate', 'burst'); nothing was stored, a batch "
        "as a whole. Retry after the Retry-After header's seconds.",
    },
}

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes the request safe to retry: the same key with the same body returns "
        "the first answer and queues nothing new, for 24 hours.",
    ),
]


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _accepted(m: NewMessage, now: float) -> dict[str, Any]:
    status = "scheduled" if m.next_attempt_at > now + 1 else "queued"
    recipients = []
    for r in m.recipients:
        if r.suppressed is None:
            recipients.append(
                {"id": recipient_id(m.id, r.idx), "address": r.address, "status": status}
            )
        else:
            recipients.append(
                {
                    "id": recipient_id(m.id, r.idx),
                    "address": r.address,
                    "status": "suppressed",
                    "reason": r.suppressed,
                }
            )
    return {"id": m.id, "message_id": m.message_id_header, "recipients": recipients}


def _key_of(request: Request) -> KeyIdentity | None:
    """The API key of the request (its own rate limit), as authentication left it."""
    found = getattr(request.state, "api_key", None)
    return found if isinstance(found, KeyIdentity) else None


def _problem_from(
    exc: ValidationError | PydanticValidationError, prefix: tuple[Any, ...]
) -> Problem:
    if isinstance(exc, PydanticValidationError):
        return validation_problem([dict(e) for e in exc.errors()], prefix=prefix)
    field = ".".join(str(p) for p in prefix) + (f".{exc.field}" if exc.field else "")
    return Problem(
        422,
        "validation",
        str(exc),
        fix=exc.fix,
        errors=[{"field": field or "body", "message": str(exc)}],
    )


async def _check_key(
    ctx: ApiContext, tenant: Tenant, key: str | None, request_hash: str
) -> Response | None:
    if key is None:
        return None
    if not _KEY.match(key):
        raise Problem(
            400,
            "bad-idempotency-key",
            "The Idempotency-Key header must be 1-255 printable ASCII characters.",
            fix="Use e.g. a UUID as the key.",
        )
    try:
        stored = await ctx.store.get_idempotency(tenant.id, key)
    except StoreUnavailable as exc:
        ctx.store.health.failed("idempotency", exc)
        raise
    if stored is None:
        return None
    return _replay(stored.request_hash, stored.status, stored.response, request_hash)


def _replay(stored_hash: str, status: int, response: str, request_hash: str) -> Response:
    if stored_hash != request_hash:
        raise Problem(
            409,
            "idempotency-conflict",
            "This Idempotency-Key was already used with a different request body.",
            fix="Send the same body as the first request, or use a new key for a new message.",
        )
    return Response(
        response,
        status_code=status,
        media_type="application/json",
        headers={"Idempotent-Replayed": "true"},
    )


async def _enqueue(
    ctx: ApiContext,
    api_key: KeyIdentity | None,
    tenant: Tenant,
    messages: list[NewMessage],
    status: int,
    body: dict[str, Any],
    key: str | None,
    request_hash: str,
    now: float,
) -> Response:
    text = json.dumps(body, separators=(",", ":"))
    claim = IdempotencyClaim(key, request_hash, status, text, now) if key else None
    replay = await ctx.ingestor.enqueue(
        tenant.id, messages, idempotency=claim, limited=True, key=api_key
    )
    if replay is not None:
        return _replay(replay.request_hash, replay.status, replay.response, request_hash)
    return Response(text, status_code=status, media_type="application/json")


@router.post(
    "/messages",
    status_code=202,
    response_model=MessageAccepted,
    responses=_ERRORS,
    summary="Send one message",
)
async def send_message(
    payload: MessageIn,
    request: Request,
    tenant: Annotated[Tenant, require("send")],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Queue one message for up to 1000 recipients (`[api] max_recipients`).
    202 means it is stored durably. The message as sent — headers, text, HTML and
    attachments after encoding — may be at most `[submission] max_message_size` bytes
    (default 25 MiB; base64 makes attachments a third larger); a bigger one gets 422."""
    ctx: ApiContext = request.app.state.ctx
    raw = await request.body()
    request_hash = hashlib.sha256(b"POST /v1/messages\n" + raw).hexdigest()
    replay = await _check_key(ctx, tenant, idempotency_key, request_hash)
    if replay is not None:
        return replay
    await ctx.ingestor.check_sending(tenant.id)
    now = time.time()
    message = ctx.ingestor.build_api_message(tenant.id, payload, now=now)
    (message,) = await ctx.ingestor.apply_suppressions(tenant.id, [message], now=now)
    return await _enqueue(
        ctx,
        _key_of(request),
        tenant,
        [message],
        202,
        _accepted(message, now),
        idempotency_key,
        request_hash,
        now,
    )


@router.post(
    "/messages/batch",
    status_code=202,
    response_model=BatchOut,
    responses=_ERRORS,
    summary="Send many messages in one request",
)
async def send_batch(
    payload: BatchIn,
    request: Request,
    tenant: Annotated[Tenant, require("send")],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """Queue up to 1000 personalised messages in one durable transaction.

    Each item is validated on its own: valid items are queued, invalid ones are reported
    with a problem object in ``results`` (202 when at least one was accepted, 422 when none
    was).
    """
    ctx: ApiContext = request.app.state.ctx
    limit = ctx.config.api.max_batch
    if not payload.messages:
        raise Problem(
            422, "validation", "The batch is empty.", fix="Put 1 or more items in 'messages'."
        )
    if len(payload.messages) > limit:
        raise Problem(
            422,
            "validation",
            f"The batch has {len(payload.messages)} messages; the limit is {limit}.",
            fix="Split it into several batches.",
        )
    total = sum(_count_recipients(item) for item in payload.messages)
    if total > ctx.config.api.max_batch_recipients:
        raise Problem(
            422,
            "validation",
            f"The batch has {total} recipients in all; the limit is "
            f"{ctx.config.api.max_batch_recipients}.",
            fix="Split it into several batches.",
        )
    raw = await request.body()
    request_hash = hashlib.sha256(b"POST /v1/messages/batch\n" + raw).hexdigest()
    replay = await _check_key(ctx, tenant, idempotency_key, request_hash)
    if replay is not None:
        return replay
    await ctx.ingestor.check_sending(tenant.id)
    now = time.time()
    results: list[dict[str, Any]] = []
    accepted: list[NewMessage] = []
    slots: list[int] = []
    context = None if may_hold_surrogates(raw) else {SURROGATES_CHECKED: True}
    with collection_paused():
        for i, item in enumerate(payload.messages):
            try:
                m = MessageIn.model_validate(item, context=context)
                built = ctx.ingestor.build_api_message(tenant.id, m, now=now)
            except (PydanticValidationError, ValidationError) as exc:
                problem = _problem_from(exc, ("messages", i))
                results.append({"index": i, "status": "rejected", "error": problem.body()})
                continue
            accepted.append(built)
            slots.append(len(results))
            results.append({"index": i, "status": "accepted"})
    accepted = await ctx.ingestor.apply_suppressions(tenant.id, accepted, now=now)
    with collection_paused():
        for slot, built in zip(slots, accepted, strict=True):
            results[slot].update(_accepted(built, now))
    status = 202 if accepted else 422
    body = {"accepted": len(accepted), "rejected": len(results) - len(accepted), "results": results}
    if not accepted:
        problem = Problem(
            422,
            "validation",
            f"None of the {len(results)} messages of the batch is valid.",
            fix="Correct the items whose errors 'results' lists, and send the batch again.",
        )
        return Response(
            json.dumps({**problem.body(request.url.path), **body}),
            status_code=422,
            media_type="application/problem+json",
        )
    return await _enqueue(
        ctx, _key_of(request), tenant, accepted, status, body, idempotency_key, request_hash, now
    )


class FindingOut(BaseModel):
    check: str = Field(
        description="What was checked: from, date, message_id, mime_version, "
        "recipients_header, subject, duplicate_headers, header_syntax, mime, "
        "text_alternative, html_size, line_length, size, dkim, spf, dmarc, dmarc_alignment, "
        "return_path, unsubscribe, sender_domain, spamassassin, sending, suppressions."
    )
    status: Literal["ok", "warning", "error"] = Field(
        description="error: receivers reject it, spam-file it or it fails authentication; "
        "warning: receivers may count it against the message."
    )
    message: str = Field(description="What was found.")
    fix: str = Field(description="How to fix it ('' when ok).")


class SpamRuleOut(BaseModel):
    name: str
    score: float | None
    description: str


class SpamOut(BaseModel):
    score: float
    threshold: float = Field(description="spamd's required score: at or above it is spam.")
    spam: bool
    rules: list[SpamRuleOut] = Field(description="The SpamAssassin rules that hit.")


class CheckOut(BaseModel):
    ok: bool = Field(description="No finding is an error.")
    errors: int
    warnings: int
    from_domain: str
    stream: str
    size: int = Field(description="Size of the message as it would be stored, in bytes.")
    findings: list[FindingOut]
    spam: SpamOut | None = Field(
        description="SpamAssassin's verdict when [check] spamd is configured and answered."
    )


@router.post(
    "/messages/check",
    response_model=CheckOut,
    responses={k: v for k, v in _ERRORS.items() if k not in (403, 409)},
    summary="Check a message before sending it",
)
async def check_message(
    payload: MessageIn, request: Request, tenant: Annotated[Tenant, require("send")]
) -> Response:
    """Report what receivers (Gmail, Yahoo and Microsoft's sender rules, SpamAssassin)
    would object to in this message, without queueing anything: the same body as
    ``POST /v1/messages``, built into the same bytes, then checked — headers, MIME, line
    lengths, size, DKIM, SPF, DMARC, return path, one-click unsubscribe, suppressed
    recipients and, with ``[check] spamd``, the SpamAssassin score. A body that
    ``POST /v1/messages`` would refuse is the same 422 problem here."""
    ctx: ApiContext = request.app.state.ctx
    now = time.time()
    built = ctx.ingestor.build_api_message(tenant.id, payload, now=now, check_sender=False)
    domains = ctx.extra.get("domains")
    report = await run_checks(
        built.body,
        tenant_id=tenant.id,
        stream=built.stream,
        domains=domains if isinstance(domains, DomainService) else None,
        config=ctx.config,
        spamd=spamd_client(ctx.config),
        mail_from=built.mail_from,
        public_url=ctx.config.api.public_url or str(request.base_url).rstrip("/"),
    )
    try:
        await ctx.ingestor.check_sending(tenant.id)
    except SendingPaused as exc:
        report.findings.append(Finding("sending", "error", str(exc), exc.fix))
    (marked,) = await ctx.ingestor.apply_suppressions(tenant.id, [built], now=now)
    suppressed = [f"{r.address} ({r.suppressed})" for r in marked.recipients if r.suppressed]
    if suppressed:
        report.findings.append(
            Finding(
                "suppressions",
                "warning",
                f"{len(suppressed)} of {len(marked.recipients)} recipient(s) are on the "
                f"suppression list and would not be sent to: {', '.join(suppressed[:20])}",
                "leave them out; an address that bounced or complained stays suppressed "
                "(DELETE /v1/suppressions/{address} removes an entry made by mistake)",
            )
        )
    else:
        report.findings.append(
            Finding("suppressions", "ok", "no recipient is on the suppression list")
        )
    return _json(200, report.as_dict())


def _count_recipients(item: Any) -> int:
    """Recipients an unvalidated batch item names (for the size check before the work)."""
    if not isinstance(item, dict):
        return 0
    n = 0
    for field in ("to", "cc", "bcc"):
        value = item.get(field)
        n += len(value) if isinstance(value, list) else (1 if value else 0)
    return n


def _recipient_status(view: MessageView, now: float) -> list[str]:
    out = []
    for r in view.recipients:
        if r.state is not RecipientState.QUEUED:
            out.append(r.state.value)
        elif r.leased:
            out.append("sending")
        elif r.attempts > 0:
            out.append("deferred")
        elif r.next_attempt_at is not None and r.next_attempt_at > now + 1:
            out.append("scheduled")
        else:
            out.append("queued")
    return out


def _overall(statuses: list[str]) -> str:
    kinds = set(statuses)
    if len(kinds) == 1:
        return statuses[0]
    if kinds & {"queued", "scheduled", "sending", "deferred"}:
        return "in_progress"
    if "delivered" in kinds:
        return "partially_delivered"
    return "failed"


@router.get(
    "/messages/{message_id}",
    response_model=MessageOut,
    responses={404: {"model": ProblemOut}, 401: {"model": ProblemOut}},
    summary="A message and every recipient's state and attempts",
)
async def get_message(
    message_id: str, request: Request, tenant: Annotated[Tenant, require("read")]
) -> Response:
    ctx: ApiContext = request.app.state.ctx
    view = await ctx.store.get_message(tenant.id, message_id)
    if view is None:
        made = id_time(message_id)
        if made is not None and made < time.time() - ctx.config.retention.messages:
            raise Problem(
                404,
                "expired",
                f"Message {message_id!r} is older than this node keeps messages "
                f"([retention] messages, {ctx.config.retention.messages / 86400:g} days): "
                "it was deleted with its recipients.",
                fix="Keep what you need from its events (webhooks, GET /v1/events) while "
                "they are retained, or raise [retention] messages.",
            )
        raise Problem(
            404,
            "not-found",
            f"No message {message_id!r} exists for this tenant.",
            fix="Use the id returned by POST /v1/messages.",
        )
    events = await ctx.store.events(
        EventQuery(tenant_id=tenant.id, message_id=message_id, limit=10_000)
    )
    per_rcpt: dict[int, list[dict[str, Any]]] = {}
    for e in events:
        if e.recipient_idx is None:
            continue
        item = {"type": e.type, "at": iso(e.at)}
        for k in ("code", "enhanced", "text", "mx", "ip"):
            if e.data.get(k) is not None:
                item[k] = e.data[k]
        per_rcpt.setdefault(e.recipient_idx, []).append(item)
    now = time.time()
    statuses = _recipient_status(view, now)
    recipients = []
    for r, status in zip(view.recipients, statuses, strict=True):
        last = None
        if r.last_code is not None:
            last = {
                "code": r.last_code,
                "enhanced": r.last_enhanced,
                "text": r.last_text,
                "mx": r.last_mx,
            }
        recipients.append(
            {
                "id": recipient_id(view.id, r.idx),
                "address": r.address,
                "status": status,
                "attempts": r.attempts,
                "next_attempt_at": iso(r.next_attempt_at),
                "expires_at": iso(r.expires_at),
                "updated_at": iso(r.updated_at),
                "last_reply": last,
                "events": per_rcpt.get(r.idx, []),
            }
        )
    return _json(
        200,
        {
            "id": view.id,
            "created_at": iso(view.created_at),
            "status": _overall(statuses),
            "from": view.mail_from,
            "subject": view.subject,
            "message_id": view.message_id_header,
            "source": view.source,
            "stream": view.stream,
            "size": view.size,
            "tags": view.tags,
            "metadata": view.metadata,
            "body_deleted_at": iso(view.body_deleted_at),
            "recipients": recipients,
        },
    )


@router.delete(
    "/messages/{message_id}",
    response_model=CancelOut,
    responses={404: {"model": ProblemOut}, 401: {"model": ProblemOut}},
    summary="Cancel whatever of a message is not yet delivered",
)
async def cancel_message(
    message_id: str, request: Request, tenant: Annotated[Tenant, require("send")]
) -> Response:
    """Recipients still queued or deferred become ``cancelled``. A recipient whose
    delivery is in progress at this moment may still be delivered."""
    ctx: ApiContext = request.app.state.ctx
    view = await ctx.store.get_message(tenant.id, message_id)
    if view is None:
        raise Problem(
            404,
            "not-found",
            f"No message {message_id!r} exists for this tenant.",
            fix="Use the id returned by POST /v1/messages.",
        )
    if ctx.on_cancel is not None:
        ctx.on_cancel(message_id)  # before the store: nothing buffered may slip out between
    n = await ctx.store.cancel(tenant.id, message_id, now=time.time(), node_id=ctx.ingestor.node_id)
    after = await ctx.store.get_message(tenant.id, message_id)
    assert after is not None
    statuses = _recipient_status(after, time.time())
    return _json(
        200,
        {
            "id": message_id,
            "cancelled": n,
            "recipients": [
                {"id": recipient_id(message_id, r.idx), "address": r.address, "status": s}
                for r, s in zip(after.recipients, statuses, strict=True)
            ],
        },
    )
