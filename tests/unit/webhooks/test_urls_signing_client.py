"""Webhook URL rules, the address check, signatures (checked by `standardwebhooks`), the
backoff, and the HTTP client against real sockets."""

from __future__ import annotations

import asyncio
import ipaddress
import random
import time
from collections.abc import Awaitable, Callable

import pytest
from standardwebhooks.webhooks import Webhook as Verifier
from standardwebhooks.webhooks import WebhookVerificationError

from postline.webhooks import signing
from postline.webhooks.client import HttpClient, HttpError
from postline.webhooks.dispatch import backoff
from postline.webhooks.urls import UrlRefused, address_allowed, networks, parse_url, resolve


@pytest.mark.parametrize(
    ("url", "allow_http", "reason"),
    [
        ("http://hooks.example/", False, "https"),
        ("ftp://hooks.example/", True, "https"),
        ("https://u:p@hooks.example/", False, "credentials"),
        ("https:///path", False, "no host"),
        ("https://hooks.example/a b", False, "spaces"),
        ("https://hooks.example:99999/", False, "parse"),
    ],
)
def test_bad_urls_say_why(url: str, allow_http: bool, reason: str) -> None:
    with pytest.raises(UrlRefused, match=reason):
        parse_url(url, allow_http=allow_http)


def test_url_parts() -> None:
    t = parse_url("https://Hooks.Example./in?x=1", allow_http=False)
    assert (t.host, t.port, t.path, t.tls, t.host_header) == (
        "hooks.example",
        443,
        "/in?x=1",
        True,
        "hooks.example",
    )
    t = parse_url("http://[::1]:8080", allow_http=True)
    assert (t.host, t.port, t.path, t.host_header) == ("::1", 8080, "/", "[::1]:8080")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_private_and_metadata_addresses_are_refused(address: str) -> None:
    assert not address_allowed(ipaddress.ip_address(address), [])


def test_public_and_listed_addresses_are_allowed() -> None:
    assert address_allowed(ipaddress.ip_address("93.184.215.14"), [])
    assert address_allowed(ipaddress.ip_address("2606:4700::1111"), [])
    assert address_allowed(ipaddress.ip_address("127.0.0.1"), networks(["127.0.0.0/8"]))
    assert not address_allowed(ipaddress.ip_address("10.0.0.1"), networks(["127.0.0.0/8"]))


async def test_names_resolving_to_private_addresses_are_refused() -> None:
    # "localhost" resolves from /etc/hosts: no resolver is asked.
    target = parse_url("http://localhost:9/x", allow_http=True)
    with pytest.raises(UrlRefused, match="not public"):
        await resolve(target, [])
    assert await resolve(target, networks(["127.0.0.0/8", "::1/128"])) in ("127.0.0.1", "::1")


def test_signatures_verify_with_standardwebhooks() -> None:
    secret, old = signing.new_secret(), signing.new_secret()
    body = b'[{"id":"1","type":"delivered"}]'

    ts = int(time.time())
    headers = signing.headers("msg_1", ts, body, [secret, old])
    assert Verifier(secret).verify(body, headers) == [{"id": "1", "type": "delivered"}]
    Verifier(old).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(signing.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Verifier(secret).verify(body + b" ", headers)


def test_backoff_is_full_jitter_doubling_to_a_cap() -> None:
    rng = random.Random(7)
    for attempt, bound in [(1, 5), (2, 10), (3, 20), (10, 2560), (11, 3600), (30, 3600)]:
        samples = [backoff(attempt, rng) for _ in range(300)]
        assert min(samples) >= 0 and max(samples) <= bound
        assert max(samples) > bound * 0.8  # the whole range is used


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _server(handler: Handler) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


async def test_client_keeps_alive_caps_bodies_and_does_not_follow_redirects() -> None:
    connections = 0
    replies = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 500 X\r\nContent-Length: 200000\r\n\r\n" + b"x" * 200000,
    ]
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        try:
            while replies:
                requests.append(await _read_request(reader))
                writer.write(replies.pop(0))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server, port = await _server(handler)
    client = HttpClient(timeout=2, user_agent="t")
    target = parse_url(f"http://hooks.test:{port}/in", allow_http=True)
    headers = {"webhook-id": "msg_1"}
    r1 = await client.post("a", target, "127.0.0.1", b"[1]", headers)
    r2 = await client.post("a", target, "127.0.0.1", b"[2]", headers)
    r3 = await client.post("a", target, "127.0.0.1", b"[3]", headers)
    r4 = await client.post("a", target, "127.0.0.1", b"[4]", headers)
    assert [r.status for r in (r1, r2, r3, r4)] == [200, 200, 302, 500]
    assert (r1.body, r2.body) == (b"ok", b"ok")
    assert len(r4.body) == 65536  # read no further than 64 KB
    assert connections == 1
    assert requests[0].startswith(b"POST /in HTTP/1.1\r\nHost: hooks.test:")
    assert b"webhook-id: msg_1" in requests[0]
    with pytest.raises(ValueError, match="line break"):
        await client.post("a", target, "127.0.0.1", b"[]", {"x": "a\r\nInjected: 1"})
    client.close_all()
    server.close()
    await server.wait_closed()


async def test_client_reports_refusals_and_timeouts() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)  # never answers

    server, port = await _server(silent)
    client = HttpClient(timeout=0.3, user_agent="t")
    target = parse_url(f"http://x:{port}/", allow_http=True)
    with pytest.raises(HttpError, match="no response within"):
        await client.post("a", target, "127.0.0.1", b"[]", {})
    server.close()
    for writer in writers:
        writer.close()
    await server.wait_closed()
    with pytest.raises(HttpError, match="refused"):
        await client.post("a", target, "127.0.0.1", b"[]", {})
    client.close_all()


async def test_a_closed_keep_alive_connection_is_replaced() -> None:
    count = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count
        count += 1
        await _read_request(reader)
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()  # the receiver does not keep connections alive, without saying so

    server, port = await _server(once)
    client = HttpClient(timeout=2, user_agent="t")
    target = parse_url(f"http://x:{port}/", allow_http=True)
    for _ in range(3):
        assert (await client.post("a", target, "127.0.0.1", b"[]", {})).status == 204
        await asyncio.sleep(0.05)
    assert count == 3
    client.close_all()
    server.close()
    await server.wait_closed()


def test_a_secret_sealed_with_another_nodes_key_is_reported_clearly() -> None:
    from postline.config import WebhooksConfig
    from postline.store.base import Webhook
    from postline.webhooks.dispatch import SecretUnavailable, WebhookSender
    from postline.webhooks.sealing import SealedSecrets

    ours, theirs = SealedSecrets("node secret one"), SealedSecrets("node secret two")
    hook = Webhook(
        id="wh_1",
        tenant_id="t",
        url="https://hooks.example/",
        events=(),
        description="",
        batch_size=10,
        secret=theirs.seal(signing.new_secret(), "wh_1"),
        old_secret=None,
        old_secret_until=None,
        status="active",
        disabled_reason="",
        created_at=0.0,
        updated_at=0.0,
        cursor=0,
    )
    sender = WebhookSender(WebhooksConfig(), ours)
    with pytest.raises(SecretUnavailable, match="key_secret"):
        sender.signing_secrets(hook, time.time())
    assert WebhookSender(WebhooksConfig(), theirs).signing_secrets(hook, time.time())
