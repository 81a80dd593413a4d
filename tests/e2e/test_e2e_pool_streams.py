"""Streams choose pools, pools choose source addresses, and the receiver sees them.

Three sources on loopback addresses, each with its own EHLO name: transactional mail
leaves from 127.0.0.2, marketing from 127.0.0.3, and a second tenant with a dedicated
pool always from 127.0.0.4, whatever its stream. The sim records the client address and
EHLO name of every accepted message; the events name the source and local address.
"""

from __future__ import annotations

from pathlib import Path

from support.e2e import domain, internet
from support.node import add_tenant, api_client

POOLS = """
[[delivery.sources]]
name = "ip-tx"
address = "127.0.0.2"
ehlo = "tx.postline.test"
[[delivery.sources]]
name = "ip-mkt"
address = "127.0.0.3"
ehlo = "mkt.postline.test"
[[delivery.sources]]
name = "ip-own"
address = "127.0.0.4"
ehlo = "own.postline.test"
[[delivery.pools]]
name = "tx"
sources = ["ip-tx"]
[[delivery.pools]]
name = "bulk"
sources = ["ip-mkt"]
[[delivery.pools]]
name = "globex"
sources = ["ip-own"]
tenant = "globex"
[delivery.streams]
transactional = "tx"
marketing = "bulk"
"*" = "tx"
"""


async def test_streams_pools_and_a_dedicated_tenant_pool(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("shop.test")], delivery_extra=POOLS) as net:
        for i in range(10):
            await net.send(f"tx{i}@shop.test")
            await net.send(f"mkt{i}@shop.test", stream="marketing")
            await net.send(f"other{i}@shop.test", stream="receipts")  # '*' → tx
        key = await add_tenant(net.node, "globex")
        async with api_client(net.node, key) as globex:
            for i, stream in enumerate(["transactional", "marketing"] * 5):
                body = {
                    "from": "sender@postline.test",
                    "to": [f"own{i}@shop.test"],
                    "subject": "test",
                    "text": "hello",
                    "stream": stream,
                }
                r = await globex.post("/v1/messages", json=body)
                assert r.status_code == 202, r.text
        assert await net.settle(40) == {"delivered": 40}

        seen = {(r.recipient[:2], r.client_ip, r.helo) for r in net.sim.report().records}
        assert seen == {
            ("tx", "127.0.0.2", "tx.postline.test"),
            ("ot", "127.0.0.2", "tx.postline.test"),
            ("mk", "127.0.0.3", "mkt.postline.test"),
            ("ow", "127.0.0.4", "own.postline.test"),
        }
        delivered = await net.events(type="delivered")
        by_source = {
            (e["recipient"][:2], e["data"]["source"], e["data"]["local_ip"]) for e in delivered
        }
        assert by_source == {
            ("tx", "ip-tx", "127.0.0.2"),
            ("ot", "ip-tx", "127.0.0.2"),
            ("mk", "ip-mkt", "127.0.0.3"),
        }

        engine = net.node.engine
        assert engine is not None
        state = {s["name"]: s for s in await engine.sources_state()}
        assert state["ip-own"]["pools"] == ["globex"]
        assert state["ip-tx"]["warmup"] is None

        # Each tenant sees the shared pools and only its own dedicated one.
        acme = {p["name"]: p for p in (await net.api.get("/v1/ip-pools")).json()["pools"]}
        assert acme.keys() == {"tx", "bulk"}
        assert acme["bulk"]["streams"] == ["marketing"]
        assert acme["tx"]["streams"] == ["*", "transactional"]
        async with api_client(net.node, key) as globex:
            theirs = {p["name"]: p for p in (await globex.get("/v1/ip-pools")).json()["pools"]}
        assert theirs.keys() == {"tx", "bulk", "globex"}
        assert theirs["globex"]["dedicated"] is True
        assert [s["address"] for s in theirs["globex"]["sources"]] == ["127.0.0.4"]
