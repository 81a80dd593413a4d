"""The node's log tells what happened to mail: one line per delivery, deferral and
bounce (message id, the recipient's domain, the reply, the MX host), and a summary line
when the node starts and when it stops."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from postline.sim.profiles import Profile
from support.e2e import domain, internet


def _lines(caplog: pytest.LogCaptureFixture, action: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "action", None) == action]


async def test_outcomes_start_and_stop_are_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="postline")
    grey = domain("grey.test", Profile(name="grey", greylist=1.5))
    async with internet(tmp_path, [grey, domain("ok.test")]) as net:
        [ready] = _lines(caplog, "node.ready")
        message = ready.getMessage()
        assert message.startswith("node test-node ready: api 127.0.0.1:")
        assert ", submission 127.0.0.1:" in message
        assert "; worker 1 of 1; store sqlite " in message
        assert message.endswith("; delivery on")
        sent = await net.send(["ann@grey.test", "bob@ok.test", "unknown@ok.test"])
        assert await net.settle(3) == {"delivered": 2, "bounced": 1}
        mid = sent["id"]
    delivered = {getattr(r, "domain", None): r for r in _lines(caplog, "deliver.delivered")}
    assert set(delivered) == {"grey.test", "ok.test"}
    ok = delivered["ok.test"]
    fields = [getattr(ok, f, None) for f in ("message_id", "mx", "code", "enhanced")]
    assert fields == [mid, "mx1.ok.test", 250, "2.0.0"]
    assert ok.getMessage().startswith(
        f"message {mid} delivered to ok.test via mx1.ok.test: 250 2.0.0 "
    )
    deferred = _lines(caplog, "deliver.deferred")[0]  # greylisted (maybe twice)
    assert deferred.levelno == logging.INFO
    assert deferred.getMessage().startswith(
        f"message {mid} deferred to grey.test via mx1.grey.test: 451 4.7.1 "
    )
    assert "; retry in " in deferred.getMessage()
    [bounced] = _lines(caplog, "deliver.bounced")
    assert bounced.getMessage() == (
        f"message {mid} bounced to ok.test via mx1.ok.test: 550 5.1.1 "
        "<***@ok.test>: Recipient address rejected: User unknown"
    )
    # The domain only: no recipient address in any line.
    for r in caplog.records:
        assert "bob@" not in r.getMessage() and "unknown@" not in r.getMessage()
    [stopped] = _lines(caplog, "node.stopped")
    assert stopped.getMessage().startswith("node test-node stopped in ")
    assert "outcomes written" in stopped.getMessage()
    assert "recipients handed back" in stopped.getMessage()
