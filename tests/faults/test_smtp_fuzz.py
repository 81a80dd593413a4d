"""A stateful fuzzer against a running node's SMTP submission and inbound servers.

A ``postline serve`` process (SQLite, delivery off) is driven over real TCP by a
hypothesis state machine: EHLO/HELO/MAIL/RCPT/DATA/RSET/NOOP/QUIT/VRFY, unknown verbs,
BDAT, several commands in one write, over-long lines, bare LF and bare CR, NUL and 8-bit
bytes in commands, STARTTLS twice or in the middle of a transaction. Submission
connections authenticate (STARTTLS, AUTH PLAIN with a tenant's API key) when the machine
chooses to. Invariants:

* every reply is a well-formed SMTP reply: three digits, a hyphen on every line of a
  multiline reply but the last, the same code on each, CRLF at the end;
* every command line gets its reply within the idle timeout (plus slack), or the server
  closes the connection after a reply that says so (221, 421, 502);
* the node keeps serving (a new connection is greeted after each run) and its log has no
  traceback;
* no state leaks between transactions: after RSET, a finished DATA or STARTTLS, RCPT
  without MAIL gets 503;
* a message answered 250 after DATA is stored as sent: inbound byte for byte; submission
  with the documented changes only (``fix_raw``: a Received and an X-Postline-ID header
  on top, CRLF line endings, Message-ID/Date/MIME-Version added when missing, and the
  empty line that ends the header section added when the message has none);
* SMTP smuggling: ``\\n.\\n``, ``\\r.\\n``, ``\\n.\\r\\n``, ``\\r\\n.\\n`` and the like
  inside DATA do not end the message — what follows them (a smuggled MAIL FROM) is stored
  as part of it, and the server answers the DATA exactly once.

``POSTLINE_FUZZ=long`` (``make faults``) runs many more and longer examples.
"""

from __future__ import annotations

import base64
import os
import re
import socket
import sqlite3
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from support.node import POSTLINE, NodeProcess, free_port

IDLE = 4.0  # [submission]/[inbound] timeout of the node under test
SLACK = 6.0
BOUNCE_DOMAIN = "bounce.fuzz.test"
FBL = b"fbl@" + BOUNCE_DOMAIN.encode()
POSTMASTER = b"postmaster@" + BOUNCE_DOMAIN.encode()
LONG = os.environ.get("POSTLINE_FUZZ") == "long"
SETTINGS = settings(
    max_examples=200 if LONG else 50,
    stateful_step_count=40 if LONG else 20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=not LONG,
    database=None,
)

_REPLY_LINE = re.compile(rb"^([2-5][0-5][0-9])([ -])([^\r\n]*)\r\n\Z")
_QUEUED = re.compile(rb"queued as ([A-Za-z0-9_-]+)")
_LINE_ENDINGS = re.compile(rb"\r\n|\r|\n")


class Node:
    def __init__(self, process: NodeProcess, db: Path, key: str, inbound: int) -> None:
        self.process = process
        self.db = db
        self.key = key
        self.submission = _address(process.ready["submission"])
        self.inbound = ("127.0.0.1", inbound)

    def stored(self, table: str, ident: str) -> bytes | None:
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10) as db:
            row = db.execute(f"SELECT body FROM {table} WHERE id = ?", (ident,)).fetchone()
        return None if row is None else bytes(row[0])

    def log(self) -> str:
        return self.process.log_path.read_text(errors="replace")


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("fuzz")
    limits = f'timeout = "{IDLE}s"\ncommand_time_limit = "120s"\ndata_timeout = "{IDLE * 2}s"\n'
    config = tmp / "node.toml"
    inbound = free_port()
    config.write_text(f"""
data_dir = "{tmp / "data"}"
node_id = "fuzz-node"
[node]
workers = 1
[api]
listen = "127.0.0.1:{free_port()}"
[submission]
listen = "127.0.0.1:{free_port()}"
max_message_size = "64KB"
{limits}
[inbound]
listen = "127.0.0.1:{inbound}"
max_message_size = "64KB"
{limits}
[bounce]
domain = "{BOUNCE_DOMAIN}"
secret = "fuzz-secret"
[delivery]
enabled = false
[log]
level = "warning"
""")
    out = subprocess.run(
        [POSTLINE, "tenant", "create", "acme", "--config", str(config)],
        capture_output=True,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("POSTLINE_")},
    )
    key = out.stdout.decode().strip().splitlines()[-1]
    process = NodeProcess(config, tmp / "node.log")
    process.start(30)
    try:
        yield Node(process, tmp / "data" / "postline.db", key, inbound)
    finally:
        process.kill()
    assert "Traceback" not in (tmp / "node.log").read_text(errors="replace")


