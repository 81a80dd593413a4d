"""The IANA registry of SMTP enhanced status codes, and the category each code means.

:data:`REGISTRY` lists every enumerated code of the IANA "Simple Mail Transfer Protocol
(SMTP) Enhanced Status Codes" registry (RFC 3463, RFC 5248 and the RFCs that added codes
since: RFC 3886, RFC 4468, RFC 4954, RFC 6531, RFC 6710, RFC 7293, RFC 7372, RFC 7505,
RFC 8617, RFC 8689), with the registry's name for it and the category a failure with that
code gets when its text says nothing more specific. :data:`SUBJECTS` gives the category of
a code the registry does not enumerate (a provider's own ``5.7.999``, say), by its subject.

The classifier reads these codes through the status rules of
``rules/50-status.toml``, ``rules/20-gave-up.toml`` and ``rules/90-codes.toml``; a unit
test walks this table through the classifier, so the rules and the table cannot drift
apart. Text rules (``10-text.toml``) and providers' tables (``05-providers.toml``) are
read first, so a specific wording still overrides a status.

Deliberate choices, where the registry's name alone would suggest otherwise:

* ``X.0.0`` says nothing: the reply code decides (no code at all: ``unknown``);
* the success details ``X.1.5``, ``X.1.9`` and ``X.3.6`` say nothing about a failure
  (``unknown``);
* ``X.1.0`` and ``X.2.0`` are refusals of the recipient without a reason:
  ``invalid_recipient``, never hard;
* ``X.2.4`` (mailing list expansion problem) is ``routing``: the list, not the address;
* ``X.3.2`` is ``bad_domain`` when permanent (the system accepts no mail, as a null MX
  says) and ``transient`` when temporary; ``X.4.4`` (unable to route) likewise is
  ``bad_domain`` when permanent and ``routing`` when temporary;
* all of ``X.6.x`` is ``spam_content`` (this message's content or format was refused);
* ``X.7.13`` "user account disabled" is ``inactive_mailbox``: in a bounce the account is
  the recipient's (Exchange's "sender was not authenticated for public folder" wording
  under the same code is read as ``policy`` by a provider rule first);
* ``X.7.17`` / ``X.7.18`` (RFC 7293: the mailbox or domain changed owners since the
  sender last knew it) are ``invalid_recipient`` / ``bad_domain``: the address the sender
  has is not the person it meant;
* ``X.7.27`` (the *sender's* domain has a null MX) is ``policy``, not ``bad_domain``.
* a temporary code in a final report (``Action: failed``, 4.x.x) is ``expired`` (the sender
  gave up), except ``X.4.6`` (a loop is not cured by retrying): see ``20-gave-up.toml``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["REGISTRY", "SUBJECTS", "Registered", "category_of", "meaning"]


@dataclass(frozen=True, slots=True)
class Registered:
    """One enumerated code of the IANA registry.

    ``code`` is ``X.<subject>.<detail>``; ``category`` is the category of a failure with
    that code (permanent or temporary), ``temporary`` the category of a temporary one
    (4.x.x) when it differs.
    """

    code: str
    meaning: str
    reference: str
    category: str
    temporary: str | None = None

    @property
    def subject_detail(self) -> str:
        """``<subject>.<detail>``, the part of the code after the class."""
        return self.code[2:]


_R = Registered

REGISTRY: tuple[Registered, ...] = (
    _R("X.0.0", "Other undefined Status", "RFC 3463", "unknown"),
    # --- X.1: addressing -------------------------------------------------------------
    _R("X.1.0", "Other address status", "RFC 3463", "invalid_recipient"),
    _R("X.1.1", "Bad destination mailbox address", "RFC 3463", "invalid_recipient"),
    _R("X.1.2", "Bad destination system address", "RFC 3463", "bad_domain"),
    _R("X.1.3", "Bad destination mailbox address syntax", "RFC 3463", "invalid_recipient"),
    _R("X.1.4", "Destination mailbox address ambiguous", "RFC 3463", "invalid_recipient"),
    _R("X.1.5", "Destination address valid", "RFC 3463", "unknown"),
    _R(
        "X.1.6",
        "Destination mailbox has moved, No forwarding address",
        "RFC 3463",
        "invalid_recipient",
    ),
    _R("X.1.7", "Bad sender's mailbox address syntax", "RFC 3463", "policy"),
    _R("X.1.8", "Bad sender's system address", "RFC 3463", "policy"),
    _R("X.1.9", "Message relayed to non-compliant mailer", "RFC 3886", "unknown"),
    _R("X.1.10", "Recipient address has null MX", "RFC 7505", "bad_domain"),
    # --- X.2: mailbox ----------------------------------------------------------------
    _R("X.2.0", "Other or undefined mailbox status", "RFC 3463", "invalid_recipient"),
    _R("X.2.1", "Mailbox disabled, not accepting messages", "RFC 3463", "inactive_mailbox"),
    _R("X.2.2", "Mailbox full", "RFC 3463", "mailbox_full"),
    _R("X.2.3", "Message length exceeds administrative limit", "RFC 3463", "message_too_large"),
    _R("X.2.4", "Mailing list expansion problem", "RFC 3463", "routing"),
    # --- X.3: mail system ------------------------------------------------------------
    _R("X.3.0", "Other or undefined mail system status", "RFC 3463", "transient"),
    _R("X.3.1", "Mail system full", "RFC 3463", "mailbox_full"),
    _R(
        "X.3.2",
        "System not accepting network messages",
        "RFC 3463",
        "bad_domain",
        temporary="transient",
    ),
    _R("X.3.3", "System not capable of selected features", "RFC 3463", "protocol"),
    _R("X.3.4", "Message too big for system", "RFC 3463", "message_too_large"),
    _R("X.3.5", "System incorrectly configured", "RFC 3463", "transient"),
    _R("X.3.6", "Requested priority was changed", "RFC 6710", "unknown"),
    # --- X.4: network and routing ----------------------------------------------------
    _R("X.4.0", "Other or undefined network or routing status", "RFC 3463", "routing"),
    _R("X.4.1", "No answer from host", "RFC 3463", "routing"),
    _R("X.4.2", "Bad connection", "RFC 3463", "routing"),
    _R("X.4.3", "Directory server failure", "RFC 3463", "routing"),
    _R("X.4.4", "Unable to route", "RFC 3463", "bad_domain", temporary="routing"),
    _R("X.4.5", "Mail system congestion", "RFC 3463", "transient"),
    _R("X.4.6", "Routing loop detected", "RFC 3463", "routing"),
    _R("X.4.7", "Delivery time expired", "RFC 3463", "expired"),
    # --- X.5: mail delivery protocol -------------------------------------------------
    _R("X.5.0", "Other or undefined protocol status", "RFC 3463", "protocol"),
    _R("X.5.1", "Invalid command", "RFC 3463", "protocol"),
    _R("X.5.2", "Syntax error", "RFC 3463", "protocol"),
    _R("X.5.3", "Too many recipients", "RFC 3463", "rate_limited"),
    _R("X.5.4", "Invalid command arguments", "RFC 3463", "protocol"),
    _R("X.5.5", "Wrong protocol version", "RFC 3463", "protocol"),
    _R("X.5.6", "Authentication Exchange line is too long", "RFC 4954", "protocol"),
    # --- X.6: message content or media -----------------------------------------------
    _R("X.6.0", "Other or undefined media error", "RFC 3463", "spam_content"),
    _R("X.6.1", "Media not supported", "RFC 3463", "spam_content"),
    _R("X.6.2", "Conversion required and prohibited", "RFC 3463", "spam_content"),
    _R("X.6.3", "Conversion required but not supported", "RFC 3463", "spam_content"),
    _R("X.6.4", "Conversion with loss performed", "RFC 3463", "spam_content"),
    _R("X.6.5", "Conversion Failed", "RFC 3463", "spam_content"),
    _R("X.6.6", "Message content not available", "RFC 4468", "spam_content"),
    _R(
        "X.6.7",
        "Non-ASCII addresses not permitted for that sender/recipient",
        "RFC 6531",
        "spam_content",
    ),
    _R(
        "X.6.8",
        "UTF-8 string reply is required, but not permitted by the SMTP client",
        "RFC 6531",
        "spam_content",
    ),
    _R(
        "X.6.9",
        "UTF-8 header message cannot be transferred to one or more recipients",
        "RFC 6531",
        "spam_content",
    ),
    _R("X.6.10", "Duplicate of X.6.8 (deprecated)", "RFC 6531", "spam_content"),
    # --- X.7: security or policy -----------------------------------------------------
    _R("X.7.0", "Other or undefined security status", "RFC 3463", "policy"),
    _R("X.7.1", "Delivery not authorized, message refused", "RFC 3463", "policy"),
    _R("X.7.2", "Mailing list expansion prohibited", "RFC 3463", "policy"),
    _R("X.7.3", "Security conversion required but not possible", "RFC 3463", "protocol"),
    _R("X.7.4", "Security features not supported", "RFC 3463", "auth_failure"),
    _R("X.7.5", "Cryptographic failure", "RFC 3463", "auth_failure"),
    _R("X.7.6", "Cryptographic algorithm not supported", "RFC 3463", "auth_failure"),
    _R("X.7.7", "Message integrity failure", "RFC 3463", "auth_failure"),
    _R("X.7.8", "Authentication credentials invalid", "RFC 4954", "auth_failure"),
    _R("X.7.9", "Authentication mechanism is too weak", "RFC 4954", "auth_failure"),
    _R("X.7.10", "Encryption Needed", "RFC 5248", "auth_failure"),
    _R(
        "X.7.11",
        "Encryption required for requested authentication mechanism",
        "RFC 4954",
        "auth_failure",
    ),
    _R("X.7.12", "A password transition is needed", "RFC 4954", "auth_failure"),
    _R("X.7.13", "User Account Disabled", "RFC 5248", "inactive_mailbox"),
    _R("X.7.14", "Trust relationship required", "RFC 5248", "auth_failure"),
    _R("X.7.15", "Priority Level is too low", "RFC 6710", "policy"),
    _R("X.7.16", "Message is too big for the specified priority", "RFC 6710", "message_too_large"),
    _R("X.7.17", "Mailbox owner has changed", "RFC 7293", "invalid_recipient"),
    _R("X.7.18", "Domain owner has changed", "RFC 7293", "bad_domain"),
    _R("X.7.19", "RRVS test cannot be completed", "RFC 7293", "policy"),
    _R("X.7.20", "No passing DKIM signature found", "RFC 7372", "auth_failure"),
    _R("X.7.21", "No acceptable DKIM signature found", "RFC 7372", "auth_failure"),
    _R("X.7.22", "No valid author-matched DKIM signature found", "RFC 7372", "auth_failure"),
    _R("X.7.23", "SPF validation failed", "RFC 7372", "auth_failure"),
    _R("X.7.24", "SPF validation error", "RFC 7372", "auth_failure"),
    _R("X.7.25", "Reverse DNS validation failed", "RFC 7372", "spam_block"),
    _R("X.7.26", "Multiple authentication checks failed", "RFC 7372", "auth_failure"),
    _R("X.7.27", "Sender address has null MX", "RFC 7505", "policy"),
    _R("X.7.28", "Mail flood detected", "IANA", "rate_limited"),
    _R("X.7.29", "ARC validation failure", "RFC 8617", "auth_failure"),
    _R("X.7.30", "REQUIRETLS support required", "RFC 8689", "auth_failure"),
)

SUBJECTS: dict[int, str | None] = {
    0: None,  # other or undefined: the reply code decides
    1: "invalid_recipient",  # addressing, as X.1.0 (never hard: no precise reason)
    2: "invalid_recipient",  # mailbox, as X.2.0
    3: "transient",  # mail system, as X.3.0
    4: "routing",  # network and routing, as X.4.0
    5: "protocol",  # mail delivery protocol, as X.5.0
    6: "spam_content",  # message content or media, as X.6.0
    7: "policy",  # security or policy, as X.7.0
}
"""The category of a code the registry does not enumerate, by its subject (RFC 3463
section 3: the subject alone still says what kind of trouble it is)."""

_BY_SUBJECT_DETAIL = {r.subject_detail: r for r in REGISTRY}
_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")


def meaning(status: str) -> str | None:
    """The registry's name for an enhanced status code (``5.1.1`` → "Bad destination
    mailbox address"); ``None`` for a code the registry does not enumerate."""
    m = _STATUS.match(status.strip())
    if m is None:
        return None
    entry = _BY_SUBJECT_DETAIL.get(f"{int(m.group(2))}.{int(m.group(3))}")
    return entry.meaning if entry else None


def category_of(status: str) -> str | None:
    """The category an enhanced status code alone gives a failure (the table above, else
    the subject's); ``None`` for a malformed code or one whose subject says nothing."""
    m = _STATUS.match(status.strip())
    if m is None:
        return None
    subject, detail = int(m.group(2)), int(m.group(3))
    entry = _BY_SUBJECT_DETAIL.get(f"{subject}.{detail}")
    if entry is not None:
        if m.group(1) == "4" and entry.temporary is not None:
            return entry.temporary
        return entry.category
    return SUBJECTS.get(subject)
