"""Hostile clients on SMTP submission and inbound: connection limits and timeouts.

A node runs in this event loop with small limits and timeouts. From 127.0.0.1:

* slowloris — many connections, each trickling a byte every half second without ever
  ending a line: the listener holds no more than ``max_connections_per_ip`` of them (the
  others get ``421 4.7.0 Too many connections from your address`` and are closed at
  once), and those it holds get ``421 4.4.2`` and are closed at the idle timeout, since
  bytes without a line end do not count as a command;
* a client that connects and never speaks is closed at the idle timeout;
* a client trickling a message's DATA is cut off at the data timeout;
* a client that keeps a connection with NOOPs is closed at the command time limit;

and all the while a well-behaved client (smtplib, from 127.0.0.2) sends mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import smtplib
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postline.config import load_config
from postline.runtime import Node
from postline.smtp.server import ConnectionLimits
from support.node import add_tenant, cli_tenant

IDLE = 1.5
COMMANDS = 3.0
DATA = 2.0
PER_IP = 4
SLACK = 5.0  # a generous bound on how late a timeout may fire on a busy machine

MESSAGE = b"From: ann@acme.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


def _config(tmp: Path, submission_extra: str = "") -> str:
    limits = f"""
timeout = "{IDLE}s"
command_time_limit = "{COMMANDS}s"
data_timeout = "{DATA}s"
max_connections_per_ip = {PER_IP}
"""
    return f"""
data_dir = "{tmp / "data"}"
node_id = "test-node"
[api]
listen = "127.0.0.1:0"
[submission]
listen = "127.0.0.1:0"
{limits}
{submission_extra}
[inbound]
listen = "127.0.0.1:0"
{limits}
[bounce]
domain = "bounce.postline.test"
secret = "limits-secret"
[delivery]
enabled = false
[log]
level = "info"
"""


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    path = tmp_path / "node.toml"
    path.write_text(_config(tmp_path))
    n = Node(load_config(path, environ={}))
    try:
        await n.start()
        yield n
    finally:
        await n.stop()


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _connect(
    address: tuple[str, int], source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(address[0], address[1], local_addr=(source, 0))


async def _until_closed(reader: asyncio.StreamReader, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes (and how long that took)."""
    t0 = time.monotonic()
    data = b""
    async with asyncio.timeout(limit):
        while chunk := await reader.read(4096):
            data += chunk
    return data, time.monotonic() - t0


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    with contextlib.suppress(ConnectionError):
        for i in range(len(data)):
            if writer.is_closing():
                return
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(every)


def _well_behaved(address: tuple[str, int], key: str, count: int) -> list[int]:
    """``count`` messages over submission from 127.0.0.2, one connection each."""
    codes = []
    for _ in range(count):
        with smtplib.SMTP(address[0], address[1], timeout=10, source_address=("127.0.0.2", 0)) as s:
            s.ehlo("client.test")
            s.starttls(context=_tls())
            s.ehlo("client.test")
            s.login("acme", key)
            s.mail("ann@acme.test")
            s.rcpt("bob@example.test")
            code, _ = s.data(MESSAGE)
            codes.append(code)
    return codes


@pytest.mark.parametrize("server", ["submission", "inbound"])
async def test_slowloris_is_held_to_the_per_address_limit_and_timed_out(
    node: Node, server: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    key = await add_tenant(node)
    address = node.submission_address if server == "submission" else node.inbound_address
    assert address is not None and node.submission_address is not None
    conns = [await _connect(address) for _ in range(PER_IP * 3)]
    greetings = [await asyncio.wait_for(r.readline(), 10) for r, _ in conns]
    held = [c for c, g in zip(conns, greetings, strict=True) if g.startswith(b"220 ")]
    refused = [g for g in greetings if not g.startswith(b"220 ")]
    assert len(held) == PER_IP
    assert refused == [b"421 4.7.0 Too many connections from your address\r\n"] * (PER_IP * 2)
    for (reader, writer), greeting in zip(conns, greetings, strict=True):
        if not greeting.startswith(b"220 "):
            data, _ = await _until_closed(reader, 5)  # closed at once after the refusal
            assert data == b""
            writer.close()

    trickles = [asyncio.create_task(_trickle(w, b"EHLO slow.test" * 10, 0.5)) for _, w in held]
    served = asyncio.create_task(asyncio.to_thread(_well_behaved, node.submission_address, key, 3))
    outcomes = await asyncio.gather(*(_until_closed(r, IDLE + SLACK) for r, _ in held))
    for data, _ in outcomes:
        assert data.startswith(b"421 4.4.2 Idle timeout"), data
    assert await served == [250, 250, 250]
    for task in trickles:
        task.cancel()
    for _, w in held:
        w.close()

    # The slots are free again: the same address is greeted.
    reader, writer = await _connect(address)
    assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"220 ")
    writer.close()
    assert "Traceback" not in caplog.text


async def test_a_client_that_never_speaks_is_closed_at_the_idle_timeout(node: Node) -> None:
    assert node.submission_address is not None
    reader, writer = await _connect(node.submission_address)
    data, took = await _until_closed(reader, IDLE + SLACK)
    assert data.startswith(b"220 ")
    assert data.endswith(b"421 4.4.2 Idle timeout: no command for 1.5 s; closing connection\r\n")
    assert took >= IDLE * 0.9
    writer.close()


