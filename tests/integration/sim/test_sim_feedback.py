"""Feedback from simulated domains: late bounces, ARF complaints and auto-replies.

A small SMTP server on loopback stands in for postline's inbound server and keeps what
it receives; every test checks the envelope the feedback arrived with, that it names the
original recipient and Message-ID, and that ``postline.bounce.parse.analyze`` reads it
as the right kind about the right recipient.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from postline.bounce.parse import analyze
from postline.bounce.verp import return_path
from postline.errors import ConfigError
from postline.sim import DomainSpec, Profile, SimConfig, SimReport, Simulator
from postline.sim.control import ControlServer
from postline.sim.notices import Original, auto_reply, complaint, late_bounce
from postline.sim.profiles import AUTO_REPLY_FORMATS, BOUNCE_FORMATS, COMPLAINT_FORMATS

SECRET = b"test-verp-secret"
BOUNCE_DOMAIN = "bounces.sender.test"
FAST = {"feedback_retry_delay": 0.05}

# The fixtures of conftest.py: ``start_sim(domain, **config)`` and ``smtp(sim, host)``.
StartSim = Callable[..., Awaitable[Simulator]]
Connect = Callable[..., Awaitable[Any]]


# --- the stand-in inbound server -------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    peer: str
    helo: str


@dataclass
class Sink:
    """An SMTP server that keeps every message; ``data_replies`` / ``rcpt_replies`` are
    answers given (in order) instead of accepting, e.g. ``451 ...`` to test retries."""

    host: str = "127.0.0.1"
    port: int = 0
    received: list[Received] = field(default_factory=list)
    data_replies: list[str] = field(default_factory=list)
    rcpt_replies: list[str] = field(default_factory=list)
    refused: int = 0
    server: asyncio.Server | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.rcpt_replies:
            self.refused += 1
            return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.data_replies:
            self.refused += 1
            return self.data_replies.pop(0)
        assert envelope.mail_from is not None
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                envelope.original_content or b"",
                peer,
                session.host_name or "",
            )
        )
        self.changed.set()
        return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(
            lambda: SMTP(self, hostname="inbound.sender.test", loop=loop),
            self.host,
            self.port,
        )
        self.port = int(self.server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        """Wait until ``count`` messages have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.received) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.received


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    s = Sink()
    await s.start()
    yield s
    await s.stop()


# --- helpers -------------------------------------------------------------------------------


def verp(n: int) -> str:
    """A signed VERP envelope sender like postline's, one per message."""
    return return_path(f"01JQ{n:022d}", 0, SECRET, BOUNCE_DOMAIN)


def mail(n: int, rcpts: list[str], subject: str = "Your order") -> bytes:
    return (
        f"From: Shop <orders@sender.test>\r\nTo: {', '.join(rcpts)}\r\n"
        f"Subject: {subject} {n}\r\nMessage-ID: <m{n}@sender.test>\r\n"
        f"X-Postline-ID: 01JQPL{n:020d}\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\nHello.\r\n.leading dot\r\n"
    ).encode()


async def deliver(
    smtp: Connect, sim: Simulator, host: str, messages: list[tuple[int, list[str]]]
) -> None:
    """Send each ``(n, recipients)`` on one connection; every recipient must be taken."""
    client = await smtp(sim, host)
    await client.ehlo()
    for n, rcpts in messages:
        out = await client.send(verp(n), rcpts, mail(n, rcpts))
        assert out["data"].code == 250, out


async def arrived(sim: Simulator, sink: Sink, count: int) -> list[Received]:
    """Wait for ``count`` messages at the sink and for the simulator to record them."""
    received = await sink.wait_for(count)
    assert await sim.settle_feedback(5)
    return received


def profile(**knobs: object) -> Profile:
    knobs.setdefault("feedback_delay", 0.05)
    return Profile(name="fb", **knobs)  # type: ignore[arg-type]


StartFb = Callable[..., Awaitable[Simulator]]


@pytest.fixture
def start_fb(start_sim: StartSim, sink: Sink) -> StartFb:
    """``await start_fb(**profile_knobs, sim_key=...)``: a simulator with one domain
    ``fb.test`` whose feedback goes to the sink."""

    async def start(*, seed: int = 1, **knobs: object) -> Simulator:
        sim_keys = {k: knobs.pop(k) for k in ("fbl_address", "feedback_tries") if k in knobs}
        return await start_sim(
            DomainSpec("fb.test", profile=profile(**knobs)),
            feedback_to=sink.address,
            seed=seed,
            **FAST,
            **sim_keys,
        )

    return start