class ConnectionClosed(Exception):
    pass


class Conn:
    """One client connection, reading and checking replies."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.sock: socket.socket = socket.create_connection(address, timeout=IDLE + SLACK)
        self.buf = b""
        self.closed = False
        self.tls = False

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError:
            self.closed = True

    def reply(self) -> tuple[int, list[bytes]]:
        """The next reply, checked line by line; raises ConnectionClosed at EOF."""
        lines: list[bytes] = []
        code: bytes | None = None
        while True:
            line = self._line()
            m = _REPLY_LINE.match(line)
            assert m is not None, f"malformed reply line {line!r} after {lines!r}"
            assert code is None or m.group(1) == code, f"code changed in {[*lines, line]!r}"
            code = m.group(1)
            lines.append(m.group(3))
            if m.group(2) == b" ":
                return int(code), lines

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            assert b"\n" not in self.buf, f"bare LF in a reply: {self.buf!r}"
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(
                    f"no reply within {IDLE + SLACK} s (idle timeout {IDLE} s)"
                ) from None
            except (ConnectionResetError, ssl.SSLError):
                chunk = b""
            if not chunk:
                self.close()
                assert not self.buf, f"connection closed inside a reply: {self.buf!r}"
                raise ConnectionClosed
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def command(self, line: bytes) -> tuple[int, list[bytes]]:
        self.send(line + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        assert not self.buf
        self.sock = ctx.wrap_socket(self.sock)
        self.tls = True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True


def _stuff(message: bytes) -> bytes:
    """Dot-stuffed as a correct client sends it (only lines that follow a CRLF)."""
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


def _normalised(message: bytes) -> tuple[bytes, bytes]:
    data = _LINE_ENDINGS.sub(b"\r\n", message)
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return data, b""
    return data[: end + 2], data[end + 4 :]


def _has(head: bytes, name: bytes) -> bool:
    return re.search(rb"(?im)^" + re.escape(name) + rb"[ \t]*:", head) is not None


def check_submitted(sent: bytes, stored: bytes, ident: str) -> None:
    """``stored`` is ``sent`` with fix_raw's documented changes only."""
    received, sep, rest = stored.partition(b"\r\n")
    assert sep and received.startswith(b"Received: from "), stored[:200]
    assert rest.startswith(f"X-Postline-ID: {ident}\r\n".encode()), rest[:200]
    rest = rest[len(f"X-Postline-ID: {ident}\r\n") :]
    head, body = _normalised(sent)
    assert rest.startswith(head), (sent[:300], stored[:300])
    added = rest[len(head) :]
    for name in (b"Message-ID", b"Date", b"MIME-Version"):
        if not _has(head, name):
            m = re.match(re.escape(name) + rb": [^\r\n]+\r\n", added)
            assert m is not None, (name, added[:200])
            added = added[m.end() :]
    assert added == b"\r\n" + body, (sent[-300:], stored[-300:])


