"""PostgreSQL stops under a node that is taking mail, then comes back.

A ``postline serve`` node on a PostgreSQL server of the test's own, delivering to a
loopback sink, gets API requests and SMTP transactions while the server is stopped with
``pg_ctl stop -m immediate``:

* ``/readyz`` answers 503 with the store as the reason within a couple of seconds, although
  every request is refused before the write (idempotency lookup, suppression check);
* HTTP clients get 503 problem JSON ``store-unavailable``, SMTP clients ``451 4.3.0``;
* the log has a bounded number of lines about it, with counts, and no tracebacks;
* ``postline_store_errors_total`` counts the failed operations, ``postline_ready`` is 0;
* after ``pg_ctl start`` the node is ready again by itself (no client traffic), and mail
  sent over HTTP and SMTP is accepted and delivered.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from postline.sim.sink import Sink
from support import pgserver
from support.node import NodeProcess, free_port, node_toml, wait_for
from support.outage import log_lines, message, tenant_key

own_pg_server = pgserver.own_pg_server

OUTAGE = 5.5  # seconds the server stays stopped
MESSAGE = b"From: app@shop.test\r\nTo: {to}\r\nSubject: hi\r\n\r\nhello\r\n"


def _config(tmp: Path, dsn: str, sink_port: int, *, delivery: bool) -> Path:
    extra = f"""
