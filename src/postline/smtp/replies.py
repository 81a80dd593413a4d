"""The replies postline's own SMTP servers send, by name.

Each constant is one complete reply line without its CRLF: code, enhanced status
code (RFC 3463; intermediate 3xx replies have none) and text. The name repeats the
code, so a handler reads ``return S550_RELAY_DENIED`` and a test can check that
every name agrees with its text. Servers send these strings; they never write reply
literals of their own.
"""

from __future__ import annotations

from postline.model import Reply

__all__ = [
    "S221_BYE",
    "S235_AUTH_OK",
    "S250_OK",
    "S250_QUEUED",
    "S250_RECIPIENT_OK",
    "S250_RESET",
    "S250_SENDER_OK",
    "S252_CANNOT_VRFY",
    "S334_EMPTY_CHALLENGE",
    "S354_START",
    "S421_SHUTTING_DOWN",
    "S421_TIMEOUT",
    "S421_TOO_MANY_CONNECTIONS",
    "S451_LOCAL_ERROR",
    "S451_RATE_LIMITED",
    "S452_QUOTA_EXCEEDED",
    "S452_RATE_LIMITED",
    "S452_STORAGE",
    "S452_TOO_MANY_RECIPIENTS",
    "S454_TLS_UNAVAILABLE",
    "S500_LINE_TOO_LONG",
    "S500_UNRECOGNIZED",
    "S501_SYNTAX",
    "S502_NOT_IMPLEMENTED",
    "S503_ALREADY_AUTHENTICATED",
    "S503_BAD_SEQUENCE",
    "S503_NEED_MAIL",
    "S503_NEED_RCPT",
    "S504_AUTH_MECHANISM",
    "S530_AUTH_REQUIRED",
    "S530_STARTTLS_FIRST",
    "S534_AUTH_TOO_WEAK",
    "S535_AUTH_FAILED",
    "S538_ENCRYPTION_REQUIRED",
    "S550_NO_SUCH_USER",
    "S550_RECIPIENT_SUPPRESSED",
    "S550_RELAY_DENIED",
    "S550_SENDER_DENIED",
    "S552_TOO_BIG",
    "S553_BAD_ADDRESS",
    "S553_BAD_SENDER",
    "S553_SMTPUTF8_REQUIRED",
    "S554_QUOTA_EXCEEDED",
    "S554_TRANSACTION_FAILED",
    "S555_PARAMS_NOT_RECOGNIZED",
    "as_reply",
]

# 2xx: success
S221_BYE = "221 2.0.0 Bye"
S235_AUTH_OK = "235 2.7.0 Authentication successful"
S250_OK = "250 2.0.0 OK"
S250_SENDER_OK = "250 2.1.0 Sender OK"
S250_RECIPIENT_OK = "250 2.1.5 Recipient OK"
S250_QUEUED = "250 2.0.0 Message accepted for delivery"
S250_RESET = "250 2.0.0 Reset state"
S252_CANNOT_VRFY = "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"

# 3xx: go on (no enhanced code, RFC 2034 section 4)
S334_EMPTY_CHALLENGE = "334 "
S354_START = "354 End data with <CR><LF>.<CR><LF>"

# 4xx: try again later
S421_SHUTTING_DOWN = "421 4.3.2 Service shutting down, closing transmission channel"
S421_TIMEOUT = "421 4.4.2 Timeout, closing transmission channel"
S421_TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
S451_LOCAL_ERROR = "451 4.3.0 Requested action aborted: local error in processing"
S451_RATE_LIMITED = "451 4.7.1 Sending rate limit exceeded, try again later"
S452_STORAGE = "452 4.3.1 Insufficient system storage"
S452_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
S452_RATE_LIMITED = "452 4.7.1 Rate limit reached"
S452_QUOTA_EXCEEDED = "452 4.7.1 Daily quota reached"
S454_TLS_UNAVAILABLE = "454 4.7.0 TLS not available due to temporary reason"

# 5xx: do not retry as is
S500_UNRECOGNIZED = "500 5.5.1 Command not recognized"
S500_LINE_TOO_LONG = "500 5.5.2 Line too long"
S501_SYNTAX = "501 5.5.4 Syntax error in parameters or arguments"
S502_NOT_IMPLEMENTED = "502 5.5.1 Command not implemented"
S503_BAD_SEQUENCE = "503 5.5.1 Bad sequence of commands"
S503_NEED_MAIL = "503 5.5.1 Need MAIL command first"
S503_NEED_RCPT = "503 5.5.1 Need RCPT command first"
S503_ALREADY_AUTHENTICATED = "503 5.5.1 Already authenticated"
S504_AUTH_MECHANISM = "504 5.5.4 Unrecognized authentication mechanism"
S530_AUTH_REQUIRED = "530 5.7.0 Authentication required"
S530_STARTTLS_FIRST = "530 5.7.0 Must issue a STARTTLS command first"
S534_AUTH_TOO_WEAK = "534 5.7.9 Authentication mechanism is too weak"
S535_AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"
S538_ENCRYPTION_REQUIRED = "538 5.7.11 Encryption required for requested authentication mechanism"
S550_NO_SUCH_USER = "550 5.1.1 No such user"
S550_RELAY_DENIED = "550 5.7.1 Relaying denied"
S550_SENDER_DENIED = "550 5.7.1 Sender address not allowed for this account"
S550_RECIPIENT_SUPPRESSED = "550 5.7.1 Recipient is on the suppression list"
S552_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
S553_BAD_ADDRESS = "553 5.1.3 Bad recipient address syntax"
S553_BAD_SENDER = "553 5.1.7 Bad sender address syntax"
S553_SMTPUTF8_REQUIRED = "553 5.6.7 Non-ASCII addresses require SMTPUTF8"
S554_TRANSACTION_FAILED = "554 5.0.0 Transaction failed"
S554_QUOTA_EXCEEDED = "554 5.7.0 Monthly quota reached"
S555_PARAMS_NOT_RECOGNIZED = "555 5.5.4 MAIL FROM/RCPT TO parameters not recognized"


def as_reply(line: str, command: str = "") -> Reply:
    """Turn one named reply line into a :class:`~postline.model.Reply`.

    >>> as_reply(S550_RELAY_DENIED, "RCPT TO").enhanced
    '5.7.1'
    """
    code, _, text = line.partition(" ")
    return Reply.from_lines(int(code), [text], command)