# A command line's pieces: hostile bytes anywhere.
_WORDS = st.sampled_from(
    [b"EHLO", b"HELO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"NOOP", b"VRFY", b"EXPN",
     b"HELP", b"BDAT", b"XYZZY", b"ehlo", b"MaIl", b"STARTTLS", b"QUIT"]
)  # fmt: skip
_JUNK = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b""))
_ADDRESS_BITS = st.sampled_from(
    [b"FROM:<ann@acme.test>", b"TO:<bob@example.test>", b"FROM:<>", b"TO:<>",
     b"FROM:<\xc3\xa9l\xc3\xa8ve@acme.test>", b"TO:<\xff\xfe@example.test>",
     b"FROM:<a@b> SIZE=99999999999", b"FROM:<ann@acme.test> BODY=8BITMIME SMTPUTF8",
     b"TO:<fbl@" + BOUNCE_DOMAIN.encode() + b">", b"FROM:ann@acme.test", b"TO:<@x,@y:a@b>",
     b"FROM:<ann@acme.test> AUTH=<>", b"TO:<a\x00b@example.test>", b"FROM:<" + b"a" * 300 + b"@x>"]
)  # fmt: skip
_LINES = st.one_of(
    st.builds(lambda w, a: w + b" " + a, _WORDS, _ADDRESS_BITS),
    st.builds(lambda w, j: w + b" " + j, _WORDS, _JUNK),
    _WORDS,
    _JUNK,
    st.sampled_from([b"", b" ", b"NOOP\x00", b"\x00\x00", b"N\xc3\x96OP", b"\x16\x03\x01"]),
)
_ENDINGS = st.sampled_from([b"\r\n", b"\n", b"\r\r\n", b"\x00\r\n"])

# Message pieces, smuggling attempts among them.
_SMUGGLE = st.sampled_from(
    [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r\n.\n", b"\r\n.\r", b"\r.\r\n", b"\n..\n",
     b"\r\n.\r\n".replace(b"\r\n.", b"\r\n.."), b"\n.\nMAIL FROM:<smuggled@evil.test>\n",
     b"\r\n.\nRCPT TO:<smuggled@evil.test>\r\n", b".\r\n"]
)  # fmt: skip
_BODY_BITS = st.one_of(
    _SMUGGLE,
    st.binary(max_size=60),
    st.sampled_from([b"\r\n", b"\n", b"\r", b".", b"..", b"\x00", b"\xe9t\xe9", b"x" * 1200]),
)
_HEADERS = st.lists(
    st.sampled_from(
        [b"To: bob@example.test", b"Subject: fuzz", b"Message-ID: <fuzz@acme.test>",
         b"Date: Mon, 7 Dec 2026 10:00:00 +0000", b"MIME-Version: 1.0",
         b"Subject: =?utf-8?q?caf=C3=A9?=", b"X-Long: " + b"y" * 990, b"Subject: \xe2\x9c\x93",
         b"Received: from x by y; Mon, 7 Dec 2026 10:00:00 +0000", b"Comments: a\r\n b"]
    ),
    max_size=5,
)  # fmt: skip
_EOL = st.sampled_from([b"\r\n", b"\n", b"\r"])


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    eol = draw(_EOL)
    head = [b"From: ann@acme.test", *draw(_HEADERS)]
    text = eol.join(head) + eol
    if draw(st.booleans()):
        text += eol + b"".join(draw(st.lists(_BODY_BITS, max_size=8)))
    if not text.endswith((b"\r\n",)):
        text += b"\r\n"
    return text


