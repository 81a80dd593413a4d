"""A new user's first hour: from an empty directory, ``postline init`` with a smarthost,
``tenant create`` and ``serve`` on the configuration it wrote, one POST, and the message
arrives at the relay (a recording sink on loopback)."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from postline.sim.sink import Sink
from support.node import POSTLINE, cli_tenant, free_port, served, wait_for

pytestmark = pytest.mark.slow


def _postline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTLINE, *args], capture_output=True, text=True, timeout=60, check=False
    )


async def test_init_then_serve_delivers_to_the_smarthost(tmp_path: Path) -> None:
    sink = Sink()
    _, sink_port = await sink.start()
    directory = tmp_path / "node"
    try:
        init = await asyncio.to_thread(
            _postline,
            "init",
            str(directory),
            "--smarthost",
            f"127.0.0.1:{sink_port}",
            "--api",
            f"127.0.0.1:{free_port()}",
            "--submission",
            f"127.0.0.1:{free_port()}",
            "--hostname",
            "node.postline.test",
        )
        assert init.returncode == 0, init.stderr
        config = directory / "node.toml"
        assert f"--config {config}" in init.stdout  # the next commands name the file
        assert "tenant create" in init.stdout and "curl" in init.stdout

        check = await asyncio.to_thread(_postline, "config", "check", "--config", str(config))
        assert check.returncode == 0, check.stderr
        assert "configuration OK" in check.stderr

        key = await cli_tenant(config, "acme")
        async with served(config, key) as (_node, api):
            r = await api.post(
                "/v1/messages",
                json={
                    "from": "Shop <orders@shop.example>",
                    "to": ["ann@example.com"],
                    "subject": "Your order",
                    "text": "It shipped.",
                },
            )
            assert r.status_code == 202, r.text
            message_id = r.json()["message_id"]

            async def delivered() -> bool:
                view = (await api.get(f"/v1/messages/{r.json()['id']}")).json()
                return bool(view["recipients"][0]["status"] == "delivered")

            await wait_for(delivered, timeout=30)
            assert dict(sink.stats.pairs) == {(message_id, "ann@example.com"): 1}
        # the state the node made lives where init said, outside any git work tree
        assert (directory / "data" / "tls-selfsigned.crt").exists()
        assert (directory / "data" / "postline.db").exists()
    finally:
        await sink.stop()