async def test_a_trickled_message_is_cut_off_at_the_data_timeout(node: Node) -> None:
    key = await add_tenant(node)
    assert node.submission_address is not None
    host, port = node.submission_address

    def trickle() -> tuple[bytes, bytes]:
        with smtplib.SMTP(host, port, timeout=10) as s:
            s.ehlo("client.test")
            s.starttls(context=_tls())
            s.ehlo("client.test")
            s.login("acme", key)
            s.mail("ann@acme.test")
            s.rcpt("bob@example.test")
            code, _ = s.docmd("DATA")
            assert code == 354
            assert s.sock is not None
            s.sock.settimeout(DATA + SLACK)
            try:
                for byte in MESSAGE * 20:
                    s.sock.sendall(bytes([byte]))
                    time.sleep(0.2)
            except OSError:
                pass  # the server closed the connection
            reply = s.sock.recv(4096)
            return reply, s.sock.recv(4096)

    reply, after = await asyncio.to_thread(trickle)
    assert reply.startswith(b"421 4.4.2 Data timeout"), reply
    assert after == b""
    assert await node.store.state_counts() == {}


async def test_a_client_that_only_sends_noop_is_closed_at_the_command_time_limit(
    node: Node,
) -> None:
    assert node.inbound_address is not None
    reader, writer = await _connect(node.inbound_address)
    assert (await reader.readline()).startswith(b"220 ")
    t0 = time.monotonic()
    replies = b""
    with contextlib.suppress(ConnectionError):
        while time.monotonic() - t0 < COMMANDS + SLACK:
            writer.write(b"NOOP\r\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), IDLE + SLACK)
            replies += line
            if not line or not line.startswith(b"250 "):
                break
            await asyncio.sleep(0.3)
    assert replies.splitlines()[-1] == (
        b"421 4.4.2 Connection time limit: over 3 s of commands; closing connection"
    )
    assert time.monotonic() - t0 >= COMMANDS * 0.9
    writer.close()


def test_connection_limits_count_per_address_and_in_all() -> None:
    limits = ConnectionLimits(2, 3, exempt=lambda a: a == "10.0.0.9")
    assert limits.admit("10.0.0.1") is None
    assert limits.admit("10.0.0.1") is None
    assert limits.admit("10.0.0.1") == "421 4.7.0 Too many connections from your address"
    assert limits.admit("10.0.0.9") is None
    assert limits.admit("10.0.0.2") == "421 4.3.2 Too many connections; try again later"
    assert limits.open("10.0.0.1") == 2 and limits.open() == 3 and limits.refused == 2
    limits.release("10.0.0.1")
    assert limits.admit("10.0.0.2") is None
    limits.release("10.0.0.9")
    limits.release("10.0.0.9")  # released twice: never below zero
    assert limits.open("10.0.0.9") == 0
    assert limits.admit("10.0.0.9") is None
    assert limits.admit("10.0.0.9") == "421 4.3.2 Too many connections; try again later"


@pytest.mark.parametrize(
    ("sends", "leaves"),
    [
        (b"", False),
        (b"\x16\x03\x01\x00", False),
        (b"EHLO again.test\r\n", False),
        (b"\x16\x03", True),
    ],
    ids=["nothing", "half-a-hello", "plain-text", "leaves-midway"],
)
async def test_a_client_that_fails_the_tls_handshake_is_closed_quietly(
    node: Node, caplog: pytest.LogCaptureFixture, sends: bytes, leaves: bool
) -> None:
    """Stalled, broken or abandoned handshakes after STARTTLS: the connection is closed
    (at the idle timeout at the latest), without a traceback in the log."""
    assert node.submission_address is not None
    reader, writer = await _connect(node.submission_address)
    assert (await reader.readline()).startswith(b"220 ")
    writer.write(b"EHLO client.test\r\nSTARTTLS\r\n")
    replies = b""
    while not replies.endswith(b"\r\n") or not replies.splitlines()[-1].startswith(b"220 "):
        replies += await asyncio.wait_for(reader.readline(), 10)
    writer.write(sends)
    if leaves:
        await writer.drain()
        writer.transport.abort()
        await asyncio.sleep(0.5)
    else:
        data, _ = await _until_closed(reader, IDLE + SLACK)
        assert data == b""  # no TLS session: nothing can be said in clear text
        writer.close()
        await asyncio.sleep(0.2)
    assert "Traceback" not in caplog.text
    assert node.submission_address is not None
    r, w = await _connect(node.submission_address)
    assert (await asyncio.wait_for(r.readline(), 10)).startswith(b"220 ")
    w.close()


async def test_trusted_networks_are_exempt_from_the_per_address_limit(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    trusted = "trusted_networks = ['127.0.0.3/32']\ntrusted_tenant = 'apps'"
    path.write_text(_config(tmp_path, trusted))
    await cli_tenant(path, "apps")
    n = Node(load_config(path, environ={}))
    try:
        await n.start()
        assert n.submission_address is not None
        conns = []
        for source in ["127.0.0.3"] * (PER_IP * 2) + ["127.0.0.1"] * (PER_IP + 1):
            reader, writer = await _connect(n.submission_address, source)
            conns.append((source, await asyncio.wait_for(reader.readline(), 10), writer))
        greeted = [source for source, line, _ in conns if line.startswith(b"220 ")]
        assert greeted.count("127.0.0.3") == PER_IP * 2
        assert greeted.count("127.0.0.1") == PER_IP
        for _, _, writer in conns:
            writer.close()
    finally:
        await n.stop()