class SmtpMachine(RuleBasedStateMachine):
    """One client connection at a time to one of the node's SMTP servers."""

    def __init__(self, node: Node, server: str) -> None:
        super().__init__()
        self.node = node
        self.server = server
        self.conn: Conn | None = None
        self.authenticated = False
        self.has_mail = False
        self.has_rcpt = False
        self.extensions: list[bytes] = []
        self.log_from = len(node.log())

    # Connections

    def _open(self, authenticate: bool) -> Conn:
        if self.conn is not None:
            self.conn.close()
        address = self.node.submission if self.server == "submission" else self.node.inbound
        conn = Conn(address)
        code, _ = conn.reply()
        assert code == 220
        self.conn = conn
        self.authenticated = self.has_mail = self.has_rcpt = False
        self._ehlo(b"fuzz.test")
        if authenticate and self.server == "submission":
            self._tls()
            blob = base64.b64encode(b"\x00acme\x00" + self.node.key.encode())
            code, _ = conn.command(b"AUTH PLAIN " + blob)
            assert code == 235
            self.authenticated = True
        return conn

    def _ehlo(self, name: bytes) -> None:
        assert self.conn is not None
        code, lines = self.conn.command(b"EHLO " + name)
        assert code == 250
        self.extensions = [line.split(b" ")[0].upper() for line in lines[1:]]
        # BDAT is tested only as an unknown verb: CHUNKING is not advertised.
        assert b"CHUNKING" not in self.extensions
        self.has_mail = self.has_rcpt = False

    def _tls(self) -> None:
        assert self.conn is not None
        code, _ = self.conn.command(b"STARTTLS")
        assert code == 220
        self.conn.starttls()
        self._ehlo(b"fuzz.test")

    def _live(self) -> Conn:
        if self.conn is None or self.conn.closed:
            return self._open(authenticate=True)
        return self.conn

    def _lines(self, lines: list[bytes]) -> list[tuple[int, list[bytes]]]:
        """Send ``lines`` in one write; one reply per line, unless the server closed the
        connection after saying so."""
        conn = self._live()
        conn.send(b"".join(lines))
        replies: list[tuple[int, list[bytes]]] = []
        for _ in lines:
            try:
                code, text = conn.reply()
            except ConnectionClosed:
                raise AssertionError(f"closed without a reply that says so: {replies}") from None
            replies.append((code, text))
            if code in (221, 421) or (code == 502 and b"goodbye" in text[-1]):
                # The server closes the connection now.
                with pytest.raises(ConnectionClosed):
                    conn.reply()
                conn.close()
                break
        return replies

    @initialize(authenticate=st.booleans())
    def connect(self, authenticate: bool) -> None:
        self._open(authenticate)

    def teardown(self) -> None:
        if self.conn is not None:
            self.conn.close()
        # The node keeps serving.
        conn = Conn(self.node.submission if self.server == "submission" else self.node.inbound)
        assert conn.reply()[0] == 220
        assert conn.command(b"QUIT")[0] == 221
        conn.close()
        assert "Traceback" not in self.node.log()[self.log_from :]

    # Well-formed commands

    @rule(
        name=st.sampled_from([b"EHLO", b"HELO"]),
        host=st.sampled_from([b"a.test", b"[127.0.0.1]", b"\xc3\xa9.test", b"x" * 300]),
    )
    def hello(self, name: bytes, host: bytes) -> None:
        (reply,) = self._lines([name + b" " + host + b"\r\n"])
        if reply[0] == 250:
            self.has_mail = self.has_rcpt = False

    @rule(sender=st.sampled_from([b"<ann@acme.test>", b"<>", b"<bad", b"<x@\xff.test>"]))
    def mail(self, sender: bytes) -> None:
        (reply,) = self._lines([b"MAIL FROM:" + sender + b"\r\n"])
        if self.has_mail:
            assert reply[0] == 503
        elif reply[0] == 250:
            self.has_mail = True

    @rule(rcpt=st.sampled_from([b"bob@example.test", FBL, b"x"]))
    def rcpt(self, rcpt: bytes) -> None:
        (reply,) = self._lines([b"RCPT TO:<" + rcpt + b">\r\n"])
        if not self.has_mail:
            assert reply[0] == 503, reply
        elif reply[0] == 250:
            self.has_rcpt = True

    @rule()
    def rset_then_rcpt(self) -> None:
        replies = self._lines([b"RSET\r\n", b"RCPT TO:<bob@example.test>\r\n"])
        assert [r[0] for r in replies] == [250, 503], replies
        self.has_mail = self.has_rcpt = False

    @rule(verb=st.sampled_from([b"NOOP", b"VRFY bob@example.test", b"VRFY", b"HELP", b"EXPN x"]))
    def harmless(self, verb: bytes) -> None:
        (reply,) = self._lines([verb + b"\r\n"])
        assert reply[0] < 500 or verb.startswith((b"VRFY", b"EXPN", b"HELP")), reply

    @rule()
    def quit(self) -> None:
        (reply,) = self._lines([b"QUIT\r\n"])
        assert reply[0] == 221
        assert self.conn is not None and self.conn.closed

    @rule(count=st.integers(1, 3))
    def unknown_or_bdat(self, count: int) -> None:
        replies = self._lines([b"BDAT 10 LAST\r\n", b"XYZZY\r\n", b"FOO bar\r\n"][:count])
        assert all(code >= 500 for code, _ in replies), replies

    # Broken and hostile input

    @rule(lines=st.lists(st.tuples(_LINES, _ENDINGS), min_size=1, max_size=8))
    def pipelined_garbage(self, lines: list[tuple[bytes, bytes]]) -> None:
        """Several lines in one write; a line (what the server reads up to a LF) gets one
        reply. DATA, AUTH and STARTTLS are left out: they change what follows."""
        out = []
        for line, end in lines:
            if re.match(rb"(?i)\s*(data|auth|starttls|bdat)\b", line + end):
                line = b"NOOP " + line
            out.append(line + end)
        self._lines(out)
        self.has_mail = self.has_rcpt = False  # unknown: reset before the next check
        self._lines([b"RSET\r\n"])

    @rule(size=st.integers(1001, 5000), verb=st.sampled_from([b"NOOP ", b"MAIL FROM:<", b""]))
    def over_long_line(self, size: int, verb: bytes) -> None:
        (reply,) = self._lines([verb + b"a" * size + b"\r\n"])
        assert reply[0] == 500, reply

    @rule()
    def starttls_again_or_midway(self) -> None:
        conn = self._live()
        if conn.tls:
            (reply,) = self._lines([b"STARTTLS\r\n"])
            assert reply[0] == 503
            return
        self._lines([b"RSET\r\n", b"MAIL FROM:<ann@acme.test>\r\n"])
        self._tls()
        # STARTTLS forgets the transaction (RFC 3207 §4.2).
        (reply,) = self._lines([b"RCPT TO:<bob@example.test>\r\n"])
        assert reply[0] in (503, 530), reply

    # Mail

    @rule(message=messages(), pipelined=st.booleans())
    def send_message(self, message: bytes, pipelined: bool) -> None:
        conn = self._live()
        rcpt = b"bob@example.test" if self.server == "submission" else FBL
        envelope = [b"RSET\r\n", b"MAIL FROM:<ann@acme.test>\r\n", b"RCPT TO:<" + rcpt + b">\r\n"]
        if pipelined:
            conn.send(b"".join([*envelope, b"DATA\r\n"]))
            codes = [conn.reply()[0] for _ in range(4)]
        else:
            codes = [conn.command(line[:-2])[0] for line in [*envelope, b"DATA\r\n"]]
        if codes[:3] != [250, 250, 250]:
            assert codes[3] == 503, codes  # no valid RCPT: no DATA
            assert not self.authenticated or self.server != "submission", codes
            return
        assert codes[3] == 354, codes
        conn.send(_stuff(message))
        code, lines = conn.reply()
        # Exactly one reply to the message: nothing in it ended the data early.
        after = conn.command(b"NOOP")
        assert after[0] == 250, (code, lines, after)
        assert not conn.buf
        (reply,) = self._lines([b"RCPT TO:<bob@example.test>\r\n"])
        assert reply[0] == 503, reply
        self.has_mail = self.has_rcpt = False
        if code != 250:
            assert code in (451, 452, 552, 554), (code, lines)
            return
        m = _QUEUED.search(lines[-1])
        assert m is not None, lines
        ident = m.group(1).decode()
        table = "messages" if self.server == "submission" else "inbound"
        stored = self.node.stored(table, ident)
        assert stored is not None, ident
        if self.server == "inbound":
            assert stored == message
        else:
            check_submitted(message, stored, ident)

    @invariant()
    def connection_usable_or_closed(self) -> None:
        assert self.conn is None or self.conn.closed or not self.conn.buf