# --- every format, built directly ---------------------------------------------------------


def _original(complete: bool = True) -> Original:
    content = mail(7, ["ann.lee@fb.test"])
    return Original(
        mail_from=verp(7),
        recipient="ann.lee@fb.test",
        message_id="<m7@sender.test>",
        content=content if complete else content.split(b"\r\n\r\n")[0] + b"\r\n",
        complete=complete,
        client_ip="127.0.0.1",
        host="mx.fb.test",
        host_address="127.0.0.2",
        arrival=1_767_225_600.0,
    )


@pytest.mark.parametrize("complete", [True, False])
@pytest.mark.parametrize("fmt", BOUNCE_FORMATS)
@pytest.mark.parametrize(
    ("reason", "soft", "category", "hard"),
    [
        ("user-unknown", False, "invalid_recipient", True),
        ("mailbox-full", False, "mailbox_full", False),
        ("mailbox-full", True, "mailbox_full", False),
    ],
)
def test_every_bounce_format_and_reason_reads_back(
    fmt: str, reason: str, soft: bool, category: str, hard: bool, complete: bool
) -> None:
    notice = late_bounce(fmt, _original(complete), reason, soft=soft, now=1_767_229_200.0)  # type: ignore[arg-type]
    assert (notice.kind, notice.mail_from, notice.rcpt_to) == ("dsn", "", verp(7))
    report = analyze(notice.data)
    assert report.kind == "dsn"
    (result,) = report.results
    assert result.recipient == "ann.lee@fb.test"
    assert result.status == notice.status
    assert (result.category, result.hard, result.action) == (category, hard, "failed")
    assert report.message_id == "<m7@sender.test>"
    assert report.postline_id == "01JQPL00000000000000000007"
    for header in (b"From: Shop <orders@sender.test>", b"Subject: Your order 7", b"To: ann.lee"):
        assert header in notice.data
    # Built from the same input, a notice is the same bytes.
    again = late_bounce(fmt, _original(complete), reason, soft=soft, now=1_767_229_200.0)  # type: ignore[arg-type]
    assert again.data == notice.data


@pytest.mark.parametrize("complete", [True, False])
@pytest.mark.parametrize("fmt", COMPLAINT_FORMATS)
def test_every_complaint_format_reads_back(fmt: str, complete: bool) -> None:
    notice = complaint(fmt, _original(complete), "fbl@sender.test", now=1_767_229_200.0)
    report = analyze(notice.data)
    assert report.kind == "arf"
    assert [r.recipient for r in report.results] == ["ann.lee@fb.test"]
    assert report.message_id == "<m7@sender.test>"
    assert report.postline_id == "01JQPL00000000000000000007"
    assert report.feedback is not None and report.feedback.version == "1"
    assert report.feedback.recipients == ("ann.lee@fb.test",)
    assert report.feedback.arrival_date and report.feedback.source_ip == "127.0.0.1"


@pytest.mark.parametrize("fmt", AUTO_REPLY_FORMATS)
def test_every_auto_reply_format_reads_back(fmt: str) -> None:
    notice = auto_reply(fmt, _original(), now=1_767_229_200.0)
    assert (notice.kind, notice.mail_from, notice.rcpt_to) == ("autoreply", "", verp(7))
    report = analyze(notice.data)
    assert report.kind == "autoreply"
    assert [r.recipient for r in report.results] == ["ann.lee@fb.test"]
    assert b"In-Reply-To: <m7@sender.test>" in notice.data
    assert b"References: <m7@sender.test>" in notice.data


# --- late bounces -----------------------------------------------------------------------------


