"""SMTP submission over real sockets: no open relay, AUTH only after STARTTLS, SIZE."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import smtplib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postline.errors import ConfigError
from postline.runtime import Node
from postline.store.sqlite.backend import SQLiteStore
from postline.tenants import generate_key, hash_key, key_prefix
from support.node import add_tenant, running_node

MESSAGE = b"From: ann@acme.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nhello\r\n"


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _client(node: Node) -> smtplib.SMTP:
    assert node.submission_address is not None
    host, port = node.submission_address
    return smtplib.SMTP(host, port, timeout=10)


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(
        tmp_path, "[delivery]\nenabled = false\n", submission_extra="max_message_size = '20KB'"
    ) as n:
        yield n


async def test_unauthenticated_relay_is_refused(node: Node) -> None:
    def attempt() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with _client(node) as s:
            s.ehlo("client.test")
            mail = s.docmd("MAIL FROM:<ann@acme.test>")
            rcpt = s.docmd("RCPT TO:<victim@example.test>")
            return mail, rcpt

    mail, rcpt = await asyncio.to_thread(attempt)
    assert mail[0] == 530 and mail[1].startswith(b"5.7.0")
    assert rcpt[0] in (530, 550, 503)
    assert await node.store.state_counts() == {}


async def test_auth_only_after_starttls(node: Node) -> None:
    key = await add_tenant(node)

    def attempt() -> tuple[bool, int, bool]:
        with _client(node) as s:
            s.ehlo("client.test")
            offered_plain = s.has_extn("auth")
            code, _ = s.docmd("AUTH PLAIN", "AGFjbWUAcGFzcw==")
            s.starttls(context=_tls())
            s.ehlo("client.test")
            return offered_plain, code, s.has_extn("auth")

    offered_plain, code, offered_tls = await asyncio.to_thread(attempt)
    assert not offered_plain
    assert code == 538
    assert offered_tls
    assert key


async def test_authenticated_submission_is_queued(node: Node) -> None:
    key = await add_tenant(node)

    def send(user: str, password: str) -> dict[str, tuple[int, bytes]]:
        with _client(node) as s:
            s.starttls(context=_tls())
            s.login(user, password)
            return s.sendmail("ann@acme.test", ["bob@example.test", "carl@other.test"], MESSAGE)

    refused = await asyncio.to_thread(send, "acme", key)
    assert refused == {}
    assert await node.store.state_counts() == {"queued": 2}
    [leased] = await node.store.lease("example.test", now=9e9, limit=5, lease_time=1, owner="t")
    assert leased.body.startswith(b"Received: from ")
    assert b"X-Postline-ID: " + leased.id.encode() in leased.body
    assert b"Message-ID: <" in leased.body and b"Date: " in leased.body
    await asyncio.to_thread(send, "apikey", key)  # SendGrid-style user name works too
    with pytest.raises(smtplib.SMTPAuthenticationError) as err:
        await asyncio.to_thread(send, "acme", "pl_wrong")
    assert err.value.smtp_code == 535
    with pytest.raises(smtplib.SMTPAuthenticationError):
        await asyncio.to_thread(send, "someone-else", key)


async def test_size_is_advertised_and_enforced(node: Node) -> None:
    key = await add_tenant(node)

    def send() -> tuple[int, str]:
        with _client(node) as s:
            s.starttls(context=_tls())
            s.ehlo("client.test")
            size = s.esmtp_features.get("size", "")
            s.login("acme", key)
            try:
                s.sendmail("ann@acme.test", ["bob@example.test"], MESSAGE + b"x" * 30_000 + b"\r\n")
            except smtplib.SMTPDataError as exc:
                return exc.smtp_code, exc.smtp_error.decode()
            except smtplib.SMTPSenderRefused as exc:
                return exc.smtp_code, exc.smtp_error.decode()
            return 250, size

    code, text = await asyncio.to_thread(send)
    assert code == 552
    assert text.startswith("5.3.4")
    assert await node.store.state_counts() == {}


async def test_every_error_has_an_enhanced_code(node: Node) -> None:
    def talk() -> list[tuple[int, bytes]]:
        with _client(node) as s:
            s.ehlo("client.test")
            assert s.has_extn("enhancedstatuscodes")
            return [
                s.docmd("RCPT TO:<a@b.test>"),
                s.docmd("DATA"),
                s.docmd("BOGUS"),
                s.docmd("MAIL FROM:<bad address>"),
                s.docmd("EHLO"),
                s.docmd("HELO"),
            ]

    for code, text in await asyncio.to_thread(talk):
        assert code >= 500
        assert text[:1] == b"5" and text[1:2] == b"." and text.split(b" ")[0].count(b".") == 2, text


async def test_trusted_network_relays_without_auth(tmp_path: Path) -> None:
    extra = "[delivery]\nenabled = false\n"
    sub = "trusted_networks = ['127.0.0.0/8']\ntrusted_tenant = 'relay'"
    with pytest.raises(ConfigError, match="trusted_tenant 'relay' does not exist"):
        async with running_node(tmp_path, extra, submission_extra=sub):
            pass
    store = SQLiteStore(tmp_path / "data" / "postline.db")
    await store.open()
    await store.create_tenant("relay")
    await store.close()
    async with running_node(tmp_path, extra, submission_extra=sub) as node:

        def send() -> dict[str, tuple[int, bytes]]:
            with _client(node) as s:
                return s.sendmail("app@acme.test", ["bob@example.test"], MESSAGE)

        assert await asyncio.to_thread(send) == {}
        assert await node.store.state_counts() == {"queued": 1}


async def test_data_transparency_and_pipelined_commands(node: Node) -> None:
    """Dot-stuffed lines, lines ending in a dot, an empty body and pipelined commands."""
    key = await add_tenant(node)
    bodies = [
        b"Subject: a\r\n\r\n..leading dot\r\nends with a dot.\r\n.\r\nafter\r\n",
        b"Subject: b\r\n\r\n",
        b"Subject: c\r\n\r\nlast line ends with dot.",
    ]

    def send() -> None:
        with _client(node) as s:
            s.starttls(context=_tls())
            s.login("acme", key)
            for i, body in enumerate(bodies):
                s.sendmail("ann@acme.test", [f"r{i}@example.test"], body)

    await asyncio.to_thread(send)
    leased = await node.store.lease("example.test", now=9e9, limit=10, lease_time=1, owner="t")
    got = {m.recipients[0].address: m.body for m in leased}
    a = got["r0@example.test"]
    # smtplib dot-stuffs on the wire; the stored message is the original again.
    assert a.endswith(b"\r\n\r\n..leading dot\r\nends with a dot.\r\n.\r\nafter\r\n")
    assert b"\r\nSubject: b\r\n" in got["r1@example.test"]
    assert got["r1@example.test"].endswith(b"\r\n\r\n")  # headers only, empty body
    assert got["r2@example.test"].endswith(b"last line ends with dot.\r\n")


async def test_a_second_starttls_is_refused_and_the_session_goes_on(node: Node) -> None:
    def talk() -> tuple[tuple[int, bytes], tuple[int, bytes]]:
        with _client(node) as s:
            s.ehlo("client.test")
            s.starttls(context=_tls())
            s.ehlo("client.test")
            again = s.docmd("STARTTLS")
            return again, s.noop()

    again, noop = await asyncio.to_thread(talk)
    assert again == (503, b"5.5.1 TLS already active")
    assert noop[0] == 250


def _auth(node: Node, user: str, passwords: list[str]) -> list[tuple[int, bytes]]:
    """AUTH PLAIN with each password in turn over one STARTTLS session; the replies
    (``(0, b"disconnected")`` once the server closed the connection)."""
    out = []
    with _client(node) as s:
        s.starttls(context=_tls())
        s.ehlo("client.test")
        for password in passwords:
            blob = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            try:
                out.append(s.docmd("AUTH PLAIN", blob))
            except smtplib.SMTPServerDisconnected:
                out.append((0, b"disconnected"))
                break
    return out


LOCKOUT = "auth_lockout_failures = 4\nauth_lockout_address_failures = 6"


async def test_password_guessing_is_slowed_and_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postline.smtp import server

    monkeypatch.setattr(server, "AUTH_FAILURE_DELAY", 0.05)
    async with running_node(
        tmp_path, "[delivery]\nenabled = false\n", submission_extra=LOCKOUT
    ) as node:
        key = await add_tenant(node)
        wrong = [f"pl_wrong{i}" for i in range(4)]
        # Three failures end the session.
        first = await asyncio.to_thread(_auth, node, "acme", wrong)
        assert [c for c, _ in first[:2]] == [535, 535]
        assert first[2][0] == 421 and first[2][1].startswith(b"4.7.0")
        # One more failure of this user from this address reaches the limit (4): then
        # even the right password is refused for a while, with a temporary code that
        # says how long.
        assert (await asyncio.to_thread(_auth, node, "acme", wrong[:1]))[0][0] == 535
        [(code, text)] = await asyncio.to_thread(_auth, node, "acme", [key])
        assert (code, text) == (
            454,
            b"4.7.0 Too many failed logins for this user from your address; "
            b"try again in 10 minutes",
        )
        # An operator lifts it without a restart.
        assert node.auth_failures.clear(address="127.0.0.1", user="acme") == 1
        assert (await asyncio.to_thread(_auth, node, "acme", [key]))[0][0] == 235


async def test_one_users_failures_do_not_lock_out_another_user(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postline.smtp import server

    monkeypatch.setattr(server, "AUTH_FAILURE_DELAY", 0.05)
    async with running_node(
        tmp_path, "[delivery]\nenabled = false\n", submission_extra=LOCKOUT
    ) as node:
        await add_tenant(node, "acme")
        beta = await add_tenant(node, "beta")
        for attempt in (["w1", "w2"], ["w3", "w4"]):
            assert [c for c, _ in await asyncio.to_thread(_auth, node, "acme", attempt)] == [
                535,
                535,
            ]
        assert (await asyncio.to_thread(_auth, node, "acme", ["w5"]))[0][0] == 454
        # Same address, another user: let in.
        assert (await asyncio.to_thread(_auth, node, "beta", [beta]))[0][0] == 235
        # Guessing across user names: the address's own, higher limit (6) locks it out.
        assert [c for c, _ in await asyncio.to_thread(_auth, node, "x1", ["a", "b"])] == [535, 535]
        [(code, text)] = await asyncio.to_thread(_auth, node, "beta", [beta])
        assert code == 454
        assert text.startswith(b"4.7.0 Too many failed logins from your address; try again in ")


async def test_trusted_networks_are_never_locked_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from postline.smtp import server

    monkeypatch.setattr(server, "AUTH_FAILURE_DELAY", 0.05)
    sub = f"{LOCKOUT}\ntrusted_networks = ['127.0.0.0/8']\ntrusted_tenant = 'relay'"
    store = SQLiteStore(tmp_path / "data" / "postline.db")
    await store.open()
    await store.create_tenant("relay")
    await store.close()
    async with running_node(
        tmp_path, "[delivery]\nenabled = false\n", submission_extra=sub
    ) as node:
        key = await add_tenant(node)
        for _ in range(4):
            assert [c for c, _ in await asyncio.to_thread(_auth, node, "acme", ["w1", "w2"])] == [
                535,
                535,
            ]
        assert (await asyncio.to_thread(_auth, node, "acme", [key]))[0][0] == 235


async def test_acting_for_another_identity_is_refused(node: Node) -> None:
    key = await add_tenant(node)

    def auth(authzid: str) -> tuple[int, bytes]:
        with _client(node) as s:
            s.starttls(context=_tls())
            s.ehlo("client.test")
            blob = base64.b64encode(f"{authzid}\0acme\0{key}".encode()).decode()
            return s.docmd("AUTH PLAIN", blob)

    assert (await asyncio.to_thread(auth, "other"))[0] == 535
    assert (await asyncio.to_thread(auth, "acme"))[0] == 235
    assert (await asyncio.to_thread(auth, ""))[0] == 235


async def test_a_successful_auth_logs_no_deprecation_warning(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    key = await add_tenant(node)
    caplog.set_level(logging.INFO)
    assert (await asyncio.to_thread(_auth, node, "acme", [key]))[0][0] == 235
    assert "login_data" not in caplog.text


def _client_hello() -> bytes:
    """The first bytes a TLS client sends: a real ClientHello."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = _tls().wrap_bio(incoming, outgoing, server_hostname="localhost")
    with contextlib.suppress(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


async def test_a_tls_handshake_on_the_plain_port_gets_a_clean_reply_and_log_line(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert node.submission_address is not None
    reader, writer = await asyncio.open_connection(*node.submission_address)
    try:
        writer.write(_client_hello())
        data = await asyncio.wait_for(reader.read(), 10)  # until the server closes
    finally:
        writer.close()
    lines = data.decode("ascii").splitlines()
    assert lines[0].startswith("220 ")
    assert lines[1:] == [
        "500 5.5.2 TLS handshake on a plain-text port; connect in plain text, then STARTTLS"
    ]
    [record] = [r for r in caplog.records if getattr(r, "action", "") == "smtp.tls_on_plain_port"]
    assert record.getMessage() == (
        "client 127.0.0.1 sent a TLS handshake on a plain-text port; connect in plain text "
        "and use STARTTLS (there is no implicit-TLS port)"
    )
    # Nothing else about it: no line of binary from the SMTP layer.
    assert all(r.getMessage().isprintable() for r in caplog.records)


async def test_auth_needs_a_key_with_the_send_scope(node: Node) -> None:
    tenant = await node.store.create_tenant("acme")
    reader, sender = generate_key(), generate_key()
    await node.store.add_api_key(tenant.id, hash_key(reader), key_prefix(reader), scopes=["read"])
    await node.store.add_api_key(tenant.id, hash_key(sender), key_prefix(sender), scopes=["send"])
    [(code, text)] = await asyncio.to_thread(_auth, node, "acme", [reader])
    assert code == 535 and text.startswith(b"5.7.8"), (code, text)
    [(code, _)] = await asyncio.to_thread(_auth, node, "apikey", [sender])
    assert code == 235
