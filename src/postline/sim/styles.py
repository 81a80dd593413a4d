"""The words of each simulated provider: banners, greetings and the real reply texts.

A throttle style selects how a provider greets, how it says "too many connections" and
"you send too fast", at which command it says so, and how it confirms a queued message.
The texts follow what the providers really send (IP addresses and ids filled in), so the
node's reply classification is tested against realistic wording:

========= ====================== ======================================================
style     rate limit (command)   too many connections (command)
========= ====================== ======================================================
google    ``421-4.7.28`` "unusual rate of unsolicited mail" (end of DATA)
                                 ``421-4.7.0`` "Try again later, closing connection.
                                 (EHLO)" (EHLO)
microsoft ``451 4.7.500 Server busy... (S77714)`` (RCPT TO)
                                 ``421 4.3.2`` "maximum number of concurrent server
                                 connections" (banner)
yahoo     ``421 4.7.0 [TSS04]`` "temporarily deferred due to unexpected volume"
          (MAIL FROM)            ``421 4.7.0 [TSS03]`` "... concurrent connections"
                                 (banner)
apple     ``450 4.7.1 Error: too much mail from <ip>`` (MAIL FROM)
                                 ``421 4.7.0 Too many concurrent connections`` (banner)
generic   ``451 4.7.1`` "Sender rate limit exceeded" (RCPT TO)
                                 ``421 4.7.0 Error: too many connections`` (banner)
========= ====================== ======================================================

Replies starting with ``421`` close the connection. Multi-line replies are returned as
one string whose lines are joined by CRLF, ready to be written as they are.
"""

from __future__ import annotations

import time
from typing import Literal

from postline.sim.profiles import ThrottleStyle

__all__ = [
    "Stage",
    "banner_ident",
    "connection_reply",
    "connection_stage",
    "ehlo_greeting",
    "multiline",
    "queued_reply",
    "throttle_reply",
    "throttle_stage",
]

Stage = Literal["banner", "ehlo", "mail", "rcpt", "data"]

_THROTTLE_STAGE: dict[str, Stage] = {
    "google": "data",
    "microsoft": "rcpt",
    "yahoo": "mail",
    "apple": "mail",
    "generic": "rcpt",
}
_CONNECTION_STAGE: dict[str, Stage] = {
    "google": "ehlo",
    "microsoft": "banner",
    "yahoo": "banner",
    "apple": "banner",
    "generic": "banner",
}


def multiline(code: str, lines: list[str]) -> str:
    """Join ``lines`` into one reply: ``code-`` on every line but the last."""
    last = len(lines) - 1
    return "\r\n".join(f"{code}{' ' if i == last else '-'}{ln}" for i, ln in enumerate(lines))


def throttle_stage(style: ThrottleStyle) -> Stage:
    """The command at which ``style`` enforces its message rate: mail, rcpt or data."""
    return _THROTTLE_STAGE[style]


def connection_stage(style: ThrottleStyle) -> Stage:
    """Where ``style`` refuses a connection over its limit: banner or ehlo."""
    return _CONNECTION_STAGE[style]


def _tag(seed: int) -> str:
    """A Google-like transaction tag, e.g. ``a3f9c1e2b7d4``."""
    return f"{(seed * 2654435761) & 0xFFFFFFFFFFFF:012x}"


def throttle_reply(style: ThrottleStyle, ip: str, host: str, serial: int = 0) -> str:
    """The provider's "you send too fast" reply to a client at ``ip``."""
    if style == "google":
        return multiline(
            "421",
            [
                f"4.7.28 [{ip}      15] Our system has detected an unusual rate of",
                "4.7.28 unsolicited mail originating from your IP address. To protect our",
                "4.7.28 users from spam, mail sent from your IP address has been temporarily",
                "4.7.28 rate limited. For more information, go to",
                "4.7.28  https://support.google.com/mail/?p=UnsolicitedRateLimitError to",
                f"4.7.28 review our Bulk Email Senders Guidelines. {_tag(serial)} - gsmtp",
            ],
        )
    if style == "microsoft":
        return f"451 4.7.500 Server busy. Please try again later from [{ip}]. (S77714) [{host}]"
    if style == "yahoo":
        return (
            f"421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected "
            "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
        )
    if style == "apple":
        return f"450 4.7.1 Error: too much mail from {ip}"
    return f"451 4.7.1 <{ip}>: Sender rate limit exceeded, please try again later"


def connection_reply(style: ThrottleStyle, ip: str, host: str, serial: int = 0) -> str:
    """The provider's "too many connections" reply; every one of them closes the session."""
    if style == "google":
        return multiline(
            "421",
            [
                "4.7.0 Try again later, closing connection. (EHLO)",
                "4.7.0  For more information, go to",
                f"4.7.0  https://support.google.com/mail/answer/81126 {_tag(serial)} - gsmtp",
            ],
        )
    if style == "microsoft":
        return (
            "421 4.3.2 The maximum number of concurrent server connections has exceeded a "
            "limit, closing transmission channel"
        )
    if style == "yahoo":
        return (
            f"421 4.7.0 [TSS03] Messages from {ip} temporarily deferred due to too many "
            "concurrent connections - 4.16.56.1; see https://postmaster.yahooinc.com/error-codes"
        )
    if style == "apple":
        return f"421 4.7.0 Too many concurrent connections from {ip}, closing connection"
    return f"421 4.7.0 {host} Error: too many connections from {ip}"


def banner_ident(style: ThrottleStyle, serial: int = 0) -> str:
    """What follows the host name in the ``220`` banner."""
    if style == "google":
        return f"ESMTP {_tag(serial)} - gsmtp"
    if style == "microsoft":
        stamp = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        return f"Microsoft ESMTP MAIL Service ready at {stamp}"
    if style == "yahoo":
        return "ESMTP ready"
    if style == "apple":
        return "ESMTP CONNECT"
    return "ESMTP Postfix"


def ehlo_greeting(style: ThrottleStyle, host: str, ip: str) -> str:
    """The text of the first EHLO reply line (without ``250-``)."""
    if style == "google":
        return f"{host} at your service, [{ip}]"
    if style == "microsoft":
        return f"{host} Hello [{ip}]"
    if style == "yahoo":
        return f"{host} Hello {ip}"
    return host


def queued_reply(style: ThrottleStyle, host: str, queue_id: int, message_id: str | None) -> str:
    """The ``250`` reply to the end of DATA for an accepted message."""
    if style == "google":
        return f"250 2.0.0 OK  {int(time.time())} {_tag(queue_id)} - gsmtp"
    if style == "microsoft":
        mid = message_id or f"<{queue_id:x}@{host}>"
        return f"250 2.6.0 {mid} [InternalId={queue_id}, Hostname={host}] Queued mail for delivery"
    if style == "yahoo":
        return "250 ok dirdel"
    return f"250 2.0.0 Ok: queued as {queue_id:010X}"
