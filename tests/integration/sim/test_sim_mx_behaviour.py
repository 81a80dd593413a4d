"""Simulated mail exchangers: acceptance, the report, and behaviour by local part."""

from __future__ import annotations

import asyncio
import smtplib
import time

import pytest

from postline.errors import ConfigError
from postline.sim import DomainSpec, MXHostSpec, Profile

MX = "mx.shop.test"


def shop(**knobs: object) -> DomainSpec:
    return DomainSpec("shop.test", mx=(MXHostSpec(MX),), profile=Profile(**knobs))  # type: ignore[arg-type]


async def test_accepts_and_reports_message_ids_and_duplicates(start_sim, smtp, msg) -> None:
    sim = await start_sim(shop())
    client = await smtp(sim, MX)
    assert client.banner.code == 220
    assert (await client.ehlo()).code == 250
    first = await client.send("a@sender.test", ["ann@shop.test", "bob@Shop.test"], msg("<m1@x>"))
    assert first["data"].code == 250
    again = await client.send("a@sender.test", ["ann@shop.test"], msg("<m1@x>"))
    assert again["data"].code == 250
    other = await client.send("a@sender.test", ["ann@shop.test"], msg("<m2@x>"))
    assert other["data"].code == 250

    report = sim.report()
    assert report.accepted == 4
    assert report.accepted_by_domain == {"shop.test": 4}
    pairs = [(r.message_id, r.recipient) for r in report.records]
    assert pairs == [
        ("<m1@x>", "ann@shop.test"),
        ("<m1@x>", "bob@Shop.test"),
        ("<m1@x>", "ann@shop.test"),
        ("<m2@x>", "ann@shop.test"),
    ]
    assert {r.domain for r in report.records} == {"shop.test"}
    assert {r.host for r in report.records} == {MX}
    assert {r.client_ip for r in report.records} == {"127.0.0.1"}
    assert report.duplicate_count == 1
    assert [(d.message_id, d.recipient, d.count) for d in report.duplicates] == [
        ("<m1@x>", "ann@shop.test", 2)
    ]
    assert report.rejected == 0


async def test_message_id_is_read_from_the_header_block_only(start_sim, smtp) -> None:
    sim = await start_sim(shop())
    client = await smtp(sim, MX)
    await client.ehlo()
    folded = b"Subject: x\r\nMessage-ID:\r\n  <folded@x>\r\n\r\nMessage-ID: <in-body@x>\r\n"
    assert (await client.send("a@sender.test", ["ann@shop.test"], folded))["data"].code == 250
    body_only = b"Subject: y\r\n\r\nMessage-ID: <in-body@x>\r\n"
    assert (await client.send("a@sender.test", ["ann@shop.test"], body_only))["data"].code == 250
    ids = [r.message_id for r in sim.report().records]
    assert ids == ["<folded@x>", ""]


REJECTED_AT_RCPT = [
    ("unknown7", 550, "5.1.1", "Recipient address rejected: User unknown"),
    ("nouser", 550, "5.1.1", "Recipient address rejected: User unknown"),
    ("full.box", 452, "4.2.2", "Mailbox full"),
    ("overquota", 552, "5.2.2", "Mailbox full"),
    ("Disabled-1", 550, "5.2.1", "Mailbox disabled"),
    ("tempfail", 451, "4.3.0", "Temporary failure"),
]


@pytest.mark.parametrize(("local", "code", "enhanced", "words"), REJECTED_AT_RCPT)
async def test_local_part_replies_at_rcpt(start_sim, smtp, local, code, enhanced, words) -> None:
    sim = await start_sim(shop())
    client = await smtp(sim, MX)
    await client.ehlo()
    assert (await client.cmd("MAIL FROM:<a@sender.test>")).code == 250
    for _ in range(2):  # the same answer every time
        reply = await client.cmd(f"RCPT TO:<{local}@shop.test>")
        assert (reply.code, reply.enhanced) == (code, enhanced)
        assert words in reply.text
    ok = await client.cmd("RCPT TO:<plain@shop.test>")
    assert ok.code == 250
    report = sim.report()
    assert report.rejected == 2
    rejection = report.rejections[0]
    assert (rejection.code, rejection.enhanced, rejection.command) == (code, enhanced, "RCPT TO")
    assert rejection.recipient == f"{local}@shop.test"
    assert rejection.domain == "shop.test"
    if local.startswith("unknown"):
        assert reply.text == f"5.1.1 <{local}@shop.test>: Recipient address rejected: User unknown"


async def test_spam_is_rejected_at_the_end_of_data(start_sim, smtp, msg) -> None:
    sim = await start_sim(shop())
    client = await smtp(sim, MX)
    await client.ehlo()
    out = await client.send("a@sender.test", ["spammy@shop.test", "ann@shop.test"], msg("<s@x>"))
    assert [r.code for r in out["rcpt"]] == [250, 250]
    assert (out["data"].code, out["data"].enhanced) == (550, "5.7.1")
    assert "rejected as spam" in out["data"].text
    report = sim.report()
    assert report.accepted == 0
    assert {(j.command, j.message_id) for j in report.rejections} == {("DATA END", "<s@x>")}


