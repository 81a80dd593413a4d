"""SMTP on the wire: reply parsing, dot-stuffing, EHLO parsing and command encoding.

Everything here is pure (no I/O) and fast enough for the delivery hot path: the
reply parser works on whole chunks of received bytes, and :func:`dot_stuff` uses
bytes operations only, never a Python loop over the lines of a message.

The exception tree of the outbound SMTP client lives here, at the bottom of the
``smtp`` package, because the reply parser already raises :class:`SMTPProtocolError`;
:mod:`postline.smtp.client` re-exports it::

    SMTPClientError            an outbound SMTP conversation failed (.reply, .command)
    ├── SMTPConnectError       no usable session: refused, banner not 220, EHLO and
    │   │                      HELO rejected, TLS required but unavailable
    │   └── SMTPConnectTimeout the TCP connect itself timed out (also an SMTPTimeout)
    ├── SMTPTimeout            no reply within the timeout of the phase it names
    ├── SMTPConnectionLost     the server closed the connection
    └── SMTPProtocolError      the server sent something that is not SMTP

Every error carries a :class:`~postline.model.Reply`: the server's own reply when
there was one, else a synthetic one (``synthetic=True``) with a 4xx code, so callers
can treat all failures as replies. ``after_data_dot`` is true when the failure came
after the final dot of a message was written: the message may have been delivered.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, MutableSequence

from postline.errors import PostlineError
from postline.model import Reply

__all__ = [
    "MAX_COMMAND_LINE",
    "MAX_REPLY_LINE",
    "MAX_TEXT_LINE",
    "REPLY_LINES_LIMIT",
    "REPLY_LINE_LIMIT",
    "ReplyParser",
    "SMTPClientError",
    "SMTPConnectError",
    "SMTPConnectTimeout",
    "SMTPConnectionLost",
    "SMTPProtocolError",
    "SMTPTimeout",
    "dot_stuff",
    "is_8bit",
    "is_safe_address",
    "mail_command",
    "needs_smtputf8",
    "parse_ehlo",
    "parse_reply_line",
    "rcpt_command",
]

MAX_COMMAND_LINE = 512
"""Longest command line a server must accept, CRLF included (RFC 5321 4.5.3.1.4)."""

MAX_REPLY_LINE = 512
"""Longest reply line RFC 5321 allows, CRLF included (4.5.3.1.5)."""

MAX_TEXT_LINE = 1000
"""Longest line of message text, CRLF included (RFC 5321 4.5.3.1.6)."""

REPLY_LINE_LIMIT = 8192
"""Longest reply line the parser accepts. Real servers exceed :data:`MAX_REPLY_LINE`,
so the parser is lenient up to this bound and calls anything longer garbage."""

REPLY_LINES_LIMIT = 256
"""Most lines one (multi-line) reply may have before the parser calls it garbage."""


class SMTPClientError(PostlineError):
    """An outbound SMTP conversation failed."""

    def __init__(
        self, reply: Reply, *, command: str | None = None, after_data_dot: bool = False
    ) -> None:
        self.reply = reply
        self.command = reply.command if command is None else command
        self.after_data_dot = after_data_dot
        prefix = f"{self.command}: " if self.command else ""
        super().__init__(f"{prefix}{reply}")


class SMTPConnectError(SMTPClientError):
    """No usable SMTP session could be established."""


class SMTPTimeout(SMTPClientError):
    """The server did not answer within the timeout of the phase."""


class SMTPConnectTimeout(SMTPConnectError, SMTPTimeout):
    """The TCP connection could not be established within the connect timeout."""


class SMTPConnectionLost(SMTPClientError):
    """The server closed the connection."""


class SMTPProtocolError(SMTPClientError):
    """The server sent something that is not valid SMTP."""


def _malformed(detail: str, command: str = "") -> SMTPProtocolError:
    reply = Reply(421, f"malformed reply from server: {detail}", "4.5.0", command, synthetic=True)
    return SMTPProtocolError(reply)


def _strip_eol(line: bytes) -> bytes:
    if line.endswith(b"\n"):
        line = line[:-1]
    if line.endswith(b"\r"):
        line = line[:-1]
    return line


class _BadLine(Exception):
    """A reply line is malformed; the argument says how."""


def _parse(line: bytes) -> tuple[int, bool, str]:
    line = _strip_eol(line)
    if len(line) < 3 or not line[:3].isdigit() or line[0] not in b"2345":
        raise _BadLine(f"no reply code in {bytes(line[:40])!r}")
    if len(line) == 3:
        return int(line), True, ""
    sep = line[3]
    if sep == 0x20:
        last = True
    elif sep == 0x2D:
        last = False
    else:
        raise _BadLine(f"bad separator after the code in {bytes(line[:40])!r}")
    return int(line[:3]), last, line[4:].decode("utf-8", "replace")


def parse_reply_line(line: bytes) -> tuple[int, bool, str]:
    """Parse one reply line into ``(code, is_last, text)``.

    The line may end in CRLF, LF or nothing. ``is_last`` is false for the
    ``250-...`` lines of a multi-line reply. Text that is not UTF-8 is decoded with
    replacement characters. Raises :class:`SMTPProtocolError` when the line does not
    start with a three-digit code from 200 to 599 followed by a space, a hyphen or
    the end of the line.

    >>> parse_reply_line(b"250-PIPELINING\\r\\n")
    (250, False, 'PIPELINING')
    """
    try:
        return _parse(line)
    except _BadLine as exc:
        raise _malformed(str(exc)) from None


class ReplyParser:
    """Turn a stream of received bytes into :class:`~postline.model.Reply` objects.

    Feed it whatever the socket delivered; it returns the replies completed by that
    chunk (possibly none, possibly several when commands were pipelined) and keeps
    partial lines for the next call. Call :meth:`expect` once per command sent, in
    order, and each reply is labelled with the command that drew it; a reply with no
    command waiting (an unsolicited one, such as a 421 before shutdown) gets ``""``.
    After it raised :class:`SMTPProtocolError` the parser must not be fed again.
    """

    __slots__ = ("_buf", "_code", "_line_limit", "_lines", "_lines_limit", "_pending")

    def __init__(
        self, *, line_limit: int = REPLY_LINE_LIMIT, lines_limit: int = REPLY_LINES_LIMIT
    ) -> None:
        self._buf = b""
        self._code = 0
        self._lines: list[str] = []
        self._pending: deque[str] = deque()
        self._line_limit = line_limit
        self._lines_limit = lines_limit

    def expect(self, command: str) -> None:
        """Record that a reply to ``command`` is due next after those already expected."""
        self._pending.append(command)

    @property
    def pending(self) -> int:
        """How many expected replies have not been completed yet."""
        return len(self._pending)

    @property
    def buffered(self) -> bool:
        """True when bytes of an incomplete reply are held."""
        return bool(self._buf or self._lines)

    def feed(self, data: bytes, out: MutableSequence[Reply] | None = None) -> list[Reply]:
        """Consume ``data`` and return the replies it completed, oldest first.

        With ``out``, completed replies are appended to it instead (and an empty list is
        returned): when a later line of the same chunk is malformed, the replies before
        it are already in ``out`` when :class:`SMTPProtocolError` is raised.
        """
        if self._buf:
            data = self._buf + data
        completed: list[Reply] = []
        if out is None:
            out = completed
        start = 0
        limit = self._line_limit
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if end - start > limit:
                raise _malformed(f"reply line longer than {limit} bytes", self._command())
            line = data[start:end]
            start = end + 1
            try:
                code, last, text = _parse(line)
            except _BadLine as exc:
                raise _malformed(str(exc), self._command()) from None
            if self._lines:
                if code != self._code:
                    raise _malformed(
                        f"code {code} in a multi-line reply that began with {self._code}",
                        self._command(),
                    )
                if len(self._lines) >= self._lines_limit:
                    raise _malformed(
                        f"reply longer than {self._lines_limit} lines", self._command()
                    )
            else:
                self._code = code
            self._lines.append(text)
            if last:
                command = self._pending.popleft() if self._pending else ""
                out.append(Reply.from_lines(code, self._lines, command))
                self._lines = []
        rest = data[start:]
        if len(rest) > limit:
            raise _malformed(f"reply line longer than {limit} bytes", self._command())
        self._buf = rest
        return completed

    def _command(self) -> str:
        return self._pending[0] if self._pending else ""


# --- message data -------------------------------------------------------------------

_LINE_END = re.compile(rb"\r\n|\r|\n")


def dot_stuff(data: bytes) -> bytes:
    """Return the DATA payload for a message, terminator included.

    Line endings are normalised to CRLF (a bare LF or a bare CR each becomes CRLF,
    so no receiver can read a line boundary the sender did not mean), every line
    that starts with ``.`` gets a second one (RFC 5321 4.5.2), the text is made to
    end with CRLF, and ``.\\r\\n`` follows.

    >>> dot_stuff(b"a\\r\\n.b")
    b'a\\r\\n..b\\r\\n.\\r\\n'
    """
    crlf = data.count(b"\r\n")
    if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
        data = _LINE_END.sub(b"\r\n", data)
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data or data.endswith(b"\r\n"):
        return data + b".\r\n"
    return data + b"\r\n.\r\n"


def is_8bit(data: bytes) -> bool:
    """True when ``data`` holds any byte above 127 (``BODY=8BITMIME`` is needed)."""
    return not data.isascii()


def needs_smtputf8(*addresses: str) -> bool:
    """True when any address has a non-ASCII character (``SMTPUTF8`` is needed)."""
    return not all(a.isascii() for a in addresses)


# --- EHLO ---------------------------------------------------------------------------

_EHLO_LINE = re.compile(r"([A-Za-z0-9][A-Za-z0-9-]*)(?:([ =])(.*))?")


def parse_ehlo(reply: Reply) -> dict[str, str]:
    """Return the extensions an EHLO reply advertises: upper-case keyword → parameters.

    The first line (the server's greeting) is skipped; lines that are not an
    extension keyword are ignored. The obsolete ``AUTH=LOGIN PLAIN`` form counts as
    ``AUTH`` unless a standard ``AUTH`` line is also present.

    >>> parse_ehlo(Reply(250, "mx.example\\nSIZE 1000\\npipelining"))
    {'SIZE': '1000', 'PIPELINING': ''}
    """
    extensions: dict[str, str] = {}
    for raw in reply.text.split("\n")[1:]:
        m = _EHLO_LINE.fullmatch(raw.strip())
        if m is None:
            continue
        keyword = m.group(1).upper()
        params = (m.group(3) or "").strip()
        if m.group(2) == "=":
            extensions.setdefault(keyword, params)
        else:
            extensions[keyword] = params
    return extensions


# --- commands -----------------------------------------------------------------------

_UNSAFE = re.compile(r"[\x00-\x1f\x7f]")


def is_safe_address(address: str) -> bool:
    """True when ``address`` can go into a command line: no control characters.

    A CR or LF in an address would end the command early and let the rest be read
    as a command of its own; no valid address holds a control character.
    """
    return _UNSAFE.search(address) is None


def _path_command(verb: bytes, address: str, params: Iterable[str]) -> bytes:
    if not is_safe_address(address):
        raise ValueError(f"address with control characters: {address!r}")
    line = verb + address.encode("utf-8") + b">"
    for p in params:
        if not is_safe_address(p):
            raise ValueError(f"parameter with control characters: {p!r}")
        line += b" " + p.encode("ascii")
    return line + b"\r\n"


def mail_command(sender: str, params: Iterable[str] = ()) -> bytes:
    """Encode ``MAIL FROM:<sender> params...`` with its CRLF.

    The null sender is ``""``. Raises :class:`ValueError` for an address or
    parameter with control characters.

    >>> mail_command("a@example.com", ["SIZE=10"])
    b'MAIL FROM:<a@example.com> SIZE=10\\r\\n'
    """
    return _path_command(b"MAIL FROM:<", sender, params)


def rcpt_command(recipient: str, params: Iterable[str] = ()) -> bytes:
    """Encode ``RCPT TO:<recipient> params...`` with its CRLF (see :func:`mail_command`)."""
    return _path_command(b"RCPT TO:<", recipient, params)