async def test_late_bounces_in_every_format_reach_the_envelope_sender(
    start_fb: StartFb, sink: Sink, smtp: Connect
) -> None:
    sim = await start_fb(late_bounce_rate=1.0, mailbox_full_share=0.0)
    messages = [(n, [f"user{n}@fb.test"]) for n in range(len(BOUNCE_FORMATS))]
    await deliver(smtp, sim, "mx.fb.test", messages)
    received = await arrived(sim, sink, len(messages))

    records = sim.recorder.feedback_records()
    assert [r.format for r in records] == list(BOUNCE_FORMATS)  # taken in turn
    by_rcpt = {r.recipient: r for r in records}
    mx_address = sim.addresses["mx.fb.test"]
    for got in received:
        # RFC 3464: a DSN has the null reverse-path and goes to the original envelope sender.
        assert got.mail_from == "<>"
        assert len(got.rcpt_tos) == 1
        report = analyze(got.data)
        assert report.kind == "dsn", got.data.decode()
        (result,) = report.results
        rcpt = result.recipient
        assert rcpt is not None
        n = int(rcpt.removeprefix("user").partition("@")[0])
        assert got.rcpt_tos == [verp(n)]
        assert rcpt.encode() in got.data and f"<m{n}@sender.test>".encode() in got.data
        assert report.message_id == f"<m{n}@sender.test>"
        assert report.postline_id == f"01JQPL{n:020d}"
        assert result.failed and result.hard
        assert result.category == "invalid_recipient"
        record = by_rcpt[rcpt]
        assert (
            result.status == record.status == ("5.1.10" if record.format == "exchange" else "5.1.1")
        )
        assert record.kind == "dsn" and record.reason == "user-unknown"
        assert record.state == "sent" and record.attempts == 1
        assert record.reply.startswith("250 2.0.0 Ok: queued as Q")
        assert record.mail_from == verp(n) and record.message_id == f"<m{n}@sender.test>"
        assert record.feedback_from == "" and record.feedback_to == verp(n)
        assert record.target == sink.address
        # Sent from the host that accepted the message, which names itself in EHLO.
        assert got.peer == mx_address and got.helo == "mx.fb.test"
    subjects = b"\n".join(g.data for g in received)
    for marker in (
        b"Undelivered Mail Returned to Sender",  # Postfix
        b"Mail delivery failed: returning message to sender",  # Exim
        b"Hi. This is the qmail-send program at mx.fb.test.",  # qmail
        b"Delivery has failed to these recipients or groups:",  # Exchange
        b"Delivery Status Notification (Failure)",  # Gmail
        b"RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
        b"Sorry, no mailbox here by that name. (#5.1.1)",
        b"The email account that you tried to reach does not exist.",
    ):
        assert marker in subjects


async def test_mailbox_full_bounces_are_soft(start_fb: StartFb, sink: Sink, smtp: Connect) -> None:
    sim = await start_fb(late_bounce_rate=1.0, mailbox_full_share=1.0)
    messages = [(n, [f"box{n}@fb.test"]) for n in range(10)]
    await deliver(smtp, sim, "mx.fb.test", messages)
    received = await arrived(sim, sink, len(messages))
    records = {r.recipient: r for r in sim.recorder.feedback_records()}
    statuses = set()
    for got in received:
        report = analyze(got.data)
        assert report.kind == "dsn"
        (result,) = report.results
        assert result.recipient is not None
        record = records[result.recipient]
        assert record.reason == "mailbox-full"
        assert result.status == record.status
        assert result.category == "mailbox_full" and not result.hard
        statuses.add(record.status)
    assert statuses == {"5.2.2", "4.2.2"}


async def test_reasons_are_mixed_by_share(start_fb: StartFb, sink: Sink, smtp: Connect) -> None:
    sim = await start_fb(late_bounce_rate=1.0, mailbox_full_share=0.3, bounce_formats=["postfix"])
    messages = [(n, [f"mix{n}@fb.test"]) for n in range(40)]
    await deliver(smtp, sim, "mx.fb.test", messages)
    await arrived(sim, sink, len(messages))
    reasons = [r.reason for r in sim.recorder.feedback_records()]
    full = reasons.count("mailbox-full")
    assert 3 <= full <= 25 and reasons.count("user-unknown") == 40 - full
    assert {r.format for r in sim.recorder.feedback_records()} == {"postfix"}


# --- complaints -------------------------------------------------------------------------------


