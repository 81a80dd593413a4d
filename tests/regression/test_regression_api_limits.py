"""Requests within the documented limits must not hurt the node.

Covers: a batch whose messages together name too many recipients (``[api]
max_batch_recipients``) is refused before any work, so the node keeps answering; a
request head over 64 KiB is refused (httptools would buffer any size); filtering events
by the address exactly as the API returned it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from postline.runtime import Node
from support.node import add_tenant, api_client, running_node


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path, "[delivery]\nenabled = false\n") as n:
        yield n


def _probe(base_url: str, stop: threading.Event) -> float:
    """Worst /healthz latency seen from another thread until ``stop``."""
    worst = 0.0
    with httpx.Client(base_url=base_url, timeout=60) as client:
        while not stop.is_set():
            t0 = time.monotonic()
            assert client.get("/healthz").status_code == 200
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.02)
    return worst


async def test_huge_batch_does_not_freeze_the_node(node: Node) -> None:
    key = await add_tenant(node)
    to = [f"u{i}@d{i % 50}.test" for i in range(1000)]
    body = json.dumps({"messages": [{"from": "a@acme.test", "to": to, "text": "hi"}] * 150})
    stop = threading.Event()
    async with api_client(node, key) as api:
        prober = asyncio.create_task(asyncio.to_thread(_probe, str(api.base_url), stop))
        await asyncio.sleep(0.1)
        try:
            result = await api.post(
                "/v1/messages/batch", content=body, headers={"content-type": "application/json"}
            )
        finally:
            stop.set()
            worst = await prober
    if result.status_code in (413, 422):
        return  # a cap on recipients per batch is a fine answer
    assert result.status_code == 202
    assert worst < 0.5, f"the node did not answer /healthz for {worst:.1f}s"


async def test_events_filter_by_the_address_the_api_returned(node: Node) -> None:
    key = await add_tenant(node)
    async with api_client(node, key) as api:
        r = await api.post(
            "/v1/messages",
            json={"from": "a@acme.test", "to": ["Ann.Lee@example.test"], "text": "x"},
        )
        assert r.status_code == 202
        address = r.json()["recipients"][0]["address"]
        events = (await api.get("/v1/events", params={"recipient": address})).json()["events"]
        assert [e["type"] for e in events] == ["accepted"], (address, events)


def _huge_head(address: tuple[str, int]) -> bytes:
    with socket.create_connection(address, timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 4_000_000 + b"\r\n\r\n")
        try:
            return s.recv(100)
        except OSError as exc:  # reset: refused before reading it all, also fine
            return repr(exc).encode()


async def test_request_head_size_is_limited(node: Node) -> None:
    assert node.api_address is not None
    answer = await asyncio.to_thread(_huge_head, node.api_address)
    assert not answer.startswith(b"HTTP/1.1 200"), answer
