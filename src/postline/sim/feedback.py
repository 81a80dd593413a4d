"""Feedback from simulated domains: late bounces, complaints and auto-replies.

When a simulated mail exchanger accepts a message, :meth:`Feedback.accepted` decides for
each recipient, from the profile's ``late_bounce_rate``, ``complaint_rate`` and
``auto_reply_rate``, whether the domain will later send something back about it. The
decision is a hash of (seed, Message-ID — or the envelope sender when there is none —,
recipient), so the same message meets the same fate in every run and a recipient gets
at most one kind of feedback. A late bounce says "user unknown" (``5.1.1``) or, for a
``mailbox_full_share`` of them, "mailbox full" (``5.2.2`` or ``4.2.2``, decided by the
same hash). The format of each kind is taken in turn from the profile's list (the n-th
late bounce of the simulator uses the n-th format, cycling).

Messages whose envelope sender is null (``MAIL FROM:<>``: bounces themselves) never
draw feedback.

Each item is recorded at once as ``pending`` (:meth:`Recorder.feedback_planned`) and
sent by a background task after the profile's ``feedback_delay``: real SMTP over
loopback to the configured target (``SimConfig.feedback_to``), from the accepting host's
address, with that host's name in EHLO. Late bounces and auto-replies use the null
reverse-path and go to the original envelope sender; complaints come from the feedback
loop's address and go to ``SimConfig.fbl_address``, else to the envelope sender.

A target that is down, times out or answers 4xx is tried again after
``feedback_retry_delay`` seconds, doubling, up to ``feedback_tries`` attempts; a 5xx is
final. Either way the record ends ``sent`` or ``failed`` with the last reply. Nothing
here runs on the receiving path except the decision and the record; errors while
building or sending are recorded as failures and logged, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from postline.sim.config import parse_target
from postline.sim.notices import (
    Notice,
    Original,
    Reason,
    auto_reply,
    bounce_status,
    complaint,
    complaint_sender,
    header_block,
    late_bounce,
)
from postline.sim.profiles import Profile
from postline.sim.recorder import FeedbackRecord, Recorder

__all__ = ["Feedback", "SendError", "send_message"]

log = logging.getLogger(__name__)

#: Messages larger than this are kept (and returned in bounces) as headers only.
MAX_KEPT = 64 * 1024
_CONNECTIONS = 16
_TIMEOUT = 15.0
_POSTLINE_ID = re.compile(rb"(?im)^x-postline-id[ \t]*:[ \t]*(\S+)")


class SendError(Exception):
    """A feedback message was not accepted; ``transient`` says whether to try again."""

    def __init__(self, reply: str, *, transient: bool) -> None:
        super().__init__(reply)
        self.reply = reply
        self.transient = transient


# --- a minimal SMTP client -------------------------------------------------------------


_LINE_END = re.compile(rb"\r\n|\r|\n")


async def _reply(reader: asyncio.StreamReader, timeout: float) -> tuple[int, str]:
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(reader.readline(), timeout)
        if not raw:
            raise SendError(
                " ".join(["connection closed by the target", *lines]).strip(), transient=True
            )
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if len(line) < 3 or not line[:3].isdigit():
            raise SendError(f"not an SMTP reply: {line[:200]!r}", transient=True)
        if line[3:4] != "-":
            return int(line[:3]), "\n".join(lines)


def _stuffed(data: bytes) -> bytes:
    body = _LINE_END.sub(b"\r\n", data)
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return re.sub(rb"(?m)^\.", b"..", body) + b".\r\n"


async def send_message(
    host: str,
    port: int,
    mail_from: str,
    rcpt_to: str,
    data: bytes,
    *,
    helo: str,
    source: str | None = None,
    timeout: float = _TIMEOUT,
) -> str:
    """Send one message over SMTP and return the final ``2xx`` reply.

    ``mail_from`` ``""`` is the null reverse-path. Raises :class:`SendError`: transient
    for a refused connection, a timeout, a lost connection or a 4xx reply, permanent
    for a 5xx reply.
    """
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0) if source else None),
            timeout,
        )
    except (OSError, TimeoutError) as exc:
        raise SendError(f"cannot connect to {host}:{port}: {exc}", transient=True) from exc

    async def step(line: str | None, expect: int, payload: bytes | None = None) -> str:
        if payload is not None:
            writer.write(payload)
        if line is not None:
            writer.write(line.encode("utf-8") + b"\r\n")
        await writer.drain()
        code, text = await _reply(reader, timeout)
        if code // 100 != expect // 100:
            raise SendError(text, transient=code // 100 == 4)
        return text

    try:
        await step(None, 220)
        try:
            ehlo = await step(f"EHLO {helo}", 250)
        except SendError as exc:
            if exc.transient:
                raise
            await step(f"HELO {helo}", 250)
            ehlo = ""
        keywords = {ln[4:].split(" ")[0].upper() for ln in ehlo.split("\n")[1:]}
        params = ""
        if "8BITMIME" in keywords and any(b > 127 for b in data):
            params += " BODY=8BITMIME"
        if "SMTPUTF8" in keywords and not (mail_from + rcpt_to).isascii():
            params += " SMTPUTF8"
        await step(f"MAIL FROM:<{mail_from}>{params}", 250)
        await step(f"RCPT TO:<{rcpt_to}>", 250)
        await step("DATA", 354)
        final = await step(None, 250, _stuffed(data))
        with contextlib.suppress(Exception):
            writer.write(b"QUIT\r\n")
            await writer.drain()
            await asyncio.wait_for(reader.readline(), 1.0)
        return final
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        what = "timed out" if isinstance(exc, TimeoutError) else f"connection lost: {exc}"
        raise SendError(f"{what} talking to {host}:{port}", transient=True) from exc
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


# --- deciding and sending ---------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    kind: str
    format: str
    original: Original
    reason: Reason | None = None
    soft: bool = False
    to: str = ""
    redact: bool = False
    record: FeedbackRecord | None = field(default=None)


def _roll(seed: int, key: str, recipient: str) -> tuple[float, float]:
    digest = hashlib.blake2b(
        f"{seed}|feedback|{key}|{recipient.lower()}".encode(), digest_size=16
    ).digest()
    return (
        int.from_bytes(digest[:8], "big") / 2.0**64,
        int.from_bytes(digest[8:], "big") / 2.0**64,
    )


class Feedback:
    """Plans and sends the feedback of one simulator; see the module docstring."""

    def __init__(
        self,
        recorder: Recorder,
        *,
        seed: int = 1,
        target: str | None = None,
        fbl_address: str | None = None,
        tries: int = 4,
        retry_delay: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.recorder = recorder
        self.seed = seed
        self.target: tuple[str, int] | None = None
        self.set_target(target)
        self.fbl_address = fbl_address
        self.tries = tries
        self.retry_delay = retry_delay
        self.clock = clock
        self.tasks: set[asyncio.Task[None]] = set()
        self._turns: dict[str, int] = {}
        self._slots: asyncio.Semaphore | None = None

    # -- settings ---------------------------------------------------------------------------

    def set_target(self, target: str | None) -> None:
        """Send feedback to ``"HOST:PORT"`` (127.0.0.0/8) from now on; None: nowhere
        (items then fail with "no feedback_to configured")."""
        self.target = None if target is None else parse_target(target)

    @property
    def target_text(self) -> str | None:
        return None if self.target is None else f"{self.target[0]}:{self.target[1]}"

    def reset(self) -> None:
        """Start the format rotation over."""
        self._turns.clear()

    # -- planning (on the receiving path: cheap, never raises) ----------------------------

    def accepted(
        self,
        profile: Profile,
        *,
        host: str,
        host_address: str,
        mail_from: str,
        recipients: Sequence[str],
        message_id: str,
        content: bytes,
        client_ip: str,
        tls: bool = False,
    ) -> None:
        """Plan feedback for the recipients of one message a host just accepted."""
        if not profile.sends_feedback or mail_from in ("", "<>"):
            return
        try:
            self._plan_all(
                profile,
                host=host,
                host_address=host_address,
                mail_from=mail_from,
                recipients=recipients,
                message_id=message_id,
                content=content,
                client_ip=client_ip,
                tls=tls,
            )
        except Exception:
            log.exception("sim feedback: planning failed", extra={"action": "sim.feedback"})

    def _plan_all(
        self,
        profile: Profile,
        *,
        host: str,
        host_address: str,
        mail_from: str,
        recipients: Sequence[str],
        message_id: str,
        content: bytes,
        client_ip: str,
        tls: bool,
    ) -> None:
        key = message_id or mail_from
        kept: bytes | None = None
        complete = len(content) <= MAX_KEPT
        now = self.clock()
        for rcpt in recipients:
            kind_roll, reason_roll = _roll(self.seed, key, rcpt)
            kind = _pick_kind(profile, kind_roll)
            if kind is None:
                continue
            if kept is None:
                kept = content if complete else header_block(content)
            original = Original(
                mail_from=mail_from,
                recipient=rcpt,
                message_id=message_id,
                content=kept,
                complete=complete,
                client_ip=client_ip,
                host=host,
                host_address=host_address,
                arrival=now,
                tls=tls,
            )
            plan = self._plan(profile, kind, original, reason_roll)
            self._schedule(plan, profile.feedback_delay)

    def _turn(self, kind: str, formats: Sequence[str]) -> str:
        n = self._turns.get(kind, 0)
        self._turns[kind] = n + 1
        return formats[n % len(formats)]

    def _plan(self, profile: Profile, kind: str, o: Original, reason_roll: float) -> _Plan:
        domain = o.domain
        reason_text: str
        pid_match = _POSTLINE_ID.search(header_block(o.content))
        postline_id = pid_match.group(1).decode("utf-8", "replace") if pid_match else ""
        if kind == "dsn":
            fmt = self._turn(kind, profile.bounce_formats)
            share = profile.mailbox_full_share
            full = reason_roll < share
            soft = full and reason_roll / share >= 0.5
            reason: Reason = "mailbox-full" if full else "user-unknown"
            plan = _Plan(kind, fmt, o, reason, soft, o.mail_from)
            reason_text, status, sender = reason, bounce_status(fmt, reason, soft), ""
        elif kind == "arf":
            fmt = self._turn(kind, profile.complaint_formats)
            to = self.fbl_address or o.mail_from
            plan = _Plan(kind, fmt, o, to=to, redact=profile.complaint_redact)
            reason_text, status = "abuse", ""
            sender = complaint_sender(fmt, domain)
        else:
            fmt = self._turn(kind, profile.auto_reply_formats)
            plan = _Plan(kind, fmt, o, to=o.mail_from)
            reason_text, status, sender = "out-of-office", "", ""
        plan.record = self.recorder.feedback_planned(
            kind=kind,
            format=fmt,
            recipient=o.recipient,
            domain=domain,
            host=o.host,
            mail_from=o.mail_from,
            message_id=o.message_id,
            postline_id=postline_id,
            reason=reason_text,
            status=status,
            feedback_from=sender,
            feedback_to=plan.to,
        )
        return plan

    def _schedule(self, plan: _Plan, delay: float) -> None:
        task = asyncio.get_running_loop().create_task(self._run(plan, delay))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # -- sending (background) -----------------------------------------------------------

    def _build(self, plan: _Plan) -> Notice:
        now = self.clock()
        o = plan.original
        if plan.kind == "dsn":
            assert plan.reason is not None
            return late_bounce(plan.format, o, plan.reason, soft=plan.soft, now=now)
        if plan.kind == "arf":
            return complaint(plan.format, o, plan.to, now=now, redact=plan.redact)
        return auto_reply(plan.format, o, now=now)

    async def _run(self, plan: _Plan, delay: float) -> None:
        record = plan.record
        assert record is not None
        try:
            if delay > 0:
                await asyncio.sleep(delay)
            notice = self._build(plan)
            sent, reply = await self._deliver(record, notice, plan.original.host_address)
            self.recorder.feedback_done(record, sent=sent, reply=reply)
        except asyncio.CancelledError:
            self.recorder.feedback_done(
                record, sent=False, reply="cancelled: the simulator stopped"
            )
            raise
        except Exception as exc:
            log.warning(
                "sim feedback: %s/%s for %s failed: %r",
                plan.kind,
                plan.format,
                record.recipient,
                exc,
                extra={"action": "sim.feedback"},
            )
            self.recorder.feedback_done(record, sent=False, reply=f"internal error: {exc!r}")

    async def _deliver(
        self, record: FeedbackRecord, notice: Notice, source: str
    ) -> tuple[bool, str]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(_CONNECTIONS)
        reply = ""
        for attempt in range(1, self.tries + 1):
            target = self.target
            if target is None:
                return False, "no feedback_to configured"
            self.recorder.feedback_attempt(record, f"{target[0]}:{target[1]}")
            try:
                async with self._slots:
                    final = await send_message(
                        target[0],
                        target[1],
                        notice.mail_from,
                        notice.rcpt_to,
                        notice.data,
                        helo=record.host,
                        source=source,
                    )
                return True, final
            except SendError as exc:
                reply = exc.reply
                if not exc.transient or attempt == self.tries:
                    return False, reply
            await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
        return False, reply

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Feedback items not yet sent or given up."""
        return len(self.tasks)

    async def settle(self, timeout: float | None = None) -> bool:
        """Wait until every planned item is sent or failed (at most ``timeout`` seconds);
        True when none is pending."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while self.tasks:
            left = None if deadline is None else deadline - loop.time()
            if left is not None and left <= 0:
                return False
            await asyncio.wait(set(self.tasks), timeout=left)
        return True

    async def close(self) -> None:
        """Cancel every pending item (recorded as failed) and wait for the tasks."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    def describe(self) -> dict[str, Any]:
        """The settings, for the control API."""
        return {
            "target": self.target_text,
            "fbl_address": self.fbl_address,
            "tries": self.tries,
            "retry_delay": self.retry_delay,
        }


def _pick_kind(profile: Profile, roll: float) -> str | None:
    edge = profile.late_bounce_rate
    if roll < edge:
        return "dsn"
    edge += profile.complaint_rate
    if roll < edge:
        return "arf"
    edge += profile.auto_reply_rate
    if roll < edge:
        return "autoreply"
    return None