async def test_complaints_go_to_the_fbl_address(
    start_fb: StartFb, sink: Sink, smtp: Connect
) -> None:
    fbl = "fbl@sender.test"
    sim = await start_fb(complaint_rate=1.0, fbl_address=fbl)
    messages = [(n, [f"reader{n}@fb.test"]) for n in range(len(COMPLAINT_FORMATS))]
    await deliver(smtp, sim, "mx.fb.test", messages)
    received = await arrived(sim, sink, len(messages))
    records = {r.recipient: r for r in sim.recorder.feedback_records()}
    assert sorted(r.format for r in records.values()) == sorted(COMPLAINT_FORMATS)
    for got in received:
        assert got.rcpt_tos == [fbl]
        # The feedback loop's own address, never the null reverse-path.
        assert got.mail_from.endswith(("@fb.test", ".fb.test"))
        assert b"report-type=feedback-report" in got.data
        assert b"Feedback-Type: abuse" in got.data and b"Version: 1" in got.data
        report = analyze(got.data)
        assert report.kind == "arf", got.data.decode()
        (result,) = report.results
        assert result.recipient is not None and result.action == "complained"
        n = int(result.recipient.removeprefix("reader").partition("@")[0])
        assert report.message_id == f"<m{n}@sender.test>"
        assert report.postline_id == f"01JQPL{n:020d}"
        assert report.feedback is not None
        assert report.feedback.feedback_type == "abuse"
        assert report.feedback.original_mail_from == verp(n)
        assert report.feedback.reported_domain == "sender.test"
        assert report.feedback.user_agent
        record = records[result.recipient]
        assert record.kind == "arf" and record.reason == "abuse" and record.state == "sent"
        assert record.feedback_to == fbl and record.feedback_from == got.mail_from
        assert record.mail_from == verp(n)
    agents = b"\n".join(g.data for g in received)
    assert b"User-Agent: Yahoo!-Mail-Feedback/2.0" in agents
    assert b"User-Agent: Hotmail FBL" in agents
    assert b"X-HmXmrOriginalRecipient:" in agents
    assert b"Content-Type: text/rfc822-headers" in agents


async def test_complaints_without_an_fbl_address_go_to_the_sender(
    start_fb: StartFb, sink: Sink, smtp: Connect
) -> None:
    sim = await start_fb(complaint_rate=1.0, complaint_formats=["yahoo"])
    await deliver(smtp, sim, "mx.fb.test", [(1, ["ann@fb.test"])])
    (got,) = await arrived(sim, sink, 1)
    assert got.rcpt_tos == [verp(1)]
    assert got.mail_from == "feedback@arf.mail.fb.test"
    report = analyze(got.data)
    assert report.kind == "arf" and report.results[0].recipient == "ann@fb.test"
    assert sim.recorder.feedback[0].feedback_to == verp(1)


async def test_redacted_complaints_hide_the_recipient(
    start_fb: StartFb, sink: Sink, smtp: Connect
) -> None:
    sim = await start_fb(complaint_rate=1.0, complaint_redact=True, complaint_formats=["yahoo"])
    await deliver(smtp, sim, "mx.fb.test", [(1, ["secret.person@fb.test"])])
    (got,) = await arrived(sim, sink, 1)
    assert b"secret.person" not in got.data
    report = analyze(got.data)
    assert report.kind == "arf"
    assert report.results[0].recipient == "redacted@fb.test"
    assert report.message_id == "<m1@sender.test>"
    assert sim.recorder.feedback[0].recipient == "secret.person@fb.test"


# --- auto-replies -----------------------------------------------------------------------------


async def test_auto_replies_in_every_format(start_fb: StartFb, sink: Sink, smtp: Connect) -> None:
    sim = await start_fb(auto_reply_rate=1.0)
    messages = [(n, [f"away{n}@fb.test"]) for n in range(len(AUTO_REPLY_FORMATS))]
    await deliver(smtp, sim, "mx.fb.test", messages)
    received = await arrived(sim, sink, len(messages))
    records = {r.recipient: r for r in sim.recorder.feedback_records()}
    assert sorted(r.format for r in records.values()) == sorted(AUTO_REPLY_FORMATS)
    heads = []
    for got in received:
        # RFC 3834 section 3.3: the response goes out with an empty envelope sender.
        assert got.mail_from == "<>"
        report = analyze(got.data)
        assert report.kind == "autoreply", got.data.decode()
        (result,) = report.results
        assert result.recipient is not None
        n = int(result.recipient.removeprefix("away").partition("@")[0])
        assert got.rcpt_tos == [verp(n)]
        assert f"In-Reply-To: <m{n}@sender.test>".encode() in got.data
        record = records[result.recipient]
        assert record.kind == "autoreply" and record.state == "sent"
        assert record.message_id == f"<m{n}@sender.test>"
        heads.append(got.data.split(b"\r\n\r\n", 1)[0])
    joined = b"\n".join(heads)
    assert b"Auto-Submitted: auto-replied" in joined
    assert b"Subject: Out of Office: Your order" in joined
    assert b"Subject: Abwesenheitsnotiz: Your order" in joined
    assert b"X-Autoreply: yes" in joined
    assert b"Subject: Automatic reply: Your order" in joined
    # The subject-only kind carries no auto-reply header at all.
    ooo = next(h for h in heads if b"Out of Office" in h)
    assert b"Auto-Submitted" not in ooo and b"X-Autoreply" not in ooo