def test_submission_fuzz(node: Node) -> None:
    run_state_machine_as_test(lambda: SmtpMachine(node, "submission"), settings=SETTINGS)


def test_inbound_fuzz(node: Node) -> None:
    run_state_machine_as_test(lambda: SmtpMachine(node, "inbound"), settings=SETTINGS)


@pytest.mark.parametrize("server", ["submission", "inbound"])
@pytest.mark.parametrize(
    "ending",
    [b"\n.\n", b"\r.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r"],
    ids=["LF.LF", "CR.LF", "LF.CRLF", "CRLF.LF", "CR.CRLF", "CRLF.CR"],
)
def test_smuggled_end_of_data_does_not_end_the_message(
    node: Node, server: str, ending: bytes
) -> None:
    machine = SmtpMachine(node, server)
    conn = machine._open(authenticate=True)
    try:
        _smuggle(node, conn, server, ending)
    finally:
        conn.close()


def _smuggle(node: Node, conn: Conn, server: str, ending: bytes) -> None:
    smuggled = b"MAIL FROM:<smuggled@evil.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
    message = b"From: ann@acme.test\r\nSubject: s\r\n\r\nhello" + ending + smuggled + b"bye\r\n"
    rcpt = b"bob@example.test" if server == "submission" else POSTMASTER
    assert conn.command(b"MAIL FROM:<ann@acme.test>")[0] == 250
    assert conn.command(b"RCPT TO:<" + rcpt + b">")[0] == 250
    assert conn.command(b"DATA")[0] == 354
    conn.send(_stuff(message))
    code, lines = conn.reply()
    assert code == 250, lines
    assert conn.command(b"NOOP")[0] == 250  # nothing else was answered in between
    assert not conn.buf
    ident = _QUEUED.search(lines[-1])
    assert ident is not None
    table = "messages" if server == "submission" else "inbound"
    stored = node.stored(table, ident.group(1).decode())
    assert stored is not None and b"MAIL FROM:<smuggled@evil.test>" in stored
    if server == "inbound":
        assert stored == message
    else:
        check_submitted(message, stored, ident.group(1).decode())


