"""SMTPClient against a small scripted SMTP server for the odd cases.

The server below speaks just enough SMTP; a test changes what it says to any command
(``script``), when it goes silent or hangs up, and reads back every chunk of bytes it
received, so pipelining can be checked on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from postline.smtp.client import (
    SMTPClient,
    SMTPConnectError,
    SMTPConnectionLost,
    SMTPProtocolError,
    SMTPTimeout,
    Timeouts,
)

FAST = Timeouts(
    connect=2.0,
    banner=0.3,
    ehlo=0.5,
    starttls=1.0,
    mail_from=0.3,
    rcpt_to=0.3,
    data=0.3,
    data_dot=0.3,
    rset=0.3,
    quit=0.3,
)
SILENT = b""
"""A script entry that makes the server say nothing."""


@dataclass
class MiniSMTP:
    """A scripted SMTP server. ``script`` maps a verb (or ``DATA END``) to raw reply bytes."""

    banner: bytes = b"220 mx.test ESMTP\r\n"
    ehlo: tuple[str, ...] = ("mx.test", "PIPELINING", "SIZE 100000", "8BITMIME")
    script: dict[str, bytes] = field(default_factory=dict)
    drop_after: set[str] = field(default_factory=set)
    hang_at: str | None = None
    unknown: frozenset[str] = frozenset({"unknown@example.test"})
    chunks: list[bytes] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    connections: int = 0
    hung: bool = False

    def _reply(self, verb: str, default: bytes) -> bytes:
        return self.script.get(verb, default)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.banner:
            writer.write(self.banner)
        buf = b""
        data: bytes | None = None
        accepted = 0
        mail_ok = False
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            self.chunks.append(chunk)
            buf += chunk
            while (i := buf.find(b"\n")) >= 0:
                line, buf = buf[: i + 1], buf[i + 1 :]
                if data is not None:
                    if line != b".\r\n":
                        data += line
                        if "DATA LINE" in self.drop_after:
                            return
                        continue
                    self.messages.append(data)
                    data, verb, out = None, "DATA END", b"250 2.0.0 queued as 1\r\n"
                    mail_ok, accepted = False, 0
                else:
                    command = line.decode("utf-8", "replace").rstrip("\r\n")
                    self.commands.append(command)
                    verb = command.split(" ", 1)[0].split(":", 1)[0].upper()
                    if verb == "EHLO":
                        lines = self.ehlo
                        out = b"".join(
                            f"250{' ' if n == len(lines) - 1 else '-'}{t}\r\n".encode()
                            for n, t in enumerate(lines)
                        )
                    elif verb == "RCPT":
                        address = command.partition("<")[2].rstrip(">")
                        if not mail_ok:
                            out = b"503 5.5.1 need MAIL\r\n"
                        elif address in self.unknown:
                            out = b"550 5.1.1 no such user\r\n"
                        else:
                            accepted += 1
                            out = b"250 2.1.5 ok\r\n"
                    elif verb == "DATA":
                        out = b"354 go ahead\r\n" if accepted else b"554 5.5.1 no recipients\r\n"
                    elif verb in {"RSET", "MAIL"}:
                        accepted = 0
                        mail_ok = verb == "MAIL"
                        out = b"250 2.0.0 ok\r\n"
                    elif verb == "QUIT":
                        out = b"221 2.0.0 bye\r\n"
                    else:
                        out = b"250 mx.test\r\n"
                out = self._reply(verb, out)
                if verb == self.hang_at:
                    self.hung = True
                if self.hung:
                    out = b""
                if verb == "DATA" and out.startswith(b"354"):
                    data = b""
                if verb == "MAIL" and not out.startswith(b"2"):
                    mail_ok = False
                if out:
                    writer.write(out)
                if verb in self.drop_after or verb == "QUIT":
                    await writer.drain()
                    return
            await writer.drain()


@contextlib.asynccontextmanager
async def serve(server: MiniSMTP) -> AsyncIterator[int]:
    tasks: set[asyncio.Task[object]] = set()
    writers: set[asyncio.StreamWriter] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        writers.add(writer)
        try:
            await server.handle(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    listener = await asyncio.start_server(run, "127.0.0.1", 0)
    try:
        yield listener.sockets[0].getsockname()[1]
    finally:
        listener.close()
        for writer in writers:
            writer.transport.abort()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.wait_closed()


async def connect(port: int, **kwargs: object) -> SMTPClient:
    return await SMTPClient.connect(
        "127.0.0.1",
        port,
        ehlo_hostname="client.test",
        timeouts=kwargs.pop("timeouts", FAST),  # type: ignore[arg-type]
        **kwargs,  # type: ignore[arg-type]
    )


MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


# --- pipelining on the wire -----------------------------------------------------------


async def test_pipelining_sends_envelope_in_one_write() -> None:
    server = MiniSMTP()
    async with serve(server) as port:
        client = await connect(port)
        result = await client.send(
            "s@example.test", ["a@example.test", "unknown@example.test", "b@example.test"], MESSAGE
        )
        await client.quit()
    assert [r.code for r in result.rcpts] == [250, 550, 250]
    assert [r.code for r in result.outcomes()] == [250, 550, 250]
    group = next(c for c in server.chunks if c.startswith(b"MAIL FROM"))
    assert group.count(b"RCPT TO:") == 3
    assert group.endswith(b"DATA\r\n")
    assert server.messages == [MESSAGE]


async def test_without_pipelining_commands_go_one_by_one() -> None:
    server = MiniSMTP(ehlo=("mx.test", "SIZE 100000"))
    async with serve(server) as port:
        client = await connect(port)
        result = await client.send(
            "s@example.test", ["a@example.test", "unknown@example.test"], MESSAGE
        )
        await client.quit()
    assert [r.code for r in result.outcomes()] == [250, 550]
    for chunk in server.chunks:
        assert chunk.count(b"\r\n") == 1 or not chunk.startswith((b"MAIL", b"RCPT", b"DATA"))
    assert server.messages == [MESSAGE]


async def test_all_recipients_rejected_pipelined_then_rset_and_reuse() -> None:
    server = MiniSMTP()
    async with serve(server) as port:
        client = await connect(port)
        result = await client.send("s@example.test", ["unknown@example.test"], MESSAGE)
        assert result.data is None
        assert result.outcome(0).code == 550
        assert client.usable
        second = await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.quit()
    assert second.outcome(0).code == 250
    verbs = [c.split(" ")[0] for c in server.commands]
    assert verbs == ["EHLO", "MAIL", "RCPT", "DATA", "RSET", "MAIL", "RCPT", "DATA", "QUIT"]


async def test_mail_rejected_pipelined() -> None:
    server = MiniSMTP(script={"MAIL": b"550 5.7.1 sender blocked\r\n"})
    async with serve(server) as port:
        client = await connect(port)
        result = await client.send("s@example.test", ["a@example.test", "b@example.test"], MESSAGE)
        assert client.usable
        await client.quit()
    assert result.mail.code == 550
    assert result.data is None
    assert all(r is result.mail for r in result.outcomes())
    assert all(r is result.mail for r in result.rcpts)
    assert server.messages == []


async def test_data_354_without_accepted_recipient_drops_connection() -> None:
    server = MiniSMTP(script={"DATA": b"354 go ahead anyway\r\n"})
    async with serve(server) as port:
        client = await connect(port)
        result = await client.send("s@example.test", ["unknown@example.test"], MESSAGE)
        assert not client.usable
        await client.quit()
    assert result.outcome(0).code == 550
    assert server.messages == []


# --- 421 and unsolicited replies ------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
async def test_421_on_rcpt_ends_the_connection(pipelining: bool) -> None:
    ehlo = ("mx.test", "PIPELINING") if pipelining else ("mx.test",)
    server = MiniSMTP(
        ehlo=ehlo, script={"RCPT": b"421 4.7.0 too many messages\r\n"}, drop_after={"RCPT"}
    )
    async with serve(server) as port:
        client = await connect(port)
        result = await client.send("s@example.test", ["a@example.test", "b@example.test"], MESSAGE)
        assert not client.usable
        await client.quit()
    assert [r.code for r in result.outcomes()] == [421, 421]
    assert result.outcome(0).enhanced == "4.7.0"
    assert not result.outcome(0).synthetic


@pytest.mark.parametrize("pipelining", [True, False])
async def test_421_on_mail_ends_the_connection(pipelining: bool) -> None:
    ehlo = ("mx.test", "PIPELINING") if pipelining else ("mx.test",)
    server = MiniSMTP(
        ehlo=ehlo, script={"MAIL": b"421 4.7.0 try again later\r\n"}, drop_after={"MAIL"}
    )
    async with serve(server) as port:
        client = await connect(port)
        result = await client.send("s@example.test", ["a@example.test", "b@example.test"], MESSAGE)
        assert not client.usable
        await client.quit()
    assert result.data is None
    assert [(r.code, r.command) for r in result.outcomes()] == [(421, "MAIL FROM")] * 2


async def test_unsolicited_421_makes_connection_unusable() -> None:
    server = MiniSMTP(script={"DATA END": b"250 2.0.0 ok\r\n421 4.4.2 idle timeout\r\n"})
    async with serve(server) as port:
        client = await connect(port)
        first = await client.send("s@example.test", ["a@example.test"], MESSAGE)
        assert first.outcome(0).code == 250
        for _ in range(50):
            if not client.usable:
                break
            await asyncio.sleep(0.01)
        assert not client.usable
        with pytest.raises(SMTPConnectionLost) as info:
            await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.quit()
    assert info.value.reply.code == 421
    assert info.value.command == "MAIL FROM"


# --- connecting -----------------------------------------------------------------------


async def test_helo_fallback_when_ehlo_refused() -> None:
    server = MiniSMTP(script={"EHLO": b"500 5.5.1 what is EHLO\r\n"})
    async with serve(server) as port:
        client = await connect(port)
        assert client.extensions == {}
        result = await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.quit()
    assert result.outcome(0).code == 250
    assert server.commands[:2] == ["EHLO client.test", "HELO client.test"]
    assert server.commands[2] == "MAIL FROM:<s@example.test>"  # no ESMTP parameters


async def test_ehlo_and_helo_refused() -> None:
    server = MiniSMTP(script={"EHLO": b"500 5.5.1 no\r\n", "HELO": b"550 5.7.1 go away\r\n"})
    async with serve(server) as port:
        with pytest.raises(SMTPConnectError) as info:
            await connect(port)
    assert info.value.reply.code == 550
    assert info.value.command == "HELO"


async def test_ehlo_temporary_failure_is_a_connect_error() -> None:
    server = MiniSMTP(script={"EHLO": b"421 4.3.2 shutting down\r\n"})
    async with serve(server) as port:
        with pytest.raises(SMTPConnectError) as info:
            await connect(port)
    assert info.value.reply.code == 421
    assert info.value.command == "EHLO"
    assert not info.value.reply.synthetic


async def test_banner_554_is_a_connect_error_with_the_reply() -> None:
    server = MiniSMTP(banner=b"554-5.7.1 mx.test no SMTP service here\r\n554 5.7.1 bye\r\n")
    async with serve(server) as port:
        with pytest.raises(SMTPConnectError) as info:
            await connect(port)
    reply = info.value.reply
    assert (reply.code, reply.enhanced, reply.command) == (554, "5.7.1", "CONNECT")
    assert "no SMTP service" in reply.text
    assert not reply.synthetic
    assert server.commands == ["QUIT"]


async def test_connection_refused_gives_synthetic_441() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(SMTPConnectError) as info:
        await connect(port)
    reply = info.value.reply
    assert (reply.code, reply.enhanced, reply.command) == (421, "4.4.1", "CONNECT")
    assert reply.synthetic
    assert reply.text == f"connection refused by 127.0.0.1:{port}"


async def test_source_address_is_bound() -> None:
    server = MiniSMTP()
    async with serve(server) as port:
        client = await connect(port, source_address="127.0.0.1")
        assert client.local_address[0] == "127.0.0.1"
        assert client.peer_address == ("127.0.0.1", port)
        await client.quit()


async def test_garbage_banner_is_a_protocol_error() -> None:
    server = MiniSMTP(banner=b"SSH-2.0-OpenSSH_9.6\r\n")
    async with serve(server) as port:
        with pytest.raises(SMTPProtocolError) as info:
            await connect(port)
    assert info.value.command == "CONNECT"
    assert info.value.reply.synthetic


# --- timeouts and lost connections ------------------------------------------------------


async def test_silent_banner_times_out() -> None:
    server = MiniSMTP(banner=SILENT)
    async with serve(server) as port:
        with pytest.raises(SMTPTimeout) as info:
            await connect(port)
    reply = info.value.reply
    assert (reply.code, reply.enhanced, reply.command) == (421, "4.4.2", "CONNECT")
    assert reply.text == "timeout after 0.3s waiting for the greeting"


@pytest.mark.parametrize(
    ("verb", "command"), [("MAIL", "MAIL FROM"), ("RCPT", "RCPT TO"), ("DATA", "DATA")]
)
async def test_silent_server_times_out_naming_the_phase(verb: str, command: str) -> None:
    server = MiniSMTP(hang_at=verb)
    async with serve(server) as port:
        client = await connect(port)
        with pytest.raises(SMTPTimeout) as info:
            await client.send("s@example.test", ["a@example.test"], MESSAGE)
        assert not client.usable
        await client.quit()
    assert info.value.reply.text == f"timeout after 0.3s waiting for reply to {command}"
    assert info.value.command == command
    assert not info.value.after_data_dot


async def test_silent_after_dot_times_out_after_data_dot() -> None:
    server = MiniSMTP(hang_at="DATA END")
    async with serve(server) as port:
        client = await connect(port)
        with pytest.raises(SMTPTimeout) as info:
            await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.quit()
    assert info.value.command == "DATA END"
    assert info.value.after_data_dot
    assert server.messages == [MESSAGE]


@pytest.mark.parametrize("where", ["DATA LINE", "DATA END"])
async def test_drop_in_data_after_dot_was_written(where: str) -> None:
    server = MiniSMTP(script={"DATA END": SILENT}, drop_after={where})
    async with serve(server) as port:
        client = await connect(port)
        with pytest.raises(SMTPConnectionLost) as info:
            await client.send("s@example.test", ["a@example.test"], MESSAGE)
        assert not client.usable
        await client.quit()
    assert info.value.command == "DATA END"
    assert info.value.after_data_dot
    assert info.value.reply.enhanced == "4.4.2"
    assert info.value.reply.synthetic


async def test_drop_at_data_command_is_before_dot() -> None:
    server = MiniSMTP(script={"DATA": SILENT}, drop_after={"DATA"})
    async with serve(server) as port:
        client = await connect(port)
        with pytest.raises(SMTPConnectionLost) as info:
            await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.quit()
    assert info.value.command == "DATA"
    assert not info.value.after_data_dot


async def test_garbage_reply_mid_transaction() -> None:
    server = MiniSMTP(script={"RCPT": b"HTTP/1.1 400 Bad Request\r\n"})
    async with serve(server) as port:
        client = await connect(port)
        with pytest.raises(SMTPProtocolError) as info:
            await client.send("s@example.test", ["a@example.test"], MESSAGE)
        assert not client.usable
        await client.quit()
    assert info.value.command == "RCPT TO"


async def test_positive_reply_to_data_other_than_354_is_a_protocol_error() -> None:
    server = MiniSMTP(script={"DATA": b"250 2.0.0 thanks\r\n"})
    async with serve(server) as port:
        client = await connect(port)
        with pytest.raises(SMTPProtocolError) as info:
            await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.quit()
    assert info.value.command == "DATA"


async def test_send_after_quit_raises_connection_lost() -> None:
    server = MiniSMTP()
    async with serve(server) as port:
        client = await connect(port)
        await client.quit()
        assert not client.usable
        with pytest.raises(SMTPConnectionLost) as info:
            await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.quit()  # twice is harmless
    assert info.value.reply.synthetic
    assert info.value.command == "MAIL FROM"


async def test_cancelled_send_closes_connection() -> None:
    server = MiniSMTP(hang_at="RCPT")
    async with serve(server) as port:
        client = await connect(port, timeouts=Timeouts(rcpt_to=30.0, quit=0.3))
        task = asyncio.create_task(client.send("s@example.test", ["a@example.test"], MESSAGE))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not client.usable
        await client.quit()


# --- STARTTLS odd cases -----------------------------------------------------------------


async def test_starttls_reply_injection_is_refused() -> None:
    server = MiniSMTP(
        ehlo=("mx.test", "STARTTLS"),
        script={"STARTTLS": b"220 2.0.0 go ahead\r\n250 2.1.0 injected\r\n"},
    )
    async with serve(server) as port:
        with pytest.raises(SMTPProtocolError) as info:
            await connect(port)
    assert info.value.command == "STARTTLS"
    assert "injection" in info.value.reply.text


async def test_failed_handshake_falls_back_to_plaintext_when_opportunistic() -> None:
    server = MiniSMTP(
        ehlo=("mx.test", "STARTTLS"),
        script={"STARTTLS": b"220 2.0.0 go ahead\r\n"},
        drop_after={"STARTTLS"},
    )
    async with serve(server) as port:
        client = await connect(port)
        assert not client.tls_active
        assert client.tls_error
        result = await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.quit()
    assert result.outcome(0).code == 250
    assert server.connections == 2
    assert server.commands.count("STARTTLS") == 1


async def test_failed_handshake_is_an_error_when_required() -> None:
    server = MiniSMTP(
        ehlo=("mx.test", "STARTTLS"),
        script={"STARTTLS": b"220 2.0.0 go ahead\r\n"},
        drop_after={"STARTTLS"},
    )
    async with serve(server) as port:
        with pytest.raises(SMTPConnectError) as info:
            await connect(port, tls="required")
    assert info.value.reply.enhanced == "4.7.5"
    assert info.value.command == "STARTTLS"
    assert server.connections == 1


async def test_starttls_refused_continues_in_plaintext_when_opportunistic() -> None:
    server = MiniSMTP(
        ehlo=("mx.test", "STARTTLS"), script={"STARTTLS": b"454 4.7.0 TLS not available\r\n"}
    )
    async with serve(server) as port:
        client = await connect(port)
        assert not client.tls_active
        result = await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.quit()
        with pytest.raises(SMTPConnectError) as info:
            await connect(port, tls="required")
    assert result.outcome(0).code == 250
    assert info.value.reply.code == 454