# --- the mix ----------------------------------------------------------------------------------


MIX = {"late_bounce_rate": 0.3, "complaint_rate": 0.2, "auto_reply_rate": 0.2}


def _mix_messages() -> list[tuple[int, list[str]]]:
    return [(n, [f"a{n}@fb.test", f"b{n}@fb.test", f"c{n}@fb.test"]) for n in range(20)]


async def test_a_mix_is_reproducible_and_each_recipient_gets_one_kind_at_most(
    start_fb: StartFb, sink: Sink, smtp: Connect
) -> None:
    sim = await start_fb(**MIX, fbl_address="fbl@sender.test")
    await deliver(smtp, sim, "mx.fb.test", _mix_messages())
    assert await sim.settle_feedback(10)
    records = sim.recorder.feedback_records()
    kinds = {(r.message_id, r.recipient): r.kind for r in records}
    assert len(kinds) == len(records)  # one item at most per (message, recipient)
    counts = {k: list(kinds.values()).count(k) for k in ("dsn", "arf", "autoreply")}
    # 60 recipients at 30 / 20 / 20 %.
    assert 8 <= counts["dsn"] <= 30 and 4 <= counts["arf"] <= 22 and 4 <= counts["autoreply"] <= 22
    assert 25 <= len(records) <= 55

    # Everything planned reached the inbound server, and nothing else did.
    assert all(r.state == "sent" for r in records)
    received = sink.received
    assert len(received) == len(records)
    seen = set()
    for got in received:
        report = analyze(got.data)
        (result,) = report.results
        assert report.message_id is not None or report.kind == "autoreply"
        seen.add((report.kind, result.recipient))
    assert seen == {(r.kind, r.recipient) for r in records}

    # The same seed picks the same recipients again; another seed picks others.
    await sim.stop()
    again = await start_fb(**MIX, fbl_address="fbl@sender.test")
    await deliver(smtp, again, "mx.fb.test", _mix_messages())
    assert await again.settle_feedback(10)
    assert {(r.message_id, r.recipient): r.kind for r in again.recorder.feedback} == kinds
    await again.stop()
    other = await start_fb(seed=2, **MIX, fbl_address="fbl@sender.test")
    await deliver(smtp, other, "mx.fb.test", _mix_messages())
    assert {(r.message_id, r.recipient): r.kind for r in other.recorder.feedback} != kinds


async def test_rates_of_zero_send_nothing(start_sim: StartSim, sink: Sink, smtp: Connect) -> None:
    sim = await start_sim(
        DomainSpec("quiet.test", profile=Profile(feedback_delay=0.0)), feedback_to=sink.address
    )
    await deliver(smtp, sim, "mx.quiet.test", [(n, [f"u{n}@quiet.test"]) for n in range(10)])
    await asyncio.sleep(0.3)
    assert sink.received == []
    assert sim.recorder.feedback == [] and sim.feedback.pending == 0
    report = sim.report()
    assert report.accepted == 10
    assert report.feedback == {"planned": 0, "pending": 0, "sent": 0, "failed": 0}


async def test_null_sender_and_refused_mail_draw_no_feedback(
    start_fb: StartFb, sink: Sink, smtp: Connect
) -> None:
    sim = await start_fb(late_bounce_rate=1.0)
    client = await smtp(sim, "mx.fb.test")
    await client.ehlo()
    out = await client.send("", ["ann@fb.test"], mail(1, ["ann@fb.test"]))
    assert out["data"].code == 250
    out = await client.send(verp(2), ["unknown-1@fb.test"], mail(2, ["unknown-1@fb.test"]))
    assert out["rcpt"][0].code == 550
    await asyncio.sleep(0.3)
    assert sink.received == [] and sim.recorder.feedback == []