async def test_drop_closes_the_first_attempt_and_accepts_the_next(start_sim, smtp, msg) -> None:
    sim = await start_sim(shop())
    client = await smtp(sim, MX)
    await client.ehlo()
    await client.cmd("MAIL FROM:<a@sender.test>")
    assert (await client.cmd("RCPT TO:<drop-in-data@shop.test>")).code == 250
    with pytest.raises(ConnectionError):
        await client.data(msg("<d1@x>"))
    assert sim.report().dropped == 1
    assert sim.report().accepted == 0

    retry = await smtp(sim, MX)
    await retry.ehlo()
    out = await retry.send("a@sender.test", ["drop-in-data@shop.test"], msg("<d1@x>"))
    assert out["data"].code == 250
    with pytest.raises(ConnectionError):  # a new message is dropped on its first attempt
        await retry.send("a@sender.test", ["drop-in-data@shop.test"], msg("<d2@x>"))
    report = sim.report()
    assert [r.message_id for r in report.records] == ["<d1@x>"]
    assert [d.message_id for d in report.drops] == ["<d1@x>", "<d2@x>"]


async def test_slow_recipient_waits_before_the_rcpt_reply(start_sim, smtp) -> None:
    sim = await start_sim(shop(), slow_delay=0.4)
    client = await smtp(sim, MX)
    await client.ehlo()
    await client.cmd("MAIL FROM:<a@sender.test>")
    t0 = time.perf_counter()
    assert (await client.cmd("RCPT TO:<ann@shop.test>")).code == 250
    fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    assert (await client.cmd("RCPT TO:<slowpoke@shop.test>")).code == 250
    slow = time.perf_counter() - t0
    assert slow >= 0.38
    assert fast < 0.2


async def test_greylist_local_part_on_a_domain_that_does_not_greylist(start_sim, smtp) -> None:
    sim = await start_sim(shop(), greylist_delay=0.3)
    client = await smtp(sim, MX)
    await client.ehlo()
    await client.cmd("MAIL FROM:<a@sender.test>")
    first = await client.cmd("RCPT TO:<greylist-me@shop.test>")
    assert (first.code, first.enhanced) == (451, "4.7.1")
    assert first.text == "4.7.1 Greylisted, please try again in 0.3 seconds"
    assert (await client.cmd("RCPT TO:<ann@shop.test>")).code == 250
    await asyncio.sleep(0.35)
    assert (await client.cmd("RCPT TO:<greylist-me@shop.test>")).code == 250


async def test_relaying_for_a_domain_the_host_does_not_serve_is_refused(start_sim, smtp) -> None:
    sim = await start_sim(shop())
    client = await smtp(sim, MX)
    await client.ehlo()
    await client.cmd("MAIL FROM:<a@sender.test>")
    reply = await client.cmd("RCPT TO:<ann@elsewhere.test>")
    assert (reply.code, reply.enhanced) == (554, "5.7.1")
    assert "Relay access denied" in reply.text


async def test_blocklisted_client_gets_550_for_every_recipient(start_sim, smtp) -> None:
    sim = await start_sim(shop(block=True))
    client = await smtp(sim, MX)
    await client.ehlo()
    await client.cmd("MAIL FROM:<a@sender.test>")
    for rcpt in ("ann@shop.test", "bob@shop.test"):
        reply = await client.cmd(f"RCPT TO:<{rcpt}>")
        assert (reply.code, reply.enhanced) == (550, "5.7.1")
        assert reply.text.startswith(
            "5.7.1 Service unavailable; Client host [127.0.0.1] blocked using zen.spamhaus.org"
        )


async def test_block_ips_refuses_only_the_listed_client_addresses(start_sim, smtp, msg) -> None:
    sim = await start_sim(shop(block_ips=("127.0.0.3",)))
    blocked = await smtp(sim, MX, source="127.0.0.3")
    await blocked.ehlo("bad.sender.test")
    await blocked.cmd("MAIL FROM:<a@sender.test>")
    reply = await blocked.cmd("RCPT TO:<ann@shop.test>")
    assert (reply.code, reply.enhanced) == (550, "5.7.1")
    assert "Client host [127.0.0.3] blocked using zen.spamhaus.org" in reply.text
    clean = await smtp(sim, MX, source="127.0.0.4")
    await clean.ehlo("good.sender.test")
    out = await clean.send("a@sender.test", ["ann@shop.test"], msg("<ok@x>"))
    assert out["data"].code == 250
    records = sim.report().records
    assert [(r.client_ip, r.helo) for r in records] == [("127.0.0.4", "good.sender.test")]


