"""SMTP, the protocol alone: the outbound client, wire helpers, the server base and replies.

``postline.smtp.client`` speaks SMTP to other servers (pure protocol, no queue
knowledge); ``postline.smtp.wire`` holds the pure parsing and encoding helpers and the
client's exception tree; ``postline.smtp.replies`` names every reply line postline's
own servers send; ``postline.smtp.server`` is the aiosmtpd base those servers share
(enhanced codes, AUTH and its lockout, connection limits and session timeouts for
hostile clients). Nothing here knows tenants, ingest, the store or feedback: the servers
themselves are front doors (``postline.submission``, ``postline.inbound``). The server
base is not imported here, so the client does not load aiosmtpd.
"""

from postline.smtp import replies
from postline.smtp.client import (
    SMTPClient,
    Timeouts,
    TLSMode,
    TransactionResult,
    delivery_tls_context,
)
from postline.smtp.wire import (
    MAX_COMMAND_LINE,
    MAX_REPLY_LINE,
    MAX_TEXT_LINE,
    REPLY_LINE_LIMIT,
    REPLY_LINES_LIMIT,
    ReplyParser,
    SMTPClientError,
    SMTPConnectError,
    SMTPConnectionLost,
    SMTPConnectTimeout,
    SMTPProtocolError,
    SMTPTimeout,
    dot_stuff,
    is_8bit,
    is_safe_address,
    mail_command,
    needs_smtputf8,
    parse_ehlo,
    parse_reply_line,
    rcpt_command,
)

__all__ = [
    "MAX_COMMAND_LINE",
    "MAX_REPLY_LINE",
    "MAX_TEXT_LINE",
    "REPLY_LINES_LIMIT",
    "REPLY_LINE_LIMIT",
    "ReplyParser",
    "SMTPClient",
    "SMTPClientError",
    "SMTPConnectError",
    "SMTPConnectTimeout",
    "SMTPConnectionLost",
    "SMTPProtocolError",
    "SMTPTimeout",
    "TLSMode",
    "Timeouts",
    "TransactionResult",
    "delivery_tls_context",
    "dot_stuff",
    "is_8bit",
    "is_safe_address",
    "mail_command",
    "needs_smtputf8",
    "parse_ehlo",
    "parse_reply_line",
    "rcpt_command",
    "replies",
]
