"""What the simulated internet saw: accepted messages, rejections, drops and connections.

The mail exchangers call :class:`Recorder` on every event; the calls are cheap (append to
a list, bump a counter) so tens of thousands of messages per minute cost little.
:meth:`Recorder.report` turns the records into a :class:`SimReport`, a plain dataclass
that travels as JSON (``to_json`` / ``from_json``) through the control API.

Measures:

- accepted (Message-ID, recipient) pairs with time, domain, MX host, provider, client IP
  and the client's EHLO name;
- duplicates: pairs accepted more than once (messages without a Message-ID are not
  counted as duplicates of each other);
- rejections with code, enhanced code, text and the command that drew them;
- connections opened and the peak number open at once per domain, per MX host, per
  provider, per client IP and per (provider, client IP). A connection counts for a domain
  from its start when its host serves that domain only, else from its first RCPT TO for
  the domain;
- the peak accepted-message rate over a sliding window (:func:`peak_rate_of`): the most
  messages accepted within any interval of ``window`` seconds, divided by ``window``;
- feedback (late bounces, complaints, auto-replies; :mod:`postline.sim.feedback`): one
  :class:`FeedbackRecord` per item, created ``pending`` when the message is accepted and
  turned ``sent`` or ``failed`` with the target's last reply, and totals per state, kind
  and format.

Times are wall-clock seconds since the epoch (``time.time()``).
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

__all__ = [
    "AcceptedRecord",
    "ConnectionHandle",
    "ConnectionStats",
    "DropRecord",
    "Duplicate",
    "FeedbackRecord",
    "FeedbackState",
    "Recorder",
    "RejectionRecord",
    "SimReport",
    "peak_rate_of",
]

_ENHANCED = re.compile(r"([245]\.\d{1,3}\.\d{1,3})(?: |$)")

FeedbackState = Literal["pending", "sent", "failed"]


def peak_rate_of(times: Iterable[float], window: float = 1.0) -> float:
    """The largest number of ``times`` inside any half-open interval ``[t, t + window)``,
    divided by ``window`` (messages per second).

    >>> peak_rate_of([0.0, 0.1, 0.2, 1.5], window=1.0)
    3.0
    """
    if window <= 0:
        raise ValueError("window must be positive")
    ordered = sorted(times)
    best = 0
    start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best / window


@dataclass(frozen=True, slots=True)
class AcceptedRecord:
    """One recipient of one message accepted with a ``250`` after DATA."""

    time: float
    message_id: str
    recipient: str
    domain: str
    host: str
    provider: str
    client_ip: str
    tls: bool = False
    helo: str = ""
    """The name the client gave in EHLO/HELO."""


@dataclass(frozen=True, slots=True)
class RejectionRecord:
    """One negative reply (4xx or 5xx) the simulated servers sent."""

    time: float
    code: int
    enhanced: str
    text: str
    command: str
    host: str
    provider: str
    client_ip: str
    recipient: str = ""
    domain: str = ""
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class DropRecord:
    """A connection dropped during DATA, before the final reply."""

    time: float
    message_id: str
    recipients: tuple[str, ...]
    host: str
    provider: str
    client_ip: str


@dataclass(frozen=True, slots=True)
class Duplicate:
    """A (Message-ID, recipient) pair accepted ``count`` times (count >= 2)."""

    message_id: str
    recipient: str
    count: int


@dataclass(slots=True)
class FeedbackRecord:
    """One late bounce, complaint or auto-reply the simulator planned, and its fate.

    ``kind`` is ``dsn``, ``arf`` or ``autoreply``; ``format`` the style it imitates
    (``postfix``, ``yahoo``, ``vacation``...). ``mail_from`` and ``message_id`` are the
    original message's envelope sender and Message-ID header, ``recipient`` the original
    recipient the feedback is about. ``reason`` is ``user-unknown``, ``mailbox-full``,
    ``abuse`` or ``out-of-office``; ``status`` the enhanced status a bounce reports (empty
    for the other kinds). ``feedback_from`` / ``feedback_to`` are the envelope of the
    feedback message (``""``: the null reverse-path), ``target`` the ``host:port`` it was
    sent to. ``state`` is ``pending`` until the target answered the end of DATA with 2xx
    (``sent``) or refused it for good / kept failing ``attempts`` times (``failed``);
    ``reply`` is the target's last reply or the error met.
    """

    id: int
    time: float
    kind: str
    format: str
    recipient: str
    domain: str
    host: str
    mail_from: str
    message_id: str
    postline_id: str
    reason: str
    status: str
    feedback_from: str
    feedback_to: str
    state: FeedbackState = "pending"
    target: str = ""
    attempts: int = 0
    reply: str = ""
    sent_at: float | None = None


def feedback_totals(records: Iterable[FeedbackRecord]) -> dict[str, Any]:
    """``{"totals": {...}, "by_kind": {kind: {...}}, "by_format": {"kind/format": {...}}}``
    where each ``{...}`` counts ``planned``, ``pending``, ``sent`` and ``failed``."""

    def zero() -> dict[str, int]:
        return {"planned": 0, "pending": 0, "sent": 0, "failed": 0}

    totals = zero()
    by_kind: dict[str, dict[str, int]] = {}
    by_format: dict[str, dict[str, int]] = {}
    for r in records:
        for table in (
            totals,
            by_kind.setdefault(r.kind, zero()),
            by_format.setdefault(f"{r.kind}/{r.format}", zero()),
        ):
            table["planned"] += 1
            table[r.state] += 1
    return {
        "totals": totals,
        "by_kind": dict(sorted(by_kind.items())),
        "by_format": dict(sorted(by_format.items())),
    }


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """Connections opened in total and the most open at the same time."""

    opened: int
    peak: int


@dataclass
class SimReport:
    """Everything the simulator saw, ready for assertions and for JSON.

    ``peak_rate_by_domain`` / ``peak_rate_by_provider`` use a sliding window of ``window``
    seconds. Connection statistics are keyed by domain, MX host, provider, client IP and
    ``"provider|client_ip"``. ``feedback`` counts feedback items by state (``planned``,
    ``pending``, ``sent``, ``failed``), ``feedback_by_kind`` and ``feedback_by_format``
    (``"kind/format"``) the same per kind and format. ``records``, ``rejections``,
    ``drops`` and ``feedback_records`` are empty in a summary report.
    """

    started_at: float
    generated_at: float
    window: float
    accepted: int
    rejected: int
    dropped: int
    connections: int
    duplicate_count: int
    accepted_by_domain: dict[str, int] = field(default_factory=dict)
    accepted_by_provider: dict[str, int] = field(default_factory=dict)
    rejected_by_code: dict[str, int] = field(default_factory=dict)
    rejected_by_domain: dict[str, int] = field(default_factory=dict)
    peak_rate_by_domain: dict[str, float] = field(default_factory=dict)
    peak_rate_by_provider: dict[str, float] = field(default_factory=dict)
    connections_by_domain: dict[str, ConnectionStats] = field(default_factory=dict)
    connections_by_host: dict[str, ConnectionStats] = field(default_factory=dict)
    connections_by_provider: dict[str, ConnectionStats] = field(default_factory=dict)
    connections_by_client: dict[str, ConnectionStats] = field(default_factory=dict)
    connections_by_provider_client: dict[str, ConnectionStats] = field(default_factory=dict)
    duplicates: list[Duplicate] = field(default_factory=list)
    records: list[AcceptedRecord] = field(default_factory=list)
    rejections: list[RejectionRecord] = field(default_factory=list)
    drops: list[DropRecord] = field(default_factory=list)
    feedback: dict[str, int] = field(default_factory=dict)
    feedback_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    feedback_by_format: dict[str, dict[str, int]] = field(default_factory=dict)
    feedback_records: list[FeedbackRecord] = field(default_factory=list)

    def to_json(self) -> str:
        """The report as one JSON object."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> SimReport:
        """Rebuild a report written by :meth:`to_json`."""
        data: dict[str, Any] = json.loads(text)

        def stats(key: str) -> dict[str, ConnectionStats]:
            return {k: ConnectionStats(**v) for k, v in data.pop(key, {}).items()}

        conn = {
            key: stats(key)
            for key in (
                "connections_by_domain",
                "connections_by_host",
                "connections_by_provider",
                "connections_by_client",
                "connections_by_provider_client",
            )
        }
        duplicates = [Duplicate(**d) for d in data.pop("duplicates", [])]
        records = [AcceptedRecord(**r) for r in data.pop("records", [])]
        rejections = [RejectionRecord(**r) for r in data.pop("rejections", [])]
        drops = [
            DropRecord(**{**d, "recipients": tuple(d["recipients"])}) for d in data.pop("drops", [])
        ]
        feedback_records = [FeedbackRecord(**f) for f in data.pop("feedback_records", [])]
        return cls(
            **data,
            **conn,  # type: ignore[arg-type]
            duplicates=duplicates,
            records=records,
            rejections=rejections,
            drops=drops,
            feedback_records=feedback_records,
        )

    def accepted_pairs(self) -> set[tuple[str, str]]:
        """The distinct (Message-ID, recipient) pairs accepted (needs a full report)."""
        return {(r.message_id, r.recipient) for r in self.records}


