"""RFC 3464 delivery status fields: per-message and per-recipient blocks.

Pure text processing. :func:`parse_fields` reads ``Name: value`` blocks (with folded
continuation lines) separated by blank lines, the body of a ``message/delivery-status``
part; :func:`recipient_statuses` turns them into :class:`DeliveryStatus` records.
The same reader serves bounces that print such fields in a plain-text part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from postline.bounce._mime import ADDRESS, clean_address

__all__ = [
    "DeliveryStatus",
    "address_of",
    "normalise_action",
    "parse_fields",
    "recipient_statuses",
    "usable",
]

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
_ANGLE = re.compile(r"<([^<>]*@[^<>]*)>")


def parse_fields(text: str) -> list[dict[str, str]]:
    """Blocks of ``Name: value`` fields; names lower-cased, the first of a repeat kept.

    A line that is neither a field nor a continuation ends nothing and is ignored, so
    stray prose between blocks does no harm.
    """
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, None
            continue
        if line[0] in " \t" and last is not None:
            current[last] += " " + line.strip()
            continue
        m = _FIELD.match(line)
        if m is None:
            last = None
            continue
        name = m.group(1).lower()
        if name in current:
            # A repeated field inside one block starts a new recipient block (some
            # software forgets the blank line between recipients).
            if name in ("final-recipient", "original-recipient") and "final-recipient" in current:
                blocks.append(current)
                current = {}
            else:
                last = None
                continue
        current[name] = m.group(2).strip()
        last = name
    if current:
        blocks.append(current)
    return blocks


def address_of(value: str) -> str | None:
    """The address in a ``Final-Recipient`` style value (``rfc822; <a@b>`` → ``a@b``).

    Source routes (``@relay:user@host``) and prefixes such as ``SMTP=`` are removed; a
    value that holds no usable address (``x-unix; |/usr/bin/program``) gives None.
    """
    if not value:
        return None
    _, sep, rest = value.partition(";")
    candidate = (rest if sep else value).strip()
    m = _ANGLE.search(candidate)
    if m:
        candidate = m.group(1)
    candidate = candidate.strip().strip("<> \t'")
    if candidate.startswith('"') and candidate.count('"') == 2 and candidate.endswith('"'):
        candidate = candidate[1:-1]  # the whole address quoted, not a quoted local part
    if candidate.lower().startswith("mailto:"):
        candidate = candidate[7:]
    if " " in candidate or "\t" in candidate:
        found = ADDRESS.search(candidate)
        if found is None:
            return None
        candidate = found.group(1)
    if candidate.startswith("@") and ":" in candidate:
        candidate = candidate.rsplit(":", 1)[1]
    local, at, domain = candidate.rpartition("@")
    if not at or not local or not domain:
        return None
    cleaned = clean_address(candidate)
    if cleaned is not None:
        return cleaned
    # Keep a dotless domain (user@localhost) for lack of better; refuse a broken local
    # part such as a redacted "david...".
    if ".." in local or local.endswith(".") or " " in candidate:
        return None
    return f"{local}@{domain.lower()}"


def usable(address: str | None) -> bool:
    """Whether ``address`` has a dotted domain (not ``user@localhost`` or ``u@server``)."""
    return bool(address) and clean_address(address or "") is not None


def _typed(value: str) -> tuple[str, str]:
    """``type; text`` → (type lower-cased, text); a value without a type has type ``""``."""
    kind, sep, rest = value.partition(";")
    if sep and re.fullmatch(r"[A-Za-z0-9-]{1,20}", kind.strip()):
        return kind.strip().lower(), rest.strip()
    return "", value.strip()


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """One per-recipient block of a delivery status notification."""

    recipient: str | None
    other_recipient: str | None = None  # the Final- or Original-Recipient not chosen
    action: str | None = None
    status: str | None = None
    diagnostic: str = ""
    diagnostic_type: str = ""
    remote_mta: str | None = None
    reporting_mta: str | None = None
    last_attempt: str | None = None


_ACTIONS = {
    "failed": "failed",
    "failure": "failed",
    "fail": "failed",
    "error": "failed",
    "bounced": "failed",
    "bounce": "failed",
    "rejected": "failed",
    "undeliverable": "failed",
    "delayed": "delayed",
    "delay": "delayed",
    "deferred": "delayed",
    "warning": "delayed",
    "delivered": "delivered",
    "success": "delivered",
    "sent": "delivered",
    "relayed": "relayed",
    "expanded": "expanded",
}


def normalise_action(value: str | None) -> str | None:
    """An RFC 3464 action from what some software writes instead (``failure``, ``error``)."""
    if not value or not value.split():
        return None
    word = value.split()[0].strip(";,.()").lower()
    return _ACTIONS.get(word)


def _status(value: str) -> str | None:
    m = _STATUS.search(value or "")
    return f"{m.group(1)}.{int(m.group(2))}.{int(m.group(3))}" if m else None


def _host(value: str) -> str | None:
    _, host = _typed(value)
    words = host.split()
    # "mx.example.com. (192.0.2.1, the server for the domain example.com.)": the host
    # is the first word, without the root's trailing dot.
    host = words[0].strip("[]").rstrip(".").lower() if words else ""
    return host or None


def recipient_statuses(blocks: list[dict[str, str]]) -> list[DeliveryStatus]:
    """The per-recipient records among ``blocks`` (those naming a recipient)."""
    reporting: str | None = None
    out: list[DeliveryStatus] = []
    for block in blocks:
        if "reporting-mta" in block and reporting is None:
            reporting = _host(block["reporting-mta"])
        final = block.get("final-recipient") or block.get("x-actual-recipient") or ""
        original = block.get("original-recipient", "")
        if not final and not original:
            continue
        final_addr = address_of(final)
        original_addr = address_of(original)
        # The recipient as the sender wrote it (ORCPT) when it is a real address; the
        # final one after aliasing otherwise.
        recipient = original_addr if usable(original_addr) else final_addr
        if not usable(recipient) and usable(final_addr):
            recipient = final_addr
        other = final_addr if recipient == original_addr else original_addr
        action = normalise_action(block.get("action"))
        status = _status(block.get("status", ""))
        dtype, diag = _typed(block.get("diagnostic-code", ""))
        # Some software explains the status in a comment: "Status: 4.0.0 (host lookup failed)".
        comment = re.sub(r"^\s*[245]\.\d{1,3}\.\d{1,3}\s*", "", block.get("status", "")).strip()
        if comment and not diag:
            diag = comment.strip("()")
        if action is None and status is not None:
            action = "failed" if status[0] == "5" else "delayed" if status[0] == "4" else None
        out.append(
            DeliveryStatus(
                recipient=recipient,
                other_recipient=other if other and other != recipient else None,
                action=action,
                status=status,
                diagnostic=diag,
                diagnostic_type=dtype,
                remote_mta=_host(block["remote-mta"]) if block.get("remote-mta") else None,
                reporting_mta=reporting,
                last_attempt=block.get("last-attempt-date"),
            )
        )
    return out
