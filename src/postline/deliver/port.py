"""What a site and the source paths need from the engine that runs them.

:class:`~postline.deliver.site.Site` and :class:`~postline.deliver.paths.SourcePaths`
depend on :class:`EnginePort`, not on :class:`~postline.deliver.engine.DeliveryEngine`
(which implements it), so they can be built and tested without an engine, and the
engine depends on them without a circle. The port is small on purpose:

* values: :class:`Settings` (timings and sizes), :class:`ThrottleGate` (the throttle
  backend and whether it answers), the metrics and whether the engine is stopping;
* the wire: :meth:`~EnginePort.connect` (an SMTP session, a :class:`Connection`) and
  :meth:`~EnginePort.outgoing` (envelope sender and bytes of a transaction);
* leased work: :meth:`~EnginePort.admit` before sending, :meth:`~EnginePort.settle` an
  attempt's replies, :meth:`~EnginePort.hand_back`, :meth:`~EnginePort.record`
  (records made elsewhere), the lease's :meth:`~EnginePort.lease_expiry` and
  :meth:`~EnginePort.is_cancelled`;
* throttling: :meth:`~EnginePort.report_throttled`, :meth:`~EnginePort.suspend` and
  :meth:`~EnginePort.barred`; and :meth:`~EnginePort.wake_admission` when a buffer has
  room again.

Sites are passed to the port as :class:`SiteRef`: the few things the engine reads of one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from postline.deliver.egress import Source
from postline.deliver.work import Host, WorkItem
from postline.metrics import Metrics
from postline.model import Reply
from postline.smtp.client import TransactionResult
from postline.store.base import AttemptRecord
from postline.throttle.base import ThrottleBackend
from postline.throttle.rules import Destination, ThrottleRules

__all__ = ["Connection", "EnginePort", "Settings", "SiteRef", "ThrottleGate"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Settings:
    """The timings and sizes sites and source paths work with (from the configuration)."""

    node_id: str
    idle_timeout: float
    """Seconds an idle connection waits for more work."""
    lease_margin: float
    """Work whose lease ends sooner than this goes back to the queue unsent."""
    buffer_window: float
    """Seconds of sending a site buffers (see :func:`~postline.deliver.site.buffer_limit`)."""
    default_connections: int
    """The connection limit of a bucket whose rule sets none."""
    connection_ttl: float
    """Lifetime of a connection slot in the throttle backend (renewed while held)."""
    site_retry: float
    """Seconds a site whose hosts would not talk stays down."""


class ThrottleGate:
    """The throttle backend with the rules that read replies, and whether it answers: a
    backend that fails a call stops all sending (fail closed) until a call succeeds."""

    def __init__(self, backend: ThrottleBackend, rules: ThrottleRules) -> None:
        self.backend = backend
        self.rules = rules
        self.healthy = True
        self.down_since: float | None = None
        """When the backend started failing (wall clock), while it does."""
        self.error = ""
        """The last error of the backend."""

    def failed(self, exc: Exception) -> None:
        """The throttle backend failed a call: nothing is sent until it answers again."""
        self.error = str(exc)
        if self.healthy:
            log.error(
                "throttle backend unavailable, sending paused: %s",
                exc,
                extra={"action": "deliver.throttle_down"},
            )
            self.down_since = time.time()
        self.healthy = False

    def ok(self) -> None:
        """The throttle backend answered a call."""
        if not self.healthy:
            log.warning("throttle backend back", extra={"action": "deliver.throttle_up"})
            self.down_since = None
        self.healthy = True

    def is_throttling(self, destination: Destination, reply: Reply) -> bool:
        """Whether ``reply`` asks ``destination`` to slow down."""
        return self.rules.is_throttling(destination, reply)


class Connection(Protocol):
    """One SMTP session (:class:`~postline.smtp.client.SMTPClient`)."""

    @property
    def usable(self) -> bool: ...

    @property
    def local_address(self) -> tuple[str, int]: ...

    async def send(
        self, mail_from: str, recipients: Sequence[str], data: bytes
    ) -> TransactionResult: ...

    async def quit(self) -> None: ...

    def abort(self) -> None: ...


class SiteRef(Protocol):
    """What the engine reads of a site it is told about."""

    @property
    def bucket(self) -> str: ...

    @property
    def destination(self) -> Destination: ...

    @property
    def source(self) -> Source: ...

    @property
    def down_until(self) -> float: ...


class EnginePort(Protocol):
    """What sites and source paths use of the engine (see the module)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def throttle(self) -> ThrottleGate: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def stopping(self) -> bool: ...

    async def connect(self, host: Host, source: Source) -> Connection:
        """An SMTP session with ``host`` from ``source``; raises
        :class:`~postline.smtp.client.SMTPClientError` or :class:`OSError`."""
        ...

    def outgoing(self, item: WorkItem) -> tuple[str, bytes]:
        """Envelope sender and the bytes to send for a transaction."""
        ...

    def admit(self, item: WorkItem, now: float) -> bool:
        """Whether ``item`` may be sent: False when its message was cancelled, its tenant
        is held or its lease runs out (it went back to the queue); recipients past their
        deadline expire and leave the item."""
        ...

    def is_cancelled(self, item: WorkItem) -> bool:
        """True (and the item forgotten) when its message was cancelled meanwhile."""
        ...

    def lease_expiry(self, item: WorkItem) -> float:
        """When the earliest lease of the item's recipients runs out."""
        ...

    def settle(
        self,
        site: SiteRef,
        item: WorkItem,
        replies: Sequence[Reply],
        host: Host | None,
        local_ip: str | None,
        *,
        after_dot: bool = False,
    ) -> None:
        """The replies of an attempt (one per recipient), recorded as outcomes."""
        ...

    def hand_back(self, items: Sequence[WorkItem], *, now: float) -> None:
        """Hand leased work back to the queue without counting an attempt."""
        ...

    def record(self, records: Iterable[AttemptRecord]) -> None:
        """Write outcomes decided elsewhere (deferrals without an attempt)."""
        ...

    async def report_throttled(self, site: SiteRef) -> None:
        """A throttling reply from ``site``'s destination: slow its bucket down (and
        suspend it when the backend says so)."""
        ...

    def suspend(self, site: SiteRef, seconds: float, items: Sequence[WorkItem]) -> None:
        """Suspend ``site``'s bucket for ``seconds``; ``items`` and the buffered work of
        every site in the bucket leave it."""
        ...

    def barred(self, site: SiteRef) -> bool:
        """True while the site may not send: down, suspended or blocked."""
        ...

    def wake_admission(self) -> None:
        """A site has room again."""
        ...
