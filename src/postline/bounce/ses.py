"""Amazon SES notifications delivered as e-mail (SNS e-mail subscriptions).

The body is JSON: either the notification itself or an SNS envelope whose ``Message``
holds it as a string. ``notificationType`` (or ``eventType``) is ``Bounce``,
``Complaint`` or ``Delivery``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["SesNotification", "SesRecipient", "parse_ses"]

_FOLD = re.compile(r"!\n ")
_TYPE = re.compile(r'"(?:notificationType|eventType)"\s*:\s*"(Bounce|Complaint|Delivery)"')


@dataclass(frozen=True, slots=True)
class SesRecipient:
    address: str
    status: str | None = None
    action: str | None = None
    diagnostic: str = ""


@dataclass(frozen=True, slots=True)
class SesNotification:
    """One SES notification: its type, recipients and what SES says about them."""

    kind: str  # "bounce", "complaint" or "delivery"
    recipients: tuple[SesRecipient, ...]
    permanent: bool = True
    sub_type: str = ""
    feedback_type: str | None = None
    user_agent: str | None = None
    reporting_mta: str | None = None
    message_id: str | None = None


def _load(body: str) -> dict[str, Any] | None:
    start = body.find("{")
    decoder = json.JSONDecoder()
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(body[start:])
        except ValueError:
            start = body.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            inner = obj.get("Message")
            if isinstance(inner, str) and _TYPE.search(inner):
                return _load(inner)
            return obj
        start = body.find("{", start + 1)
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_ses(body: str) -> SesNotification | None:
    """The SES notification in ``body``, or None when there is none."""
    if not _TYPE.search(body):
        return None
    # A mail server that folds lines over 990 octets (sendmail) inserts "!", a line break
    # and a space; JSON never holds a raw line break inside a string, so undo the fold.
    data = _load(_FOLD.sub("", body.replace("\r\n", "\n")))
    if data is None:
        return None
    kind = _text(data.get("notificationType") or data.get("eventType")).lower()
    mail = data.get("mail") if isinstance(data.get("mail"), dict) else {}
    assert isinstance(mail, dict)
    message_id = None
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        message_id = common["messageId"]
    for h in mail.get("headers") or []:
        if isinstance(h, dict) and _text(h.get("name")).lower() == "message-id":
            message_id = _text(h.get("value")) or message_id
    if kind == "bounce":
        b = data.get("bounce") or {}
        recipients = tuple(
            SesRecipient(
                _text(r.get("emailAddress")),
                _text(r.get("status")) or None,
                _text(r.get("action")) or None,
                _text(r.get("diagnosticCode")),
            )
            for r in b.get("bouncedRecipients") or []
            if isinstance(r, dict) and r.get("emailAddress")
        )
        return SesNotification(
            "bounce",
            recipients,
            permanent=_text(b.get("bounceType")).lower() != "transient",
            sub_type=_text(b.get("bounceSubType")),
            reporting_mta=_text(b.get("reportingMTA")) or None,
            message_id=message_id,
        )
    if kind == "complaint":
        c = data.get("complaint") or {}
        recipients = tuple(
            SesRecipient(_text(r.get("emailAddress")))
            for r in c.get("complainedRecipients") or []
            if isinstance(r, dict) and r.get("emailAddress")
        )
        return SesNotification(
            "complaint",
            recipients,
            feedback_type=_text(c.get("complaintFeedbackType")) or "abuse",
            user_agent=_text(c.get("userAgent")) or None,
            message_id=message_id,
        )
    d = data.get("delivery") or {}
    response = _text(d.get("smtpResponse"))
    recipients = tuple(
        SesRecipient(r, None, "delivered", response)
        for r in d.get("recipients") or []
        if isinstance(r, str)
    )
    return SesNotification("delivery", recipients, permanent=False, message_id=message_id)
