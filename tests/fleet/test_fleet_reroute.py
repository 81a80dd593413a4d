"""Fleet mode: two nodes on one PostgreSQL. An operator reroutes a domain on node A's
admin API (A does not deliver); node B, which delivers, obeys within its ``[queue]
scan_interval``: the domain's mail goes to a second loopback sink, and back to its MX
hosts once the operator resumes the domain on node A, and once a short reroute ends."""

from __future__ import annotations

from pathlib import Path

from postline.sim.sink import Sink
from support import pgserver
from support.admin_node import FAST_FLEET, operator_node
from support.e2e import E2E, domain, internet
from support.node import api_client, wait_for

pg_server = pgserver.pg_server
pg_dsn = pgserver.pg_dsn


async def _via(e: E2E, to: str) -> str:
    """Send one message (through node B); the host that took it."""
    sent = await e.send(to)

    async def done() -> str | None:
        [r] = (await e.message(sent["id"]))["recipients"]
        return str(r["last_reply"]["mx"]) if r["status"] == "delivered" else None

    result: str = await wait_for(done, timeout=20, interval=0.05)
    return result


async def test_a_reroute_made_on_one_node_is_obeyed_by_another(tmp_path: Path, pg_dsn: str) -> None:
    sink = Sink()
    host, port = await sink.start("127.0.0.1")
    (tmp_path / "b").mkdir()
    try:
        async with (
            internet(
                tmp_path / "b", [domain("plain.test")], store=pg_dsn, node_extra=FAST_FLEET
            ) as b,
            operator_node(tmp_path / "a", pg_dsn) as (a, secret),
        ):
            assert b.node.engine is not None
            mx = await _via(b, "one@plain.test")
            assert mx != host
            async with api_client(a, secret) as admin:
                r = await admin.post(
                    "/admin/v1/queues/reroute",
                    json={"domain": "plain.test", "host": host, "port": port, "duration": "1h"},
                )
                assert r.status_code == 201, r.text
                # Node B reads it at its next scan (0.5 s here).
                await wait_for(lambda: b.node.engine and b.node.engine.routes.reroutes, 10)
                assert await _via(b, "two@plain.test") == host
                assert sink.stats.recipients == 1

                r = await admin.post("/admin/v1/queues/resume", json={"domain": "plain.test"})
                assert r.status_code == 200, r.text
                await wait_for(lambda: b.node.engine and not b.node.engine.routes.reroutes, 10)
                assert await _via(b, "three@plain.test") == mx

                # A short one ends by itself on node B, with nobody asking.
                r = await admin.post(
                    "/admin/v1/queues/reroute",
                    json={"domain": "plain.test", "host": host, "port": port, "duration": "3s"},
                )
                assert r.status_code == 201, r.text
                await wait_for(lambda: b.node.engine and b.node.engine.routes.reroutes, 10)
                assert await _via(b, "four@plain.test") == host
                await wait_for(lambda: b.node.engine and not b.node.engine.routes.reroutes, 10)
                assert await _via(b, "five@plain.test") == mx
                assert sink.stats.recipients == 2
    finally:
        await sink.stop()
