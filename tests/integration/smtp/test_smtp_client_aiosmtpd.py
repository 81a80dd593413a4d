"""SMTPClient against real aiosmtpd servers on 127.0.0.1 (port 0), STARTTLS included.

The handler answers RCPT by local part, like the sim's mail exchangers: ``unknown@``
gets 550 5.1.1, ``full@`` gets 452 4.2.2, anything else is accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvloop
from aiosmtpd.smtp import SMTP, Envelope, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from postline.smtp.client import SMTPClient, SMTPConnectError, Timeouts

FAST = Timeouts(
    connect=2.0,
    banner=2.0,
    ehlo=2.0,
    starttls=2.0,
    mail_from=2.0,
    rcpt_to=2.0,
    data=2.0,
    data_dot=2.0,
    rset=2.0,
    quit=1.0,
)


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    mail_options: list[str]
    tls: bool


@dataclass
class Sink:
    """An aiosmtpd handler that records what arrived and answers RCPT by local part."""

    pipelining: bool = True
    messages: list[Received] = field(default_factory=list)
    mails: list[list[str]] = field(default_factory=list)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            responses.insert(1, "250-PIPELINING")
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mails.append(list(options))
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        local = address.rpartition("@")[0]
        if local == "unknown":
            return "550 5.1.1 The email account that you tried to reach does not exist"
        if local == "full":
            return "452 4.2.2 Mailbox full"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content
        assert isinstance(content, bytes)
        self.messages.append(
            Received(
                str(envelope.mail_from),
                list(envelope.rcpt_tos),
                content,
                list(envelope.mail_options),
                session.ssl is not None,
            )
        )
        return f"250 2.0.0 Ok: queued as {len(self.messages)}"


@contextlib.asynccontextmanager
async def aiosmtpd_server(handler: Sink, **kwargs: Any) -> AsyncIterator[int]:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="mx.test", loop=loop, **kwargs), "127.0.0.1", 0
    )
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def connect(port: int, **kwargs: Any) -> SMTPClient:
    kwargs.setdefault("timeouts", FAST)
    return await SMTPClient.connect("127.0.0.1", port, ehlo_hostname="client.test", **kwargs)


MESSAGE = b"From: s@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


@dataclass(frozen=True)
class CertFiles:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> CertFiles:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("mx.test")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    root = tmp_path_factory.mktemp("tls")
    files = CertFiles(root / "cert.pem", root / "key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@pytest.fixture
def server_tls(cert_files: CertFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_files.cert, cert_files.key)
    return ctx


# --- transactions ---------------------------------------------------------------------


@pytest.mark.parametrize("pipelining", [True, False])
async def test_mixed_recipient_replies_in_one_transaction(pipelining: bool) -> None:
    sink = Sink(pipelining=pipelining)
    recipients = ["ok@example.test", "unknown@example.test", "full@example.test"]
    async with aiosmtpd_server(sink) as port:
        client = await connect(port)
        assert client.supports("pipelining") is pipelining
        result = await client.send("s@example.test", recipients, MESSAGE)
        await client.quit()
    assert [r.code for r in result.rcpts] == [250, 550, 452]
    assert [r.command for r in result.rcpts] == ["RCPT TO"] * 3
    assert result.mail.code == 250
    assert result.data is not None
    assert (result.data.code, result.data.command) == (250, "DATA END")
    ok, unknown, full = result.outcomes()
    assert (ok.code, ok.enhanced, ok.text) == (250, "2.0.0", "Ok: queued as 1")
    assert (unknown.code, unknown.enhanced) == (550, "5.1.1")
    assert (full.code, full.enhanced) == (452, "4.2.2")
    assert full.transient
    assert unknown.permanent
    assert [m.rcpt_tos for m in sink.messages] == [["ok@example.test"]]
    assert sink.messages[0].content == MESSAGE


async def test_connection_reuse_for_several_transactions() -> None:
    sink = Sink()
    async with aiosmtpd_server(sink) as port, await connect(port) as client:
        for i in range(3):
            body = MESSAGE + f"number {i}\r\n".encode()
            result = await client.send("s@example.test", [f"r{i}@example.test"], body)
            assert result.outcome(0).code == 250
        rejected = await client.send("s@example.test", ["unknown@example.test"], MESSAGE)
        assert rejected.data is None
        assert client.usable
        last = await client.send("s@example.test", ["r3@example.test", "r4@example.test"], MESSAGE)
        assert [r.code for r in last.outcomes()] == [250, 250]
        assert client.transactions == 4
    assert [m.rcpt_tos for m in sink.messages] == [
        ["r0@example.test"],
        ["r1@example.test"],
        ["r2@example.test"],
        ["r3@example.test", "r4@example.test"],
    ]
    assert sink.messages[1].content.endswith(b"number 1\r\n")


async def test_dot_stuffing_arrives_intact() -> None:
    sink = Sink()
    data = b"Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nbare\nlf\r\nbare\rcr\r\n.\r\nend"
    expected = (
        b"Subject: dots\r\n\r\n.\r\n..\r\n.leading dot\r\nbare\r\nlf\r\nbare\r\ncr\r\n.\r\nend\r\n"
    )
    async with aiosmtpd_server(sink) as port, await connect(port) as client:
        result = await client.send("s@example.test", ["a@example.test"], data)
        assert result.outcome(0).code == 250
        # The connection still works: the dot lines did not end the data early.
        again = await client.send("s@example.test", ["a@example.test"], b".")
        assert again.outcome(0).code == 250
    assert [m.content for m in sink.messages] == [expected, b".\r\n"]


async def test_esmtp_parameters_size_8bitmime_smtputf8() -> None:
    sink = Sink()
    eight_bit = "Subject: caf\u00e9\r\n\r\nd\u00e9j\u00e0 vu\r\n".encode()
    async with (
        aiosmtpd_server(sink, enable_SMTPUTF8=True) as port,
        await connect(port) as client,
    ):
        assert client.supports("SMTPUTF8")
        assert client.supports("8BITMIME")
        assert client.max_size == 33554432
        await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.send("s@example.test", ["a@example.test"], eight_bit)
        utf8 = await client.send("s@example.test", ["jos\u00e9@b\u00fccher.test"], MESSAGE)
        assert utf8.outcome(0).code == 250
    assert sink.mails == [
        [f"SIZE={len(MESSAGE)}"],
        [f"SIZE={len(eight_bit)}", "BODY=8BITMIME"],
        [f"SIZE={len(MESSAGE)}", "SMTPUTF8"],
    ]
    assert sink.messages[2].rcpt_tos == ["jos\u00e9@b\u00fccher.test"]
    assert sink.messages[1].content == eight_bit


async def test_non_ascii_address_without_smtputf8_is_refused_locally() -> None:
    sink = Sink()
    async with aiosmtpd_server(sink) as port, await connect(port) as client:
        assert not client.supports("SMTPUTF8")
        result = await client.send(
            "s@example.test", ["a@example.test", "jos\u00e9@example.test"], MESSAGE
        )
        assert client.usable
        after = await client.send("s@example.test", ["a@example.test"], MESSAGE)
    for reply in result.outcomes():
        assert (reply.code, reply.enhanced, reply.command) == (553, "5.6.7", "MAIL FROM")
        assert reply.synthetic
    assert result.data is None
    assert after.outcome(0).code == 250
    assert len(sink.mails) == 1  # only the second transaction reached the server


async def test_message_over_advertised_size_is_refused_locally() -> None:
    sink = Sink()
    async with aiosmtpd_server(sink, data_size_limit=200) as port, await connect(port) as client:
        assert client.max_size == 200
        result = await client.send("s@example.test", ["a@example.test"], b"x" * 201)
        assert client.usable
        fits = await client.send("s@example.test", ["a@example.test"], b"x" * 150)
    reply = result.outcome(0)
    assert (reply.code, reply.enhanced, reply.synthetic) == (552, "5.3.4", True)
    assert "201" in reply.text
    assert fits.outcome(0).code == 250
    assert sink.mails == [["SIZE=150"]]


async def test_control_characters_in_addresses_are_never_sent() -> None:
    sink = Sink()
    async with aiosmtpd_server(sink) as port, await connect(port) as client:
        result = await client.send(
            "s@example.test", ["a@example.test", "b@example.test\r\nRSET"], MESSAGE
        )
        bad_sender = await client.send("s@x\r\nDATA", ["a@example.test"], MESSAGE)
    assert [r.code for r in result.outcomes()] == [250, 553]
    assert result.outcome(1).enhanced == "5.1.3"
    assert bad_sender.outcome(0).enhanced == "5.1.7"
    assert [m.rcpt_tos for m in sink.messages] == [["a@example.test"]]


# --- STARTTLS -------------------------------------------------------------------------


async def test_starttls_opportunistic(server_tls: ssl.SSLContext) -> None:
    sink = Sink()
    async with aiosmtpd_server(sink, tls_context=server_tls) as port:
        client = await connect(port)
        assert client.tls_active
        assert client.tls_version in {"TLSv1.2", "TLSv1.3"}
        assert not client.supports("STARTTLS")  # the EHLO after TLS no longer offers it
        result = await client.send("s@example.test", ["a@example.test"], MESSAGE)
        started = asyncio.get_running_loop().time()
        await client.quit()
        assert asyncio.get_running_loop().time() - started < FAST.quit
        assert not client.usable
    assert result.outcome(0).code == 250
    assert sink.messages[0].tls


async def test_starttls_disabled_stays_plaintext(server_tls: ssl.SSLContext) -> None:
    sink = Sink()
    async with aiosmtpd_server(sink, tls_context=server_tls) as port:
        client = await connect(port, tls="disabled")
        assert not client.tls_active
        assert client.supports("STARTTLS")
        await client.send("s@example.test", ["a@example.test"], MESSAGE)
        await client.quit()
    assert not sink.messages[0].tls


async def test_starttls_required_but_not_offered() -> None:
    async with aiosmtpd_server(Sink()) as port:
        with pytest.raises(SMTPConnectError) as info:
            await connect(port, tls="required")
    reply = info.value.reply
    assert (reply.code, reply.enhanced, reply.command) == (421, "4.7.4", "STARTTLS")
    assert reply.synthetic


async def test_starttls_verified_with_server_name(
    server_tls: ssl.SSLContext, cert_files: CertFiles
) -> None:
    verify = ssl.create_default_context(cafile=str(cert_files.cert))
    sink = Sink()
    async with aiosmtpd_server(sink, tls_context=server_tls) as port:
        client = await connect(port, tls="required", tls_context=verify, server_name="mx.test")
        assert client.tls_active
        await client.quit()
        with pytest.raises(SMTPConnectError) as info:
            await connect(port, tls="required", tls_context=verify, server_name="other.test")
    assert info.value.reply.enhanced == "4.7.5"
    with pytest.raises(ValueError, match="server_name"):
        await connect(1, tls="required", tls_context=verify)


# --- uvloop ---------------------------------------------------------------------------


def test_pipelined_transactions_on_uvloop() -> None:
    """The production event loop: pipelining, reuse and quit on uvloop."""

    async def scenario() -> list[Received]:
        sink = Sink()
        async with aiosmtpd_server(sink) as port, await connect(port) as client:
            assert client.supports("PIPELINING")
            for _ in range(3):
                result = await client.send(
                    "s@example.test", ["a@example.test", "unknown@example.test"], MESSAGE
                )
                assert [r.code for r in result.outcomes()] == [250, 550]
        return sink.messages

    messages = uvloop.run(scenario())
    assert len(messages) == 3


def test_starttls_on_uvloop(cert_files: CertFiles) -> None:
    """STARTTLS through uvloop's start_tls, then a clean QUIT over TLS."""

    async def scenario() -> tuple[bool, float, list[Received]]:
        server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_tls.load_cert_chain(cert_files.cert, cert_files.key)
        sink = Sink()
        async with aiosmtpd_server(sink, tls_context=server_tls) as port:
            client = await connect(port)
            active = client.tls_active
            await client.send("s@example.test", ["a@example.test"], MESSAGE)
            started = asyncio.get_running_loop().time()
            await client.quit()
            quit_took = asyncio.get_running_loop().time() - started
        return active, quit_took, sink.messages

    active, quit_took, messages = uvloop.run(scenario())
    assert active
    assert quit_took < FAST.quit  # the close completed; it did not run into the timeout
    assert [m.tls for m in messages] == [True]
