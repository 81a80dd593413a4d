"""Provider limits: greylisting, message rates, connection limits, tarpits, dead hosts."""

from __future__ import annotations

import asyncio
import time

import pytest

from postline.sim import DomainSpec, MXHostSpec, Profile

MX = "mx.shop.test"


def shop(**knobs: object) -> DomainSpec:
    return DomainSpec("shop.test", mx=(MXHostSpec(MX),), profile=Profile(**knobs))  # type: ignore[arg-type]


async def test_greylisting_defers_the_first_attempt_then_accepts(start_sim, smtp, msg) -> None:
    sim = await start_sim(shop(greylist=0.3))
    client = await smtp(sim, MX)
    await client.ehlo()
    first = await client.send("a@sender.test", ["ann@shop.test"], msg("<g@x>"))
    reply = first["rcpt"][0]
    assert (reply.code, reply.text) == (451, "4.7.1 Greylisted, please try again in 0.3 seconds")
    too_soon = await client.send("a@sender.test", ["ann@shop.test"], msg("<g@x>"))
    assert too_soon["rcpt"][0].code == 451
    # Another triplet (other sender) is greylisted on its own.
    other = await client.send("b@sender.test", ["ann@shop.test"], msg("<h@x>"))
    assert other["rcpt"][0].code == 451
    await asyncio.sleep(0.35)
    later = await client.send("a@sender.test", ["ann@shop.test"], msg("<g@x>"))
    assert later["data"].code == 250
    report = sim.report()
    assert report.accepted == 1
    assert report.rejected_by_code == {"451 4.7.1": 3}


# style -> (command where the limit bites, code, enhanced, words in the reply, closes)
STYLES = {
    "google": ("data", 421, "4.7.28", "unusual rate of unsolicited mail", True),
    "microsoft": ("rcpt", 451, "4.7.500", "Server busy. Please try again later from [", False),
    "yahoo": ("mail", 421, "4.7.0", "[TSS04] Messages from 127.0.0.1 temporarily deferred", True),
    "apple": ("mail", 450, "4.7.1", "Error: too much mail from 127.0.0.1", False),
    "generic": ("rcpt", 451, "4.7.1", "rate limit exceeded", False),
}


@pytest.mark.parametrize("style", sorted(STYLES))
async def test_rate_limit_replies_in_the_providers_words(start_sim, smtp, msg, style) -> None:
    stage, code, enhanced, words, closes = STYLES[style]
    sim = await start_sim(shop(rate=2, rate_period=60.0, throttle_style=style))
    client = await smtp(sim, MX)
    await client.ehlo()
    for i in range(2):
        out = await client.send("a@sender.test", [f"r{i}@shop.test"], msg(f"<ok{i}@x>"))
        assert out["data"].code == 250, out
    out = await client.send("a@sender.test", ["r9@shop.test"], msg("<over@x>"))
    if stage == "mail":
        reply = out["mail"]
    elif stage == "rcpt":
        reply = out["rcpt"][0]
    else:
        reply = out["data"]
    assert (reply.code, reply.enhanced) == (code, enhanced)
    assert words in reply.text
    if style == "google":
        assert len(reply.lines) > 1 and reply.lines[0].startswith("421-4.7.28")
        assert reply.lines[-1].startswith("421 4.7.28") and reply.text.endswith("- gsmtp")
    assert await client.closed(timeout=2.0 if closes else 0.3) is closes
    report = sim.report()
    assert report.accepted == 2
    assert report.rejections[0].command == {"mail": "MAIL FROM", "rcpt": "RCPT TO"}.get(
        stage, "DATA END"
    )
    assert report.rejections[0].code == code


async def test_rate_limit_counts_each_sending_ip_apart(start_sim, smtp, msg) -> None:
    sim = await start_sim(shop(rate=1, rate_period=60.0))
    one = await smtp(sim, MX, source="127.0.0.1")
    two = await smtp(sim, MX, source="127.0.0.9")
    for client in (one, two):
        await client.ehlo()
        assert (await client.send("a@sender.test", ["x@shop.test"], msg("<a@x>")))[
            "data"
        ].code == 250
    for client in (one, two):
        assert (await client.send("a@sender.test", ["x@shop.test"], msg("<b@x>")))["rcpt"][
            0
        ].code == 451
    assert {r.client_ip for r in sim.report().records} == {"127.0.0.1", "127.0.0.9"}


