"""The recorder's measures: peak rates, peak connections, duplicates, JSON round trip."""

from __future__ import annotations

import asyncio

import pytest

from postline.sim import DomainSpec, MXHostSpec, Recorder, SimReport, peak_rate_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _accept(rec: Recorder, clock: Clock, at: float, domain: str, provider: str = "p") -> None:
    clock.now = at
    rec.accepted(f"<{at}@x>", f"r@{domain}", domain, "mx.h.test", provider, "127.0.0.1")


def test_peak_rate_over_a_sliding_window() -> None:
    clock = Clock()
    rec = Recorder(clock)
    # Three messages in [0.5, 1.4] fit one window of 1 s; no fixed one-second bucket
    # holds more than two of them.
    for t in (0.0, 0.5, 0.9, 1.4, 3.0):
        _accept(rec, clock, 1000.0 + t, "a.test")
    _accept(rec, clock, 1010.0, "b.test")
    assert rec.peak_rate("a.test", window=1.0) == 3.0
    assert rec.peak_rate("a.test", window=0.5) == pytest.approx(2 / 0.5)
    assert rec.peak_rate("a.test", window=10.0) == pytest.approx(0.5)
    assert rec.peak_rate("b.test") == 1.0
    assert rec.peak_rate("none.test") == 0.0
    assert rec.peak_provider_rate("p", window=20.0) == pytest.approx(6 / 20)
    # The window is half-open: messages exactly one window apart are not together.
    assert peak_rate_of([0.0, 1.0, 2.0], window=1.0) == 1.0
    assert peak_rate_of([2.0, 0.0, 0.99], window=1.0) == 2.0  # order does not matter
    with pytest.raises(ValueError):
        peak_rate_of([1.0], window=0)


def test_peak_connections_per_domain_host_provider_and_client() -> None:
    rec = Recorder(Clock())
    a = rec.connection_opened("mx1.g.test", "g", "127.0.0.1", ["one.test"])
    b = rec.connection_opened("mx2.g.test", "g", "127.0.0.1")
    c = rec.connection_opened("mx1.g.test", "g", "127.0.0.9")
    rec.connection_domain(b, "two.test")
    rec.connection_domain(b, "two.test")  # once per connection
    rec.connection_closed(a)
    rec.connection_closed(a)  # idempotent
    d = rec.connection_opened("mx1.g.test", "g", "127.0.0.1", ["one.test"])
    rec.connection_domain(d, "two.test")
    assert rec.peak_connections("provider", "g") == 3
    assert rec.peak_connections("host", "mx1.g.test") == 2
    assert rec.peak_connections("client", "127.0.0.1") == 2
    assert rec.peak_connections("provider_client", "g|127.0.0.9") == 1
    assert rec.peak_connections("domain", "one.test") == 1
    assert rec.peak_connections("domain", "two.test") == 2
    assert rec.connections_opened("domain", "one.test") == 2
    assert rec.open_connections() == 3
    for handle in (b, c, d):
        rec.connection_closed(handle)
    assert rec.open_connections() == 0
    report = rec.report()
    assert report.connections == 4
    assert report.connections_by_provider["g"].peak == 3


def test_duplicates_and_json_round_trip() -> None:
    clock = Clock()
    rec = Recorder(clock)
    for rcpt in ("a@d.test", "a@d.test", "a@d.test", "b@d.test"):
        rec.accepted("<m@x>", rcpt, "d.test", "mx.d.test", "d.test", "127.0.0.1")
    rec.accepted("", "a@d.test", "d.test", "mx.d.test", "d.test", "127.0.0.1")
    rec.accepted("", "a@d.test", "d.test", "mx.d.test", "d.test", "127.0.0.1")
    rec.rejected(
        "421-4.7.28 first line\r\n421-4.7.28 second\r\n421 4.7.28 third - gsmtp",
        "DATA END",
        "mx.d.test",
        "d.test",
        "127.0.0.1",
        recipient="c@d.test",
        domain="d.test",
    )
    rec.rejected("250 2.0.0 is not a rejection code but parses", "X", "h", "p", "ip")
    rec.dropped("<z@x>", ["a@d.test"], "mx.d.test", "d.test", "127.0.0.1")
    handle = rec.connection_opened("mx.d.test", "d.test", "127.0.0.1", ["d.test"])
    rec.connection_closed(handle)
    assert rec.duplicate_count() == 2
    assert [(d.recipient, d.count) for d in rec.duplicates()] == [("a@d.test", 3)]

    report = rec.report()
    assert report.rejections[0].text == "first line second third - gsmtp"
    assert report.rejections[0].enhanced == "4.7.28"
    assert report.rejected_by_code == {"250 2.0.0": 1, "421 4.7.28": 1}
    back = SimReport.from_json(report.to_json())
    assert back == report
    summary = rec.report(details=False)
    assert summary.records == [] and summary.accepted == 6 and summary.duplicate_count == 2


def test_reset_forgets_records_but_keeps_open_connections() -> None:
    rec = Recorder(Clock())
    handle = rec.connection_opened("mx.d.test", "d.test", "127.0.0.1", ["d.test"])
    rec.accepted("<m@x>", "a@d.test", "d.test", "mx.d.test", "d.test", "127.0.0.1")
    rec.reset()
    assert rec.report().accepted == 0
    assert rec.open_connections("domain", "d.test") == 1
    assert rec.connections_opened("domain", "d.test") == 0
    rec.connection_closed(handle)
    assert rec.open_connections("domain", "d.test") == 0


async def test_live_peak_connections_and_rate(start_sim, smtp, msg) -> None:
    sim = await start_sim(DomainSpec("shop.test", mx=(MXHostSpec("mx.shop.test"),)))
    clients = [await smtp(sim, "mx.shop.test") for _ in range(3)]
    for client in clients:
        await client.ehlo()
    for i, client in enumerate(clients):
        out = await client.send("a@sender.test", ["x@shop.test"], msg(f"<c{i}@x>"))
        assert out["data"].code == 250
    for client in clients:
        await client.close()
    await asyncio.sleep(0.05)
    again = await smtp(sim, "mx.shop.test")
    assert again.banner.code == 220
    report = sim.report(window=30.0)
    assert report.connections_by_domain["shop.test"].peak == 3
    assert report.connections_by_domain["shop.test"].opened == 4
    assert report.connections_by_host["mx.shop.test"].peak == 3
    assert report.peak_rate_by_domain["shop.test"] == pytest.approx(3 / 30.0)
    assert sim.recorder.open_connections("host", "mx.shop.test") == 1
