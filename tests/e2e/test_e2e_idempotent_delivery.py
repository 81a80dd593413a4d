"""Idempotency end to end: ten concurrent POSTs with one Idempotency-Key queue and
deliver one message; the same key with another body is refused and delivers nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from support.e2e import domain, internet

BODY = {
    "from": "sender@postline.test",
    "to": ["ann@idem.test", "bob@idem.test"],
    "subject": "once",
    "text": "exactly once",
}


async def test_concurrent_retries_deliver_one_message(tmp_path: Path) -> None:
    async with internet(tmp_path, [domain("idem.test")]) as net:
        headers = {"Idempotency-Key": "order-4711"}

        async def post() -> httpx.Response:
            return await net.api.post("/v1/messages", json=BODY, headers=headers)

        replies = await asyncio.gather(*(post() for _ in range(10)))
        assert [r.status_code for r in replies] == [202] * 10, [r.text for r in replies]
        bodies = [r.json() for r in replies]
        assert all(b == bodies[0] for b in bodies)
        replayed = [r.headers.get("Idempotent-Replayed") for r in replies]
        assert replayed.count(None) == 1  # one request queued, nine were answered from it
        assert replayed.count("true") == 9
        first = bodies[0]

        counts = await net.settle(2, timeout=10)
        assert counts == {"delivered": 2}
        accepted = await net.events(type="accepted")
        assert len(accepted) == 2
        assert {e["message_id"] for e in accepted} == {first["id"]}
        report = net.sim.report()
        assert report.accepted == 2
        assert report.duplicate_count == 0
        assert sorted(report.accepted_pairs()) == [
            (first["message_id"], "ann@idem.test"),
            (first["message_id"], "bob@idem.test"),
        ]

        # The same key with another body: a conflict, and nothing new anywhere.
        other = {**BODY, "subject": "twice?"}
        r = await net.api.post("/v1/messages", json=other, headers=headers)
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert problem["status"] == 409
        assert problem["detail"] and problem["fix"]
        # The original body is still answered from the key, unchanged.
        again = await net.api.post("/v1/messages", json=BODY, headers=headers)
        assert again.status_code == 202
        assert again.json() == first
        assert again.headers["Idempotent-Replayed"] == "true"

        await asyncio.sleep(1.0)
        assert await net.counts() == {"delivered": 2}
        assert len(await net.events(type="accepted")) == 2
        report = net.sim.report()
        assert report.accepted == 2
        assert report.duplicate_count == 0