async def test_rate_window_slides(start_sim, smtp, msg) -> None:
    sim = await start_sim(shop(rate=2, rate_period=0.4))
    client = await smtp(sim, MX)
    await client.ehlo()
    codes = []
    for i in range(3):
        out = await client.send("a@sender.test", ["x@shop.test"], msg(f"<w{i}@x>"))
        codes.append(out["rcpt"][0].code)
    await asyncio.sleep(0.45)
    out = await client.send("a@sender.test", ["x@shop.test"], msg("<w9@x>"))
    codes.append(out["rcpt"][0].code)
    assert codes == [250, 250, 451, 250]
    # The report's peak rate over the limit's own window never exceeds the limit.
    assert sim.report(window=0.4).peak_rate_by_domain["shop.test"] * 0.4 <= 2


async def test_providers_share_counters_across_their_domains_and_hosts(
    start_sim, smtp, msg
) -> None:
    big = Profile(name="big", rate=2, rate_period=60.0, throttle_style="microsoft")
    one = DomainSpec("one.test", mx=(MXHostSpec("mx.one.test"),), profile=big, provider="big")
    two = DomainSpec("two.test", mx=(MXHostSpec("mx.two.test"),), profile=big, provider="big")
    sim = await start_sim(one, two)
    a = await smtp(sim, "mx.one.test")
    b = await smtp(sim, "mx.two.test")
    await a.ehlo()
    await b.ehlo()
    assert (await a.send("s@sender.test", ["x@one.test"], msg("<1@x>")))["data"].code == 250
    assert (await b.send("s@sender.test", ["x@two.test"], msg("<2@x>")))["data"].code == 250
    third = await a.send("s@sender.test", ["x@one.test"], msg("<3@x>"))
    assert third["rcpt"][0].enhanced == "4.7.500"
    assert sim.report().peak_rate_by_provider == {"big": pytest.approx(2.0)}


@pytest.mark.parametrize("style", ["generic", "microsoft", "yahoo", "apple"])
async def test_connection_limit_at_the_banner(start_sim, smtp, style) -> None:
    sim = await start_sim(shop(max_connections=2, throttle_style=style))
    first = await smtp(sim, MX)
    second = await smtp(sim, MX)
    assert first.banner.code == second.banner.code == 220
    third = await smtp(sim, MX)
    assert third.banner.code == 421
    assert third.banner.enhanced in ("4.7.0", "4.3.2")
    assert "connections" in third.banner.text
    assert await third.closed()
    await first.close()
    await asyncio.sleep(0.05)
    fourth = await smtp(sim, MX)
    assert fourth.banner.code == 220
    report = sim.report()
    assert report.connections_by_provider_client["shop.test|127.0.0.1"].peak == 3
    assert report.connections_by_domain["shop.test"].opened == 4
    assert [j.command for j in report.rejections] == ["CONNECT"]


async def test_connection_limit_google_style_answers_at_ehlo(start_sim, smtp) -> None:
    sim = await start_sim(shop(max_connections=1, throttle_style="google"))
    first = await smtp(sim, MX)
    second = await smtp(sim, MX)
    assert second.banner.code == 220
    assert second.banner.text.endswith("- gsmtp")
    reply = await second.ehlo()
    assert (reply.code, reply.enhanced) == (421, "4.7.0")
    assert "Try again later, closing connection. (EHLO)" in reply.text
    assert await second.closed()
    assert (await first.ehlo()).code == 250


async def test_tarpit_delays_the_banner_and_every_reply(start_sim, smtp) -> None:
    slow = DomainSpec("slow.test", mx=(MXHostSpec("mx.slow.test"),), profile=Profile(tarpit=0.3))
    sim = await start_sim(slow, shop())
    t0 = time.perf_counter()
    client = await smtp(sim, "mx.slow.test")
    banner = time.perf_counter() - t0
    t0 = time.perf_counter()
    ehlo = await client.ehlo()
    ehlo_time = time.perf_counter() - t0
    assert ehlo.code == 250 and len(ehlo.lines) > 3  # one delay for the whole reply
    assert banner >= 0.29
    assert 0.29 <= ehlo_time < 0.9
    t0 = time.perf_counter()
    quick = await smtp(sim, MX)
    await quick.ehlo()
    assert time.perf_counter() - t0 < 0.25


async def test_dead_primary_refuses_connections_and_secondary_works(start_sim, smtp) -> None:
    spec = DomainSpec(
        "fallback.test",
        mx=(
            MXHostSpec("mx1.fallback.test", 10, Profile(name="dead", dead=True)),
            MXHostSpec("mx2.fallback.test", 20),
        ),
    )
    sim = await start_sim(spec)
    assert sim.zone.mx["fallback.test"] == [(10, "mx1.fallback.test"), (20, "mx2.fallback.test")]
    assert "mx1.fallback.test" in sim.zone.a
    with pytest.raises(ConnectionRefusedError):
        await smtp(sim, "mx1.fallback.test")
    secondary = await smtp(sim, "mx2.fallback.test")
    assert secondary.banner.code == 220
    assert set(sim.report().connections_by_host) == {"mx2.fallback.test"}