# --- delivery of the feedback ---------------------------------------------------------------


async def test_a_4xx_target_is_retried_and_a_5xx_is_final(
    start_fb: StartFb, sink: Sink, smtp: Connect
) -> None:
    sim = await start_fb(late_bounce_rate=1.0, bounce_formats=["qmail"])
    sink.data_replies = ["451 4.3.0 Try again later", "421 4.4.2 Busy, closing"]
    await deliver(smtp, sim, "mx.fb.test", [(1, ["ann@fb.test"])])
    (got,) = await arrived(sim, sink, 1)
    assert analyze(got.data).results[0].recipient == "ann@fb.test"
    (record,) = sim.recorder.feedback_records()
    assert record.state == "sent" and record.attempts == 3

    sink.rcpt_replies = ["550 5.1.1 No such bounce address"]
    await deliver(smtp, sim, "mx.fb.test", [(2, ["bob@fb.test"])])
    assert await sim.settle_feedback(5)
    record = sim.recorder.feedback_records()[1]
    assert record.state == "failed" and record.attempts == 1
    assert record.reply == "550 5.1.1 No such bounce address"
    assert len(sink.received) == 1


async def test_a_target_that_is_down_fails_after_the_tries_without_slowing_the_sim(
    start_sim: StartSim, smtp: Connect
) -> None:
    # A port bound but not listening: connections are refused.
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    try:
        port = hole.getsockname()[1]
        sim = await start_sim(
            DomainSpec("fb.test", profile=profile(late_bounce_rate=1.0, feedback_delay=0.0)),
            feedback_to=f"127.0.0.1:{port}",
            feedback_tries=3,
            feedback_retry_delay=0.05,
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        await deliver(smtp, sim, "mx.fb.test", [(n, [f"x{n}@fb.test"]) for n in range(20)])
        assert loop.time() - started < 2.0
        assert await sim.settle_feedback(5)
        records = sim.recorder.feedback_records()
        assert len(records) == 20
        for record in records:
            assert record.state == "failed" and record.attempts == 3
            assert record.reply.startswith(f"cannot connect to 127.0.0.1:{port}")
        report = sim.report()
        assert report.feedback == {"planned": 20, "pending": 0, "sent": 0, "failed": 20}
    finally:
        hole.close()


async def test_no_target_fails_at_once_and_stop_cancels_pending(
    start_sim: StartSim, smtp: Connect, sink: Sink
) -> None:
    sim = await start_sim(
        DomainSpec("fb.test", profile=profile(auto_reply_rate=1.0, feedback_delay=0.0))
    )
    await deliver(smtp, sim, "mx.fb.test", [(1, ["ann@fb.test"])])
    assert await sim.settle_feedback(5)
    (record,) = sim.recorder.feedback_records()
    assert record.state == "failed" and record.reply == "no feedback_to configured"
    await sim.stop()

    slow = await start_sim(
        DomainSpec("fb.test", profile=profile(auto_reply_rate=1.0, feedback_delay=60.0)),
        feedback_to=sink.address,
    )
    await deliver(smtp, slow, "mx.fb.test", [(2, ["bob@fb.test"])])
    assert slow.feedback.pending == 1
    assert not await slow.settle_feedback(0.05)
    assert slow.recorder.feedback[0].state == "pending"
    await slow.stop()
    (record,) = slow.recorder.feedback_records()
    assert record.state == "failed" and record.reply.startswith("cancelled")
    assert sink.received == []


async def test_large_and_8bit_messages_come_back_with_their_headers(
    start_fb: StartFb, sink: Sink, smtp: Connect
) -> None:
    sim = await start_fb(late_bounce_rate=1.0, bounce_formats=["postfix", "exim"])
    client = await smtp(sim, "mx.fb.test")
    await client.ehlo()
    big = mail(1, ["big@fb.test"], subject="Größe") + b"x" * 200 + (b"\r\n" + b"y" * 70) * 2000
    out = await client.send(verp(1), ["big@fb.test"], big)
    assert out["data"].code == 250
    small = mail(2, ["small@fb.test"], subject="Grüße")
    out = await client.send(verp(2), ["small@fb.test"], small)
    assert out["data"].code == 250
    received = await arrived(sim, sink, 2)
    for got in received:
        report = analyze(got.data)
        assert report.kind == "dsn"
        assert report.results[0].recipient in ("big@fb.test", "small@fb.test")
        assert report.message_id in ("<m1@sender.test>", "<m2@sender.test>")
        assert len(got.data) < 40_000  # the large body was not returned
    postfix = next(g for g in received if b"Postfix" in g.data)
    assert b"Content-Type: text/rfc822-headers" in postfix.data  # too large: headers only
    exim = next(g for g in received if b"Exim" in g.data)
    assert "Grüße".encode() in exim.data  # 8-bit returned as it came
    assert b".leading dot" in exim.data


# --- control API and report -----------------------------------------------------------------


async def test_control_api_lists_feedback_and_changes_the_target(
    start_fb: StartFb, sink: Sink, smtp: Connect
) -> None:
    sim = await start_fb(late_bounce_rate=0.5, complaint_rate=0.5)
    api = ControlServer(sim)
    await api.start()
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as http:
            await deliver(smtp, sim, "mx.fb.test", [(n, [f"r{n}@fb.test"]) for n in range(6)])
            body = (await http.get("/feedback", params={"wait": "5"})).json()
            assert body["settled"] is True
            assert body["target"] == sink.address and body["fbl_address"] is None
            assert body["totals"] == {"planned": 6, "pending": 0, "sent": 6, "failed": 0}
            assert sum(v["sent"] for v in body["by_kind"].values()) == 6
            assert set(body["by_kind"]) <= {"dsn", "arf"}
            assert all(k.split("/")[0] in ("dsn", "arf") for k in body["by_format"])
            item = body["items"][0]
            assert set(item) == {
                "id", "time", "kind", "format", "recipient", "domain", "host", "mail_from",
                "message_id", "postline_id", "reason", "status", "feedback_from",
                "feedback_to", "state", "target", "attempts", "reply", "sent_at",
            }  # fmt: skip
            assert item["state"] == "sent" and item["reply"].startswith("250 ")
            assert {i["recipient"] for i in body["items"]} == {f"r{n}@fb.test" for n in range(6)}
            summary = (await http.get("/feedback", params={"details": "0"})).json()
            assert "items" not in summary and summary["totals"]["sent"] == 6

            report = SimReport.from_json((await http.get("/report")).content)
            assert report.feedback["sent"] == 6 and len(report.feedback_records) == 6
            assert report.feedback_records[0].state == "sent"
            assert report == SimReport.from_json(report.to_json())

            other = Sink()
            await other.start()
            try:
                answer = await http.post(
                    "/feedback/target", params={"to": other.address, "fbl": "fbl@sender.test"}
                )
                assert answer.json() == {
                    "ok": True,
                    "target": other.address,
                    "fbl_address": "fbl@sender.test",
                }
                await deliver(smtp, sim, "mx.fb.test", [(9, ["late@fb.test"])])
                (got,) = await other.wait_for(1)
                assert got.rcpt_tos in ([verp(9)], ["fbl@sender.test"])
            finally:
                await other.stop()
            bad = await http.post("/feedback/target", params={"to": "10.0.0.1:25"})
            assert bad.status_code == 400 and "127.0.0.0/8" in bad.json()["error"]
            assert (await http.post("/feedback/target")).status_code == 400
            assert (await http.post("/feedback")).status_code == 405
            assert (await http.get("/feedback", params={"wait": "x"})).status_code == 400
            cleared = await http.post("/feedback/target", params={"to": "none", "fbl": "none"})
            assert cleared.json()["target"] is None and cleared.json()["fbl_address"] is None
            assert (await http.post("/reset")).json() == {"ok": True}
            empty = (await http.get("/feedback")).json()
            assert empty["items"] == [] and empty["totals"]["planned"] == 0
    finally:
        await api.stop()


# --- configuration ----------------------------------------------------------------------------


def test_feedback_keys_in_toml() -> None:
    cfg = SimConfig.from_toml(
        """
        feedback_to = "localhost:2525"
        fbl_address = "fbl@sender.test"
        feedback_tries = 2
        feedback_retry_delay = 3

        [profiles.noisy]
        late_bounce_rate = 0.05
        complaint_rate = 0.01
        auto_reply_rate = 0.02
        feedback_delay = 2
        mailbox_full_share = 0.5
        bounce_formats = ["exim", "qmail"]
        complaint_formats = ["microsoft"]
        auto_reply_formats = ["abwesenheit"]
        complaint_redact = true

        [[domains]]
        name = "noisy.test"
        profile = "noisy"

        [[domains]]
        name = "quiet.test"
        """
    )
    assert cfg.feedback_to == "127.0.0.1:2525"
    assert cfg.fbl_address == "fbl@sender.test"
    assert (cfg.feedback_tries, cfg.feedback_retry_delay) == (2, 3.0)
    noisy = cfg.domain("noisy.test").profile
    assert (noisy.late_bounce_rate, noisy.complaint_rate, noisy.auto_reply_rate) == (
        0.05,
        0.01,
        0.02,
    )
    assert noisy.feedback_delay == 2.0 and noisy.mailbox_full_share == 0.5
    assert noisy.bounce_formats == ("exim", "qmail")
    assert noisy.complaint_formats == ("microsoft",)
    assert noisy.auto_reply_formats == ("abwesenheit",)
    assert noisy.complaint_redact is True and noisy.sends_feedback
    quiet = cfg.domain("quiet.test").profile
    assert not quiet.sends_feedback
    assert quiet.bounce_formats == BOUNCE_FORMATS and quiet.feedback_delay == 1.0
    default = SimConfig()
    assert default.feedback_to is None and default.fbl_address is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('feedback_to = "10.0.0.5:25"', "127.0.0.0/8"),
        ('feedback_to = "127.0.0.1"', "HOST:PORT"),
        ('feedback_to = "127.0.0.1:0"', "HOST:PORT"),
        ('fbl_address = "not an address"', "fbl_address"),
        ("feedback_tries = 0", "feedback_tries"),
        ("feedback_retry_delay = -1", "feedback_retry_delay"),
        ("[profiles.p]\nlate_bounce_rate = 1.5", "late_bounce_rate"),
        ("[profiles.p]\nlate_bounce_rate = 0.6\ncomplaint_rate = 0.5", "must not exceed 1"),
        ('[profiles.p]\nbounce_formats = ["sendmail"]', "bounce_formats"),
        ("[profiles.p]\ncomplaint_formats = []", "complaint_formats"),
        ('[profiles.p]\nauto_reply_formats = ["vacation", "vacation"]', "auto_reply_formats"),
        ("[profiles.p]\nfeedback_delay = -2", "feedback_delay"),
        ('[profiles.p]\ncomplaint_redact = "yes"', "complaint_redact"),
    ],
)
def test_feedback_keys_are_validated(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SimConfig.from_toml(text)


async def test_the_cli_sends_feedback_configured_in_its_file(sink: Sink, tmp_path) -> None:
    import json
    import smtplib
    import sys

    path = tmp_path / "sim.toml"
    path.write_text(
        f'feedback_to = "{sink.address}"\n'
        "[[domains]]\n"
        'name = "fb.test"\n'
        "profile = { late_bounce_rate = 1.0, feedback_delay = 0.05 }\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "postline.sim",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), 20)
            assert line, "the simulator exited early"
            if line.startswith(b"{"):
                ready = json.loads(line)
                break
        async with httpx.AsyncClient(base_url=ready["control"], timeout=10) as http:
            address = (await http.get("/config")).json()["addresses"]["mx.fb.test"]

            def send() -> None:
                with smtplib.SMTP(address, int(ready["smtp_port"]), timeout=5) as c:  # type: ignore[call-overload]
                    c.sendmail(verp(1), ["ann@fb.test"], mail(1, ["ann@fb.test"]))

            await asyncio.to_thread(send)
            (got,) = await sink.wait_for(1)
            assert got.mail_from == "<>" and got.rcpt_tos == [verp(1)]
            assert analyze(got.data).results[0].recipient == "ann@fb.test"
            body = (await http.get("/feedback", params={"wait": "5"})).json()
            assert body["totals"]["sent"] == 1
        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        with contextlib.suppress(Exception):
            await sink.stop()
