"""After ``kill -9`` and a restart, the node's own in-flight mail goes out at once.

Whatever a node had leased before it stopped is in nobody's memory: at start it hands
those leases back instead of waiting for them to expire.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from postline.sim.config import SimConfig
from postline.sim.runner import Simulator
from support.e2e import domain
from support.node import cli_tenant, node_toml, served, wait_for


def _config(tmp_path: Path, sim: Simulator, route: str) -> Path:
    extra = f"""
[dns]
nameservers = ["{sim.dns_address}"]
timeout = "1s"
min_ttl = "1s"
[delivery]
smtp_port = {sim.smtp_port}
helo_hostname = "node.postline.test"
tls = "disabled"
{route}
[queue]
scan_interval = "100ms"
"""
    path = tmp_path / "node.toml"
    path.write_text(node_toml(tmp_path / "data", extra))
    return path


async def test_restart_resumes_own_in_flight_mail_at_once(tmp_path: Path) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept and never greet: the attempt hangs at the banner

    blackhole = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = blackhole.sockets[0].getsockname()[1]
    sim = Simulator(SimConfig(domains=(domain("inbox.test"),), seed=7))
    await sim.start()
    try:
        route = f'[[delivery.routes]]\ndomain = "*"\nhost = "127.0.0.1"\nport = {port}\n'
        config = _config(tmp_path, sim, route)
        key = await cli_tenant(config)
        async with served(config, key) as (node, api):
            r = await api.post(
                "/v1/messages", json={"from": "a@shop.test", "to": ["ann@inbox.test"], "text": "x"}
            )
            assert r.status_code == 202
            mid = r.json()["id"]
            await wait_for(lambda: held, timeout=5)  # the attempt is on the wire
            await asyncio.to_thread(node.kill)  # SIGKILL
        # Same data dir and node_id, now routed to a working receiver by MX.
        config = _config(tmp_path, sim, "")
        t0 = time.monotonic()
        async with served(config, key) as (node, api):

            async def delivered() -> bool:
                msg = (await api.get(f"/v1/messages/{mid}")).json()
                return bool(msg["recipients"][0]["status"] == "delivered")

            await wait_for(delivered, timeout=6, interval=0.2)
        assert time.monotonic() - t0 < 10
    finally:
        blackhole.close()
        for writer in held:
            writer.close()
        await blackhole.wait_closed()
        await sim.stop()
