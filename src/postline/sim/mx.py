"""Simulated mail exchangers: aiosmtpd protocol instances that behave like real providers.

Each :class:`MXHost` listens on its own loopback address (``loop.create_server`` in the
caller's loop, no threads) and answers by its :class:`~postline.sim.profiles.Profile`,
its provider's throttle style (:mod:`postline.sim.styles`) and the recipient's local part
(the table in :mod:`postline.sim.profiles`). All hosts of one simulator share a
:class:`SimState`: the recorder, the per-provider counters and the seeded dice.

Order of checks:

- connection: tarpit, then the connection limit (banner or EHLO, by style);
- MAIL FROM: the rate limit for styles that enforce it there;
- RCPT TO: relay check (the host must serve the domain), blocklist (every client or the
  listed client IPs), rate limit (RCPT
  styles, first recipient of a transaction), transient failure roll (once per
  transaction), local-part behaviour, greylisting;
- end of DATA: drop (``drop…@`` first attempt, or ``drop_rate``), rate limit (DATA
  styles), a transient failure planned at RCPT TO, ``spam…@``; else accepted and
  recorded once per recipient with the Message-ID read from the header block only, and
  handed to :class:`~postline.sim.feedback.Feedback`, which may plan a late bounce,
  complaint or auto-reply for some recipients (profiles with feedback rates only).

Random decisions are hashes of (seed, kind, key, attempt number), so the same message
meets the same fate whatever the order in which connections arrive.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import re
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, AnyStr

from aiosmtpd.smtp import SMTP, Envelope, Session

from postline.sim.config import HostPlan
from postline.sim.profiles import Behaviour, Profile, behaviour_of
from postline.sim.recorder import ConnectionHandle, Recorder
from postline.sim.styles import (
    banner_ident,
    connection_reply,
    connection_stage,
    ehlo_greeting,
    queued_reply,
    throttle_reply,
    throttle_stage,
)

if TYPE_CHECKING:
    from postline.sim.feedback import Feedback

__all__ = ["MXHost", "ProviderState", "SimState", "extract_message_id"]

log = logging.getLogger(__name__)

_MESSAGE_ID = re.compile(rb"(?im)^message-id[ \t]*:[ \t]*(.*(?:\r?\n[ \t].*)*)")
_SIZE_REPLY = "552 5.3.4 Message size exceeds fixed maximum message size"
# aiosmtpd's own replies, rewritten with enhanced status codes: (reply, command to record
# it as a rejection of, or None when it is no rejection worth recording).
_REWRITE: dict[str, tuple[str, str | None]] = {
    "552 Error: Too much mail data": (_SIZE_REPLY, "DATA END"),
    "552 Error: message size exceeds fixed maximum message size": (_SIZE_REPLY, "MAIL FROM"),
    "221 Bye": ("221 2.0.0 Bye", None),
    "250 OK": ("250 2.0.0 OK", None),
    "503 Error: need MAIL command": ("503 5.5.1 Error: need MAIL command", None),
    "503 Error: need RCPT command": ("503 5.5.1 Error: need RCPT command", None),
    "503 Error: nested MAIL command": ("503 5.5.1 Error: nested MAIL command", None),
}
_TRANSIENT_REPLIES = (
    "451 4.3.0 Temporary failure, please try again later",
    "421 4.3.2 System not accepting network messages, closing connection",
)


def extract_message_id(content: bytes) -> str | None:
    """The Message-ID header of ``content`` (unfolded, stripped), read from the header
    block only; None when there is none.

    >>> extract_message_id(b"Subject: x\\r\\nMessage-ID:\\r\\n <a@b>\\r\\n\\r\\nbody")
    '<a@b>'
    """
    end = content.find(b"\r\n\r\n")
    if end < 0:
        end = content.find(b"\n\n")
    head = content if end < 0 else content[: end + 2]
    match = _MESSAGE_ID.search(head)
    if match is None:
        return None
    value = b" ".join(match.group(1).split())
    return value.decode("utf-8", "replace") or None


def _abort(transport: asyncio.BaseTransport | None) -> None:
    """Close ``transport`` at once, without flushing (a dropped connection)."""
    if transport is None:
        return
    # uvloop's transports have abort() without subclassing asyncio.WriteTransport.
    abort = getattr(transport, "abort", None)
    if callable(abort):
        abort()
    else:
        transport.close()


class ProviderState:
    """Per-provider counters shared by all the provider's hosts, keyed by client IP."""

    def __init__(self) -> None:
        self.connections: dict[str, int] = {}
        self.windows: dict[str, deque[float]] = {}
        self.greylist: dict[tuple[str, str, str], float] = {}

    def admit(self, ip: str, now: float, rate: int, period: float) -> bool:
        """Count one message from ``ip`` unless ``rate`` were already admitted within the
        last ``period`` seconds (sliding window); False means "throttle it"."""
        window = self.windows.get(ip)
        if window is None:
            window = self.windows[ip] = deque()
        while window and now - window[0] >= period:
            window.popleft()
        if len(window) >= rate:
            return False
        window.append(now)
        return True

    def reset(self) -> None:
        """Forget rate windows and greylisting (open connections stay counted)."""
        self.windows.clear()
        self.greylist.clear()