def test_block_ips_must_be_addresses() -> None:
    with pytest.raises(ConfigError, match="block_ips"):
        Profile(block_ips=("not-an-ip",))
    assert Profile.from_mapping({"block_ips": ["127.0.0.3"]}).block_ips == ("127.0.0.3",)


async def test_size_is_advertised_and_enforced(start_sim, smtp, msg) -> None:
    sim = await start_sim(shop(max_size=1000))
    client = await smtp(sim, MX)
    ehlo = await client.ehlo()
    assert "SIZE 1000" in [ln[4:] for ln in ehlo.lines]
    declared = await client.cmd("MAIL FROM:<a@sender.test> SIZE=5000")
    assert (declared.code, declared.enhanced) == (552, "5.3.4")
    big = msg("<big@x>", extra="X-Pad: " + "x" * 70 + "\r\n" + " x\r\n" * 500)
    out = await client.send("a@sender.test", ["ann@shop.test"], big)
    assert (out["data"].code, out["data"].enhanced) == (552, "5.3.4")
    small = await client.send("a@sender.test", ["ann@shop.test"], msg("<small@x>"))
    assert small["data"].code == 250
    assert [r.message_id for r in sim.report().records] == ["<small@x>"]
    report = sim.report()
    assert report.rejected_by_code == {"552 5.3.4": 2}
    assert [j.command for j in report.rejections] == ["MAIL FROM", "DATA END"]


async def test_ehlo_extensions_follow_the_profile(start_sim, smtp) -> None:
    on = DomainSpec("on.test", mx=(MXHostSpec("mx.on.test"),))
    off = DomainSpec(
        "off.test", mx=(MXHostSpec("mx.off.test"),), profile=Profile(pipelining=False, tls=False)
    )
    sim = await start_sim(on, off)
    ext_on = [ln[4:] for ln in (await (await smtp(sim, "mx.on.test")).ehlo()).lines]
    ext_off = [ln[4:] for ln in (await (await smtp(sim, "mx.off.test")).ehlo()).lines]
    assert {"PIPELINING", "STARTTLS", "ENHANCEDSTATUSCODES", "8BITMIME"} <= set(ext_on)
    assert "PIPELINING" not in ext_off
    assert "STARTTLS" not in ext_off
    assert not any(e.startswith("AUTH") for e in ext_on + ext_off)


async def test_pipelined_transactions_are_answered_in_order(start_sim, smtp, msg) -> None:
    sim = await start_sim(shop())
    client = await smtp(sim, MX)
    await client.ehlo()
    client.writer.write(
        b"MAIL FROM:<a@sender.test>\r\nRCPT TO:<ann@shop.test>\r\n"
        b"RCPT TO:<unknown@shop.test>\r\nDATA\r\n"
    )
    replies = [await client.reply() for _ in range(4)]
    assert [r.code for r in replies] == [250, 250, 550, 354]
    client.writer.write(msg("<p@x>") + b".\r\n")
    assert (await client.reply()).code == 250
    assert sim.report().accepted == 1


async def test_transient_failures_are_reproducible_with_the_seed(start_sim, smtp, msg) -> None:
    async def outcomes(seed: int) -> list[str]:
        sim = await start_sim(shop(transient_rate=0.5), seed=seed)
        seen = []
        for i in range(16):
            client = await smtp(sim, MX)
            await client.ehlo()
            try:
                out = await client.send("a@sender.test", [f"r{i}@shop.test"], msg(f"<t{i}@x>"))
            except Exception:
                seen.append("closed")
                continue
            last = out.get("data") or out["rcpt"][0]
            seen.append(f"{last.code} {last.enhanced}")
        await sim.stop()
        return seen

    first = await outcomes(7)
    assert first == await outcomes(7)
    assert first != await outcomes(8)
    assert {"451 4.3.0", "421 4.3.2"} & set(first)
    assert "250 2.0.0" in first


async def test_drop_rate_one_drops_every_message(start_sim, smtp, msg) -> None:
    sim = await start_sim(shop(drop_rate=1.0))
    client = await smtp(sim, MX)
    await client.ehlo()
    await client.cmd("MAIL FROM:<a@sender.test>")
    await client.cmd("RCPT TO:<ann@shop.test>")
    with pytest.raises(ConnectionError):
        await client.data(msg("<x@x>"))
    assert sim.report().dropped == 1
    assert sim.report().accepted == 0


async def test_smtplib_in_a_thread_delivers(start_sim) -> None:
    sim = await start_sim(shop())

    def send() -> dict[str, tuple[int, bytes]]:
        with smtplib.SMTP(sim.addresses[MX], sim.smtp_port, timeout=5) as client:
            return client.sendmail(
                "a@sender.test",
                ["ann@shop.test", "full@shop.test"],
                b"Message-ID: <lib@x>\r\nSubject: s\r\n\r\nhi\r\n",
            )

    refused = await asyncio.to_thread(send)
    assert refused == {"full@shop.test": (452, b"4.2.2 Mailbox full")}
    assert [r.recipient for r in sim.report().records] == ["ann@shop.test"]
