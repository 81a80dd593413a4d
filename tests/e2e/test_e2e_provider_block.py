"""A destination that blocklists one source: its mail moves to the other, none bounces.

The sim's ``blocky.test`` answers ``550 5.7.1 ... Client host [127.0.0.2] blocked using
zen.spamhaus.org`` to connections from 127.0.0.2 only (``block_ips``) and accepts mail
from 127.0.0.3. The pool has both addresses, weighted alike. Every recipient refused
that way is deferred (``retry_elsewhere``), not bounced, because the pool has another
source; its retry avoids the refused source. After ``suspend_after`` (3) block replies
the path (ip-a, blocky) is suspended for an hour and every message leaves from ip-b. A
domain that does not block keeps getting mail from both.
"""

from __future__ import annotations

from pathlib import Path

from postline.sim.profiles import Profile
from support.e2e import FAST_RETRY, domain, internet

POOL = """
[[delivery.sources]]
name = "ip-a"
address = "127.0.0.2"
[[delivery.sources]]
name = "ip-b"
address = "127.0.0.3"
"""

BLOCKS_A = Profile(name="blocks-a", block_ips=("127.0.0.2",))
# Retries of one domain due at different moments are found by the queue scan.
QUICK_SCAN = FAST_RETRY.replace('scan_interval = "15s"', 'scan_interval = "1s"')


async def test_a_blocked_source_is_suspended_and_its_mail_moves(tmp_path: Path) -> None:
    domains = [domain("blocky.test", BLOCKS_A), domain("clean.test")]
    async with internet(tmp_path, domains, delivery_extra=POOL, node_extra=QUICK_SCAN) as net:
        await net.send_many([f"user{i}@blocky.test" for i in range(40)])
        await net.send_many([f"user{i}@clean.test" for i in range(200)])
        assert await net.settle(240, timeout=60) == {"delivered": 240}

        report = net.sim.report()
        blocky = [r for r in report.records if r.domain == "blocky.test"]
        clean = [r for r in report.records if r.domain == "clean.test"]
        assert {r.client_ip for r in blocky} == {"127.0.0.3"}
        assert len({r.recipient for r in blocky}) == 40
        assert {r.client_ip for r in clean} == {"127.0.0.2", "127.0.0.3"}
        assert report.duplicate_count == 0
        refused = [j for j in report.rejections if j.domain == "blocky.test"]
        assert refused
        assert {j.client_ip for j in refused} == {"127.0.0.2"}

        deferred = await net.events(type="deferred")
        assert deferred
        assert {e["data"]["category"] for e in deferred} == {"spam_block"}
        assert all(e["data"]["retry_elsewhere"] for e in deferred)
        assert {e["data"]["source"] for e in deferred} == {"ip-a"}
        assert not await net.events(type="bounced")

        engine = net.node.engine
        assert engine is not None
        state = {s["name"]: s for s in await engine.sources_state()}
        (block,) = state["ip-a"]["blocked"]
        assert block["provider"] == "default:site=mx1.blocky.test"
        assert block["for_seconds"] > 3000
        assert state["ip-b"]["blocked"] == []
        metrics = (await net.api.get("/metrics")).text
        assert (
            'postline_source_blocked_seconds{provider="default:site=mx1.blocky.test",source="ip-a"}'
            in metrics
        )