class SimState:
    """What every simulated host of one simulator shares."""

    def __init__(
        self,
        recorder: Recorder,
        *,
        seed: int = 1,
        greylist_delay: float = 1.0,
        slow_delay: float = 2.0,
        idle_timeout: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        feedback: Feedback | None = None,
    ) -> None:
        self.recorder = recorder
        self.feedback = feedback
        self.seed = seed
        self.greylist_delay = greylist_delay
        self.slow_delay = slow_delay
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.providers: dict[str, ProviderState] = {}
        self.dropped_once: set[str] = set()
        self._attempts: dict[tuple[str, str], int] = {}
        self._serial = itertools.count(1)

    def provider(self, name: str) -> ProviderState:
        state = self.providers.get(name)
        if state is None:
            state = self.providers[name] = ProviderState()
        return state

    def serial(self) -> int:
        """A fresh number for queue ids and tags."""
        return next(self._serial)

    def chance(self, kind: str, key: str) -> float:
        """A reproducible number in [0, 1) for the n-th roll of ``kind`` on ``key``."""
        slot = (kind, key)
        n = self._attempts.get(slot, 0) + 1
        self._attempts[slot] = n
        digest = hashlib.blake2b(f"{self.seed}|{kind}|{key}|{n}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big") / 2.0**64

    def reset(self) -> None:
        """Forget greylisting, rate windows, drop memory and dice history."""
        for state in self.providers.values():
            state.reset()
        self.dropped_once.clear()
        self._attempts.clear()


class _SimEnvelope(Envelope):
    """An envelope with the transaction state the simulation needs."""

    def __init__(self) -> None:
        super().__init__()
        self.admitted = False
        self.rolled = False
        self.doomed: str | None = None


class _SimSMTP(SMTP):
    """aiosmtpd's protocol with connection accounting, tarpit and closing 421 replies."""

    def __init__(self, host: MXHost) -> None:
        self.mx = host
        profile = host.profile
        super().__init__(
            host.handler,
            data_size_limit=profile.max_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=host.name,
            ident=banner_ident(profile.throttle_style, host.state.serial()),
            tls_context=host.tls_context if profile.tls else None,
            timeout=host.state.idle_timeout,
            loop=asyncio.get_running_loop(),
        )
        self.client_ip = ""
        self.over_limit = False
        self.conn: ConnectionHandle | None = None
        self._counted = False
        self._mid_reply = False

    def _create_envelope(self) -> Envelope:
        return _SimEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        fresh = self.transport is None
        super().connection_made(transport)
        if not fresh or self._counted:
            return
        peer = transport.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else ""
        self._counted = True
        host = self.mx
        provider = host.state.provider(host.provider)
        count = provider.connections.get(self.client_ip, 0) + 1
        provider.connections[self.client_ip] = count
        limit = host.profile.max_connections
        self.over_limit = limit is not None and count > limit
        only = next(iter(host.domains)) if len(host.domains) == 1 else None
        self.conn = host.state.recorder.connection_opened(
            host.name, host.provider, self.client_ip, () if only is None else (only,)
        )
        host.protocols.add(self)

    def connection_lost(self, error: Exception | None) -> None:
        super().connection_lost(error)
        if not self._counted:
            return
        self._counted = False
        host = self.mx
        provider = host.state.provider(host.provider)
        provider.connections[self.client_ip] = provider.connections.get(self.client_ip, 1) - 1
        if self.conn is not None:
            host.state.recorder.connection_closed(self.conn)
        host.protocols.discard(self)

    async def _handle_client(self) -> None:
        if self.over_limit and self.mx.connection_stage == "banner":
            reply = self.mx.connection_reply(self.client_ip)
            self.reject(reply, "CONNECT")
            await self.push(reply)
            return
        await super()._handle_client()

    async def push(self, status: AnyStr) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        tarpit = self.mx.profile.tarpit
        if tarpit and not self._mid_reply:
            await asyncio.sleep(tarpit)
        rewritten = _REWRITE.get(text)
        if rewritten is not None:
            text, command = rewritten
            if command is not None:
                self.reject(text, command)
        self._mid_reply = text[3:4] == "-" and "\r\n" not in text
        await super().push(text)
        if text.startswith("421") and self.transport is not None:
            self.transport.close()

    def reject(self, reply: str, command: str, recipient: str = "", message_id: str = "") -> None:
        """Record a negative reply this connection is about to send."""
        domain = recipient.rpartition("@")[2].lower() if recipient else ""
        self.mx.state.recorder.rejected(
            reply,
            command,
            self.mx.name,
            self.mx.provider,
            self.client_ip,
            recipient=recipient,
            domain=domain,
            message_id=message_id,
        )

    def note_domain(self, domain: str) -> None:
        if self.conn is not None:
            self.mx.state.recorder.connection_domain(self.conn, domain)