class _Gauge:
    __slots__ = ("open", "opened", "peak")

    def __init__(self) -> None:
        self.open = 0
        self.opened = 0
        self.peak = 0

    def up(self) -> None:
        self.open += 1
        self.opened += 1
        if self.open > self.peak:
            self.peak = self.open

    def down(self) -> None:
        self.open -= 1


@dataclass(slots=True, eq=False)
class ConnectionHandle:
    """One open connection as the recorder tracks it."""

    host: str
    provider: str
    client_ip: str
    domains: set[str]
    closed: bool = False


class Recorder:
    """Collects events from the simulated mail exchangers; see the module docstring."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._open: dict[int, ConnectionHandle] = {}
        self._feedback_ids = itertools.count(1)
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded so far; open connections count again from now."""
        self.started_at = self._clock()
        self.records: list[AcceptedRecord] = []
        self.rejections: list[RejectionRecord] = []
        self.drops: list[DropRecord] = []
        self.feedback: list[FeedbackRecord] = []
        self._pairs: Counter[tuple[str, str]] = Counter()
        self._gauges: dict[str, dict[str, _Gauge]] = {
            kind: {} for kind in ("domain", "host", "provider", "client", "provider_client")
        }
        # Connections open across a reset are counted again as open (not as opened).
        for handle in list(self._open.values()):
            for kind, key in self._keys(handle):
                self._gauge(kind, key).up()
                self._gauge(kind, key).opened -= 1

    # -- connections ---------------------------------------------------------------------

    def _gauge(self, kind: str, key: str) -> _Gauge:
        table = self._gauges[kind]
        gauge = table.get(key)
        if gauge is None:
            gauge = table[key] = _Gauge()
        return gauge

    @staticmethod
    def _keys(handle: ConnectionHandle) -> list[tuple[str, str]]:
        keys = [
            ("host", handle.host),
            ("provider", handle.provider),
            ("client", handle.client_ip),
            ("provider_client", f"{handle.provider}|{handle.client_ip}"),
        ]
        keys.extend(("domain", d) for d in handle.domains)
        return keys

    def connection_opened(
        self, host: str, provider: str, client_ip: str, domains: Iterable[str] = ()
    ) -> ConnectionHandle:
        """Count a new connection; ``domains`` are those it is known to be for already."""
        handle = ConnectionHandle(host, provider, client_ip, set(domains))
        for kind, key in self._keys(handle):
            self._gauge(kind, key).up()
        self._open[id(handle)] = handle
        return handle

    def connection_domain(self, handle: ConnectionHandle, domain: str) -> None:
        """Note that an open connection carries mail for ``domain``."""
        if handle.closed or domain in handle.domains:
            return
        handle.domains.add(domain)
        self._gauge("domain", domain).up()

    def connection_closed(self, handle: ConnectionHandle) -> None:
        """Count a connection as closed (idempotent)."""
        if handle.closed:
            return
        handle.closed = True
        self._open.pop(id(handle), None)
        for kind, key in self._keys(handle):
            self._gauge(kind, key).down()

    def open_connections(self, kind: str = "client", key: str | None = None) -> int:
        """Connections open now, for one key of ``kind`` or in total (``key=None``)."""
        if key is None:
            return len(self._open)
        gauge = self._gauges[kind].get(key)
        return gauge.open if gauge else 0

    def peak_connections(self, kind: str, key: str) -> int:
        """The most connections open at once for ``key`` of ``kind`` (domain, host,
        provider, client, provider_client)."""
        gauge = self._gauges[kind].get(key)
        return gauge.peak if gauge else 0

    def connections_opened(self, kind: str, key: str) -> int:
        """Connections opened for ``key`` of ``kind`` since the start (or last reset)."""
        gauge = self._gauges[kind].get(key)
        return gauge.opened if gauge else 0

    # -- messages ------------------------------------------------------------------------

    def accepted(
        self,
        message_id: str,
        recipient: str,
        domain: str,
        host: str,
        provider: str,
        client_ip: str,
        *,
        tls: bool = False,
        at: float | None = None,
        helo: str = "",
    ) -> None:
        """Record one accepted recipient of one message."""
        t = self._clock() if at is None else at
        self.records.append(
            AcceptedRecord(t, message_id, recipient, domain, host, provider, client_ip, tls, helo)
        )
        if message_id:
            self._pairs[(message_id, recipient)] += 1

    def rejected(
        self,
        reply: str,
        command: str,
        host: str,
        provider: str,
        client_ip: str,
        *,
        recipient: str = "",
        domain: str = "",
        message_id: str = "",
    ) -> None:
        """Record a negative reply (its first line gives code, enhanced code and text)."""
        first = reply.split("\r\n", 1)[0]
        code = int(first[:3])
        rest = first[4:]
        match = _ENHANCED.match(rest)
        enhanced = match.group(1) if match else ""
        text = rest[match.end() :] if match else rest
        if "\r\n" in reply:
            text = " ".join(line[4:].removeprefix(enhanced).strip() for line in reply.split("\r\n"))
        self.rejections.append(
            RejectionRecord(
                self._clock(),
                code,
                enhanced,
                text,
                command,
                host,
                provider,
                client_ip,
                recipient,
                domain,
                message_id,
            )
        )

    def dropped(
        self,
        message_id: str,
        recipients: Iterable[str],
        host: str,
        provider: str,
        client_ip: str,
    ) -> None:
        """Record a connection dropped during DATA."""
        self.drops.append(
            DropRecord(self._clock(), message_id, tuple(recipients), host, provider, client_ip)
        )

    # -- feedback ------------------------------------------------------------------------

    def feedback_planned(
        self,
        *,
        kind: str,
        format: str,
        recipient: str,
        domain: str,
        host: str,
        mail_from: str,
        message_id: str,
        postline_id: str,
        reason: str,
        status: str,
        feedback_from: str,
        feedback_to: str,
    ) -> FeedbackRecord:
        """Record a feedback item about to be sent; returns it ``pending``."""
        record = FeedbackRecord(
            id=next(self._feedback_ids),
            time=self._clock(),
            kind=kind,
            format=format,
            recipient=recipient,
            domain=domain,
            host=host,
            mail_from=mail_from,
            message_id=message_id,
            postline_id=postline_id,
            reason=reason,
            status=status,
            feedback_from=feedback_from,
            feedback_to=feedback_to,
        )
        self.feedback.append(record)
        return record

    def feedback_attempt(self, record: FeedbackRecord, target: str) -> None:
        """Count one delivery attempt of ``record`` to ``target`` (``host:port``)."""
        record.attempts += 1
        record.target = target

    def feedback_done(self, record: FeedbackRecord, *, sent: bool, reply: str) -> None:
        """Settle a pending item: ``sent`` (with the target's reply) or failed."""
        if record.state != "pending":
            return
        record.state = "sent" if sent else "failed"
        record.reply = reply
        if sent:
            record.sent_at = self._clock()

    def feedback_records(self) -> list[FeedbackRecord]:
        """Copies of every feedback record, in the order planned."""
        return [replace(r) for r in self.feedback]

    def feedback_summary(self) -> dict[str, Any]:
        """Feedback counts (see :func:`feedback_totals`)."""
        return feedback_totals(self.feedback)

    # -- queries -------------------------------------------------------------------------

    def accepted_count(self, domain: str | None = None) -> int:
        """Accepted recipients, for one domain or in total."""
        if domain is None:
            return len(self.records)
        return sum(1 for r in self.records if r.domain == domain)

    def duplicates(self) -> list[Duplicate]:
        """Every (Message-ID, recipient) pair accepted more than once."""
        return [Duplicate(mid, rcpt, n) for (mid, rcpt), n in sorted(self._pairs.items()) if n > 1]

    def duplicate_count(self) -> int:
        """Extra acceptances: the sum over duplicated pairs of (count - 1)."""
        return sum(n - 1 for n in self._pairs.values() if n > 1)

    def peak_rate(self, domain: str, window: float = 1.0) -> float:
        """Peak accepted messages per second for ``domain`` over a sliding ``window``.

        A message with several recipients of the domain counts once per recipient.
        """
        return peak_rate_of((r.time for r in self.records if r.domain == domain), window)

    def peak_provider_rate(self, provider: str, window: float = 1.0) -> float:
        """Peak accepted messages per second over all domains of ``provider``."""
        return peak_rate_of((r.time for r in self.records if r.provider == provider), window)

    def report(self, window: float = 1.0, *, details: bool = True) -> SimReport:
        """A :class:`SimReport` of everything so far; ``details=False`` leaves the per-record
        lists out (counts, peaks and duplicates stay)."""
        by_domain: dict[str, list[float]] = {}
        by_provider: dict[str, list[float]] = {}
        for r in self.records:
            by_domain.setdefault(r.domain, []).append(r.time)
            by_provider.setdefault(r.provider, []).append(r.time)
        rejected_by_code: Counter[str] = Counter()
        rejected_by_domain: Counter[str] = Counter()
        for j in self.rejections:
            rejected_by_code[f"{j.code} {j.enhanced}".strip()] += 1
            if j.domain:
                rejected_by_domain[j.domain] += 1

        def stats(kind: str) -> dict[str, ConnectionStats]:
            return {
                key: ConnectionStats(g.opened, g.peak)
                for key, g in sorted(self._gauges[kind].items())
            }

        feedback = self.feedback_summary()

        return SimReport(
            started_at=self.started_at,
            generated_at=self._clock(),
            window=window,
            accepted=len(self.records),
            rejected=len(self.rejections),
            dropped=len(self.drops),
            connections=sum(g.opened for g in self._gauges["host"].values()),
            duplicate_count=self.duplicate_count(),
            accepted_by_domain={d: len(t) for d, t in sorted(by_domain.items())},
            accepted_by_provider={p: len(t) for p, t in sorted(by_provider.items())},
            rejected_by_code=dict(sorted(rejected_by_code.items())),
            rejected_by_domain=dict(sorted(rejected_by_domain.items())),
            peak_rate_by_domain={d: peak_rate_of(t, window) for d, t in sorted(by_domain.items())},
            peak_rate_by_provider={
                p: peak_rate_of(t, window) for p, t in sorted(by_provider.items())
            },
            connections_by_domain=stats("domain"),
            connections_by_host=stats("host"),
            connections_by_provider=stats("provider"),
            connections_by_client=stats("client"),
            connections_by_provider_client=stats("provider_client"),
            duplicates=self.duplicates(),
            records=list(self.records) if details else [],
            rejections=list(self.rejections) if details else [],
            drops=list(self.drops) if details else [],
            feedback=feedback["totals"],
            feedback_by_kind=feedback["by_kind"],
            feedback_by_format=feedback["by_format"],
            feedback_records=self.feedback_records() if details else [],
        )