[node]
workers = 1
[log]
format = "json"
level = "warning"
[delivery]
enabled = {str(delivery).lower()}
helo_hostname = "node.postline.test"
tls = "disabled"
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = {sink_port}
[queue]
scan_interval = "500ms"
"""
    path = tmp / "node.toml"
    text = node_toml(
        tmp / "data",
        extra,
        api=f"127.0.0.1:{free_port()}",
        submission=f"127.0.0.1:{free_port()}",
        submission_extra="trusted_networks = ['127.0.0.0/8']\ntrusted_tenant = 'shop'",
        top_extra=f'store = "{dsn}"',
    )
    # The [log] table of node_toml gives way to this test's.
    text = text.replace('[log]\nlevel = "warning"\n', "", 1)
    path.write_text(text)
    return path


def _smtp(address: tuple[str, int], rcpt: str, *, data: bool) -> tuple[int, bytes]:
    """One transaction from a trusted address: the first reply that is not 2xx/3xx (or
    the reply to DATA); ``data=False`` stops after RCPT."""
    with smtplib.SMTP(address[0], address[1], timeout=10) as s:
        s.ehlo("client.test")
        code, text = s.mail("app@shop.test")
        if code != 250:
            return code, text
        code, text = s.rcpt(rcpt)
        if code != 250 or not data:
            return code, text
        return s.data(MESSAGE.replace(b"{to}", rcpt.encode()))


def _metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    prefix = f"{name}{{{want}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    raise AssertionError(f"{prefix.strip()} not in the metrics")


@pytest.mark.parametrize("delivery", [True, False], ids=["delivering", "accepting-only"])
async def test_postgres_stopped_and_started_again(
    tmp_path: Path, own_pg_server: pgserver.PgServer, delivery: bool
) -> None:
    """``accepting-only``: without delivery the node keeps no LISTEN connection, so only
    the refused requests tell it that the store is gone."""
    server = own_pg_server
    dsn = await server.create_postline_database()
    key = await tenant_key(dsn)
    sink = Sink()
    _, sink_port = await sink.start()
    config = _config(tmp_path, dsn, sink_port, delivery=delivery)
    node = NodeProcess(config, tmp_path / "node.log")
    await asyncio.to_thread(node.start, 60.0)
    try:
        host, port = node.ready["submission"].rsplit(":", 1)
        smtp_at = (host, int(port))
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(
            base_url=f"http://{node.ready['api']}", headers=headers, timeout=30
        ) as api:
            # Before: ready, and mail goes through.
            assert (await api.get("/readyz")).json() == {"status": "ready"}
            sent = await api.post("/v1/messages", json=message("before@a.test"))
            assert sent.status_code == 202, sent.text
            if delivery:
                await wait_for(lambda: sink.stats.recipients >= 1, 20)

            await asyncio.to_thread(server.halt)
            halted = time.monotonic()
            # Only traffic refused before the write: API requests with an idempotency key
            # (refused at its lookup) and SMTP transactions that stop after RCPT (refused
            # at the suppression check).
            refused_http: list[httpx.Response] = []
            smtp_replies: list[tuple[int, bytes]] = []

            async def early_traffic(until: float) -> None:
                while time.monotonic() < until:
                    r = await api.post(
                        "/v1/messages",
                        json=message("during@a.test"),
                        headers={"Idempotency-Key": uuid.uuid4().hex},
                    )
                    refused_http.append(r)
                    smtp_replies.append(
                        await asyncio.to_thread(_smtp, smtp_at, "during@a.test", data=False)
                    )
                    await asyncio.sleep(0.05)

            traffic = asyncio.create_task(early_traffic(halted + OUTAGE))
            ready = await wait_for(lambda: _unready(api), timeout=OUTAGE - 1.0, interval=0.1)
            became_unready = time.monotonic() - halted
            assert ready["status"] == "unavailable"
            (reason,) = [r for r in ready["reasons"] if r["component"] == "store"]
            assert "PostgreSQL" in reason["detail"] and reason["since"].endswith("Z")
            # Full transactions too, over HTTP and SMTP, until the server comes back.
            await traffic
            for _ in range(3):
                r = await api.post("/v1/messages", json=message("during@a.test"))
                refused_http.append(r)
                smtp_replies.append(
                    await asyncio.to_thread(_smtp, smtp_at, "during@a.test", data=True)
                )
            metrics_down = (await api.get("/metrics")).text

            await asyncio.to_thread(server.resume)
            resumed = time.monotonic()
            # Ready again by itself: nothing but /readyz is asked.
            await wait_for(lambda: _ready(api), timeout=15, interval=0.1)
            back_in = time.monotonic() - resumed

            sent = await api.post("/v1/messages", json=message("after@a.test"))
            assert sent.status_code == 202, sent.text
            code, text = await asyncio.to_thread(_smtp, smtp_at, "after-smtp@a.test", data=True)
            assert code == 250, text
            if delivery:
                await wait_for(lambda: sink.stats.recipients >= 3, 30)
                assert {r for _, r in sink.stats.pairs} == {
                    "before@a.test",
                    "after@a.test",
                    "after-smtp@a.test",
                }
            else:
                assert await _queued(dsn) == 3
            metrics_up = (await api.get("/metrics")).text

        assert refused_http, "no request was sent during the outage"
        for r in refused_http:
            assert r.status_code == 503, r.text
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["type"] == "urn:postline:problem:store-unavailable"
        assert smtp_replies
        for code, text in smtp_replies:
            assert (code, text[:5]) == (451, b"4.3.0"), (code, text)

        assert _metric(metrics_down, "postline_ready") == 0
        assert _metric(metrics_down, "postline_store_errors_total", op="idempotency") > 0
        assert _metric(metrics_down, "postline_store_errors_total", op="suppressions") > 0
        assert _metric(metrics_up, "postline_ready") == 1

        node.terminate()
        lines = log_lines(tmp_path / "node.log")
        tracebacks = [line for line in lines if "exc" in line]
        assert not tracebacks, tracebacks[0]["exc"]
        store_lines = [line for line in lines if str(line.get("action", "")).startswith("store.")]
        down = [line for line in store_lines if line["action"] == "store.unavailable"]
        up = [line for line in store_lines if line["action"] == "store.available"]
        assert down and up, store_lines
        # One line when it went, one per 10 s with counts, one when it came back.
        assert len(store_lines) <= 2 + OUTAGE // 10 + 2, store_lines
        refused = sum(line.get("refused_api", 0) for line in store_lines)
        assert refused == len(refused_http), store_lines
        refused_smtp = sum(line.get("refused_smtp", 0) for line in store_lines)
        assert refused_smtp == len(smtp_replies), store_lines
        # Everything else a node logs in the meantime is bounded too (not a line per
        # message or per loop turn).
        assert len(lines) < 30, [line["msg"] for line in lines]
        print(f"unready after {became_unready:.1f}s, ready {back_in:.1f}s after the restart")
    finally:
        await asyncio.to_thread(node.kill)
        await sink.stop()


async def _queued(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM recipients"))
    finally:
        await conn.close()


async def _unready(api: httpx.AsyncClient) -> dict[str, Any] | None:
    r = await api.get("/readyz")
    return r.json() if r.status_code == 503 else None  # type: ignore[no-any-return]


async def _ready(api: httpx.AsyncClient) -> bool:
    return (await api.get("/readyz")).status_code == 200