class _Handler:
    """The aiosmtpd handler of one host: the behaviour of every command."""

    def __init__(self, host: MXHost) -> None:
        self.host = host

    async def handle_HELO(
        self, server: _SimSMTP, session: Session, envelope: Envelope, hostname: str
    ) -> str:
        host = self.host
        if server.over_limit and host.connection_stage == "ehlo":
            reply = host.connection_reply(server.client_ip)
            server.reject(reply, "HELO")
            return reply
        session.host_name = hostname
        return f"250 {host.name}"

    async def handle_EHLO(
        self,
        server: _SimSMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        host = self.host
        profile = host.profile
        if server.over_limit and host.connection_stage == "ehlo":
            reply = host.connection_reply(server.client_ip)
            server.reject(reply, "EHLO")
            return [reply]
        session.host_name = hostname
        lines = [ehlo_greeting(profile.throttle_style, host.name, server.client_ip)]
        if profile.max_size:
            lines.append(f"SIZE {profile.max_size}")
        lines.append("8BITMIME")
        if server.tls_context is not None and session.ssl is None:
            lines.append("STARTTLS")
        lines.append("ENHANCEDSTATUSCODES")
        if profile.pipelining:
            lines.append("PIPELINING")
        lines.append("SMTPUTF8")
        last = len(lines) - 1
        return [f"250{' ' if i == last else '-'}{line}" for i, line in enumerate(lines)]

    async def handle_MAIL(
        self,
        server: _SimSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        host = self.host
        profile = host.profile
        if profile.rate is not None and host.throttle_stage == "mail":
            if not host.admit(server.client_ip):
                reply = host.throttle_reply(server.client_ip)
                server.reject(reply, "MAIL FROM")
                return reply
            assert isinstance(envelope, _SimEnvelope)
            envelope.admitted = True
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self,
        server: _SimSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        assert isinstance(envelope, _SimEnvelope)
        host = self.host
        profile = host.profile
        state = host.state
        ip = server.client_ip
        local, _, domain = address.rpartition("@")
        domain = domain.lower()
        if domain not in host.domains:
            return self._refuse(server, f"554 5.7.1 <{address}>: Relay access denied", address)
        server.note_domain(domain)
        if profile.block or (profile.block_ips and ip in profile.block_ips):
            reply = (
                f"550 5.7.1 Service unavailable; Client host [{ip}] blocked using "
                f"zen.spamhaus.org; https://www.spamhaus.org/query/ip/{ip}"
            )
            return self._refuse(server, reply, address)
        if profile.rate is not None and host.throttle_stage == "rcpt" and not envelope.admitted:
            if not host.admit(ip):
                return self._refuse(server, host.throttle_reply(ip), address)
            envelope.admitted = True
        mail_from = envelope.mail_from or ""
        if profile.transient_rate and not envelope.rolled:
            envelope.rolled = True
            roll = state.chance("transient", f"{mail_from}|{address}")
            if roll < profile.transient_rate:
                pick = roll / profile.transient_rate
                reply = _TRANSIENT_REPLIES[int(pick * 4) % 2]
                if pick < 0.5:
                    return self._refuse(server, reply, address)
                envelope.doomed = reply
        behaviour = behaviour_of(local)
        if behaviour is not None:
            early = self._mailbox_reply(behaviour, address)
            if early is not None:
                return self._refuse(server, early, address)
            if behaviour is Behaviour.SLOW and state.slow_delay > 0:
                await asyncio.sleep(state.slow_delay)
        delay = profile.greylist
        if behaviour is Behaviour.GREYLIST and not delay:
            delay = state.greylist_delay
        if delay:
            provider = state.provider(host.provider)
            now = state.clock()
            first = provider.greylist.setdefault((ip, mail_from, address), now)
            if now - first < delay:
                reply = f"451 4.7.1 Greylisted, please try again in {delay:g} seconds"
                return self._refuse(server, reply, address)
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    @staticmethod
    def _mailbox_reply(behaviour: Behaviour, address: str) -> str | None:
        if behaviour is Behaviour.UNKNOWN:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if behaviour is Behaviour.FULL:
            return "452 4.2.2 Mailbox full"
        if behaviour is Behaviour.OVERQUOTA:
            return "552 5.2.2 Mailbox full"
        if behaviour is Behaviour.DISABLED:
            return "550 5.2.1 Mailbox disabled"
        if behaviour is Behaviour.TEMPFAIL:
            return "451 4.3.0 Temporary failure"
        return None

    @staticmethod
    def _refuse(server: _SimSMTP, reply: str, address: str) -> str:
        server.reject(reply, "RCPT TO", address)
        return reply

    async def handle_DATA(self, server: _SimSMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope, _SimEnvelope)
        host = self.host
        profile = host.profile
        state = host.state
        content = envelope.original_content or b""
        message_id = extract_message_id(content) or ""
        rcpts = list(envelope.rcpt_tos)
        behaviours = [behaviour_of(r.rpartition("@")[0]) for r in rcpts]
        key = message_id or f"{envelope.mail_from}|{','.join(rcpts)}"
        drop = False
        if Behaviour.DROP in behaviours and key not in state.dropped_once:
            state.dropped_once.add(key)
            drop = True
        elif profile.drop_rate and state.chance("drop", key) < profile.drop_rate:
            drop = True
        if drop:
            state.recorder.dropped(message_id, rcpts, host.name, host.provider, server.client_ip)
            _abort(server.transport)
            # The connection is gone; connection_lost cancels this task.
            await asyncio.sleep(state.idle_timeout)
            return "421 4.4.2 Connection dropped"
        reply: str | None = None
        if (
            profile.rate is not None
            and host.throttle_stage == "data"
            and not host.admit(server.client_ip)
        ):
            reply = host.throttle_reply(server.client_ip)
        if reply is None and envelope.doomed is not None:
            reply = envelope.doomed
        if reply is None and Behaviour.SPAM in behaviours:
            reply = "550 5.7.1 Message rejected as spam"
        if reply is not None:
            for rcpt in rcpts:
                server.reject(reply, "DATA END", rcpt, message_id)
            return reply
        recorder = state.recorder
        tls = session.ssl is not None
        for rcpt in rcpts:
            recorder.accepted(
                message_id,
                rcpt,
                rcpt.rpartition("@")[2].lower(),
                host.name,
                host.provider,
                server.client_ip,
                tls=tls,
                helo=session.host_name or "",
            )
        if state.feedback is not None and profile.sends_feedback:
            state.feedback.accepted(
                profile,
                host=host.name,
                host_address=host.address,
                mail_from=envelope.mail_from or "",
                recipients=rcpts,
                message_id=message_id,
                content=content,
                client_ip=server.client_ip,
                tls=tls,
            )
        serial = state.serial()
        return queued_reply(profile.throttle_style, host.name, serial, message_id or None)

    async def handle_QUIT(self, server: _SimSMTP, session: Session, envelope: Envelope) -> str:
        return "221 2.0.0 Bye"


class MXHost:
    """One simulated mail exchanger on its own loopback address."""

    def __init__(
        self, plan: HostPlan, state: SimState, tls_context: ssl.SSLContext | None = None
    ) -> None:
        self.name = plan.name
        self.address = plan.address
        self.provider = plan.provider
        self.profile: Profile = plan.profile
        self.domains: set[str] = set(plan.domains)
        self.state = state
        self.tls_context = tls_context
        self.handler = _Handler(self)
        self.protocols: set[_SimSMTP] = set()
        self.throttle_stage = throttle_stage(plan.profile.throttle_style)
        self.connection_stage = connection_stage(plan.profile.throttle_style)
        self._server: asyncio.Server | None = None

    @property
    def listening(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        """The port this host listens on."""
        if self._server is None or not self._server.sockets:
            raise RuntimeError(f"MX host {self.name} is not listening")
        return int(self._server.sockets[0].getsockname()[1])

    def admit(self, ip: str) -> bool:
        """Count one message from ``ip`` against the provider's rate; False: throttle."""
        profile = self.profile
        assert profile.rate is not None
        return self.state.provider(self.provider).admit(
            ip, self.state.clock(), profile.rate, profile.rate_period
        )

    def throttle_reply(self, ip: str) -> str:
        return throttle_reply(self.profile.throttle_style, ip, self.name, self.state.serial())

    def connection_reply(self, ip: str) -> str:
        return connection_reply(self.profile.throttle_style, ip, self.name, self.state.serial())

    async def listen(self, port: int, backlog: int = 1024) -> None:
        """Start listening on ``(address, port)``; OSError when the port is taken."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _SimSMTP(self), self.address, port, backlog=backlog
        )

    async def close(self) -> None:
        """Stop listening, drop every open connection and wait for their handlers."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks: list[asyncio.Task[Any]] = []
        for proto in list(self.protocols):
            task = proto._handler_coroutine
            if task is not None and not task.done():
                tasks.append(task)
            _abort(proto.transport)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        if server is not None:
            await server.wait_closed()