@pytest.mark.parametrize("server", ["submission", "inbound"])
@pytest.mark.parametrize(
    "command",
    [b"MAIL FROM:<", b"MAIL FROM:<a@", b"MAIL FROM:<@x,@y:", b"MAIL FROM: <a@"],
)
def test_a_truncated_address_is_a_syntax_error(node: Node, server: str, command: bytes) -> None:
    """The standard library's parser raises IndexError on these; the client gets a
    syntax error (aiosmtpd's 553 5.1.3 for a malformed address)."""
    machine = SmtpMachine(node, server)
    conn = machine._open(authenticate=True)
    try:
        code, lines = conn.command(command)
        assert code in (501, 553), lines
        assert conn.command(b"RCPT TO:<bob@example.test>")[0] == 503
    finally:
        conn.close()
    assert "Traceback" not in node.log()[machine.log_from :]


@pytest.mark.parametrize("server", ["submission", "inbound"])
@pytest.mark.parametrize(
    "command", [b"VRFY caf\xe9@example.test", b"VRFY \xff\xfe", b"MAIL FROM:<\xe9@acme.test>"]
)
def test_bytes_that_are_not_utf8_are_answered(node: Node, server: str, command: bytes) -> None:
    """A reply that echoes the argument gets "?" for the bytes that are not UTF-8, rather
    than an encoding error in the server."""
    machine = SmtpMachine(node, server)
    conn = machine._open(authenticate=True)
    try:
        code, lines = conn.command(command)
        if code == 250:  # the inbound server takes reports from any sender
            assert server == "inbound" and command.startswith(b"MAIL"), lines
            assert conn.command(b"RCPT TO:<" + POSTMASTER + b">")[0] == 250
            assert conn.command(b"DATA")[0] == 354
            conn.send(_stuff(b"Subject: report\r\n\r\nhello\r\n"))
            code, lines = conn.reply()
            assert code == 250, lines
        else:
            assert code in (252, 501, 502, 550, 553), lines
        assert conn.command(b"NOOP")[0] == 250
    finally:
        conn.close()
    assert "Traceback" not in node.log()[machine.log_from :]
