"""SMTP submission over real sockets against rate limits and quotas: the reply after DATA
carries the enhanced code and a retry hint, and nothing of a refused message is kept."""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from pathlib import Path

from postline.runtime import Node
from postline.store.base import LimitOverrides
from postline.tenants import generate_key, hash_key, key_prefix
from support.node import running_node

MESSAGE = b"From: ann@acme.test\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nhello\r\n"
NO_DELIVERY = "[delivery]\nenabled = false\n"


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def _tenant(node: Node, limits: LimitOverrides) -> tuple[str, str]:
    tenant = await node.store.create_tenant("acme")
    await node.store.set_tenant_limits(tenant.id, limits)
    key = generate_key()
    await node.store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
    return tenant.id, key


def _send(node: Node, key: str, *recipients: list[str]) -> list[tuple[int, bytes]]:
    """One session, one transaction per recipient list; the reply to each DATA."""
    assert node.submission_address is not None
    host, port = node.submission_address
    replies = []
    with smtplib.SMTP(host, port, timeout=10) as s:
        s.ehlo("client.test")
        s.starttls(context=_tls())
        s.ehlo("client.test")
        s.login("acme", key)
        for rcpts in recipients:
            s.mail("ann@acme.test")
            for r in rcpts:
                assert s.rcpt(r)[0] == 250
            replies.append(s.data(MESSAGE))
            s.rset()
    return replies


async def test_over_the_rate_the_reply_is_452_4_7_1_with_a_retry_hint(tmp_path: Path) -> None:
    async with running_node(tmp_path, NO_DELIVERY) as node:
        _, key = await _tenant(node, LimitOverrides(rate=1, burst=3))
        first, second = await asyncio.to_thread(
            _send, node, key, ["a@x.test", "b@x.test", "c@x.test"], ["d@x.test", "e@x.test"]
        )
        assert first[0] == 250, first
        code, text = second
        assert code == 452, second
        assert text.startswith(b"4.7.1 Rate limit reached: the tenant rate limit of 1 recipients")
        assert b"this request has 2 recipient(s); retry in " in text
        assert await node.store.state_counts() == {"queued": 3}
        metrics = (await node.metrics.render()).decode()
        assert 'postline_limit_refusals_total{channel="smtp",kind="rate"} 1.0' in metrics
        assert 'postline_limit_refusals_total{channel="api",kind="rate"} 0.0' in metrics


async def test_over_the_daily_quota_452_and_over_the_monthly_554(tmp_path: Path) -> None:
    async with running_node(tmp_path, NO_DELIVERY) as node:
        tenant_id, key = await _tenant(node, LimitOverrides(daily=2))
        ok, daily = await asyncio.to_thread(
            _send, node, key, ["a@x.test", "b@x.test"], ["c@x.test"]
        )
        assert ok[0] == 250, ok
        code, text = daily
        assert code == 452, daily
        assert text.startswith(b"4.7.1 Daily quota reached: the daily quota of 2 recipients")
        assert b"retry after " in text and b"00:00 UTC" in text

        await node.store.set_tenant_limits(tenant_id, LimitOverrides(daily=10, monthly=2))
        assert node.limiter is not None
        node.limiter.forget()
        (monthly,) = await asyncio.to_thread(_send, node, key, ["c@x.test"])
        code, text = monthly
        assert code == 554, monthly
        assert text.startswith(b"5.7.0 Monthly quota reached: the monthly quota of 2 recipients")
        assert await node.store.state_counts() == {"queued": 2}
        metrics = (await node.metrics.render()).decode()
        for kind in ("daily", "monthly"):
            assert f'postline_limit_refusals_total{{channel="smtp",kind="{kind}"}} 1.0' in metrics
