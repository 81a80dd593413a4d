"""The simulator: DNS server plus simulated mail exchangers, started in the caller's loop.

::

    sim = Simulator(SimConfig.standard())
    await sim.start()
    # node configuration: [dns] nameservers = [sim.dns_address]
    #                     [delivery] smtp_port = sim.smtp_port
    ...
    report = sim.report()
    await sim.stop()

Every MX host listens on its own 127.0.0.x address, all on the same port
(:attr:`Simulator.smtp_port`), because a node dials the MX on one configured port. With
``smtp_port = 0`` the simulator picks a port free on all the addresses, retrying when a
port turns out to be taken on one of them. A host whose profile is ``dead`` gets a
socket bound on its address and port that never listens, so connections are refused
and nothing else can take the place.

Feedback (late bounces, complaints, auto-replies; :mod:`postline.sim.feedback`) is sent
in the background to ``SimConfig.feedback_to``; :meth:`Simulator.settle_feedback` waits
for it, and :meth:`Simulator.stop` cancels what is still pending.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from postline.errors import ConfigError
from postline.sim.config import HostPlan, SimConfig, add_to_zone, check_address, plan_hosts
from postline.sim.dns import DNSServer, Zone
from postline.sim.feedback import Feedback
from postline.sim.mx import MXHost, SimState
from postline.sim.profiles import DomainSpec
from postline.sim.recorder import Recorder, SimReport
from postline.sim.tls import self_signed_context

__all__ = ["SimConfig", "Simulator", "toml_snippet"]

log = logging.getLogger(__name__)

_BIND_TRIES = 50


class Simulator:
    """An internet in a box on loopback; see the module docstring."""

    def __init__(self, config: SimConfig, *, recorder: Recorder | None = None) -> None:
        self.config = config
        self.recorder = recorder if recorder is not None else Recorder()
        self.feedback = Feedback(
            self.recorder,
            seed=config.seed,
            target=config.feedback_to,
            fbl_address=config.fbl_address,
            tries=config.feedback_tries,
            retry_delay=config.feedback_retry_delay,
        )
        self.state = SimState(
            self.recorder,
            seed=config.seed,
            greylist_delay=config.greylist_delay,
            slow_delay=config.slow_delay,
            idle_timeout=config.idle_timeout,
            feedback=self.feedback,
        )
        self._domains: list[DomainSpec] = list(config.domains)
        self._plans = plan_hosts(self._domains, config.first_address)
        self.zone: Zone = Zone(ttl=config.ttl)
        add_to_zone(self.zone, self._domains, self.addresses)
        self.hosts: dict[str, MXHost] = {}
        self.smtp_port = config.smtp_port
        self._dns: DNSServer | None = None
        self._reserved: dict[str, socket.socket] = {}
        self._tls: ssl.SSLContext | None = None
        self._running = False

    # -- facts -----------------------------------------------------------------------------

    @property
    def addresses(self) -> dict[str, str]:
        """MX host name → its 127.0.0.x address."""
        return {p.name: p.address for p in self._plans}

    @property
    def domains(self) -> list[DomainSpec]:
        """The simulated domains, in order."""
        return list(self._domains)

    @property
    def dns_address(self) -> str:
        """``127.0.0.1:PORT`` of the DNS server, for the node's ``[dns] nameservers``."""
        if self._dns is None:
            raise RuntimeError("the simulator is not started")
        return self._dns.address

    @property
    def dns(self) -> DNSServer:
        """The running DNS server."""
        if self._dns is None:
            raise RuntimeError("the simulator is not started")
        return self._dns

    @property
    def running(self) -> bool:
        return self._running

    def throttle_hints(self) -> list[dict[str, Any]]:
        """The node throttle rules meant for this configuration (see SimConfig)."""
        return self.config.throttle_hints()

    def node_config(self, *, hints: bool = True, helo_hostname: str = "") -> str:
        """The node configuration snippet that points a node at this simulator (and, with
        ``helo_hostname``, names the node in EHLO)."""
        return toml_snippet(
            self.dns_address,
            self.smtp_port,
            self.throttle_hints() if hints else [],
            helo_hostname=helo_hostname,
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Generate the TLS certificate, bind every MX host and start the DNS server."""
        if self._running:
            raise RuntimeError("the simulator is already started")
        live = [p for p in self._plans if not p.profile.dead]
        if any(p.profile.tls for p in live):
            names = [p.name for p in live]
            self._tls = self_signed_context(names, [p.address for p in live])
        self.hosts = {p.name: MXHost(p, self.state, self._tls) for p in self._plans}
        try:
            await self._bind()
            self._dns = DNSServer(self.zone, host=self.config.dns_host, port=self.config.dns_port)
            await self._dns.start()
        except BaseException:
            await self._close_hosts()
            self._dns = None
            raise
        self._running = True
        log.debug(
            "simulator started: dns %s, smtp port %d, %d hosts",
            self._dns.address,
            self.smtp_port,
            len(self.hosts),
            extra={"action": "sim.start"},
        )

    async def stop(self) -> None:
        """Close every listener and connection and the DNS server (idempotent); feedback
        still pending is cancelled and recorded as failed."""
        self._running = False
        await self._close_hosts()
        await self.feedback.close()
        if self._dns is not None:
            dns, self._dns = self._dns, None
            await dns.stop()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _close_hosts(self) -> None:
        for host in self.hosts.values():
            await host.close()
        for sock in self._reserved.values():
            sock.close()
        self._reserved.clear()

    async def _bind(self) -> None:
        fixed = self.config.smtp_port
        tries = 1 if fixed else _BIND_TRIES
        for attempt in range(tries):
            try:
                self.smtp_port = await self._bind_all(fixed)
                return
            except OSError as exc:
                await self._close_hosts()
                if exc.errno == errno.EACCES:
                    raise ConfigError(f"cannot bind SMTP port {fixed}: {exc}") from exc
                if attempt == tries - 1:
                    raise
                log.debug("port taken, retrying: %s", exc, extra={"action": "sim.bind_retry"})

    async def _bind_all(self, port: int) -> int:
        for plan in self._plans:
            port = await self._bind_host(plan, port)
        return port

    async def _bind_host(self, plan: HostPlan, port: int) -> int:
        """Bind ``plan``'s address on ``port`` (0: any; the chosen one is returned)."""
        if plan.profile.dead:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((plan.address, port))
            except OSError:
                sock.close()
                raise
            self._reserved[plan.name] = sock
            return int(sock.getsockname()[1])
        host = self.hosts[plan.name]
        await host.listen(port)
        return host.port

    # -- changes while running ---------------------------------------------------------------

    def add_domain(self, domain: DomainSpec) -> None:
        """Add a domain: before start any domain; after start only one whose MX hosts
        already exist (its DNS records appear at once)."""
        domains = [*self._domains, domain]
        plans = plan_hosts(domains, self.config.first_address)
        if self.hosts:
            missing = [p.name for p in plans if p.name not in self.hosts]
            if missing:
                raise ConfigError(
                    f"domain {domain.name!r} needs MX host(s) {', '.join(missing)} that are "
                    "not running; add it before start"
                )
        self._domains = domains
        self._plans = plans
        for plan in plans:
            host = self.hosts.get(plan.name)
            if host is not None:
                host.domains.update(plan.domains)
        add_to_zone(self.zone, [domain], self.addresses)

    # -- results ---------------------------------------------------------------------------

    def report(self, window: float | None = None, *, details: bool = True) -> SimReport:
        """Everything seen so far (peak rates over ``window``, default ``rate_window``)."""
        return self.recorder.report(window or self.config.rate_window, details=details)

    def reset(self, *, state: bool = False) -> None:
        """Forget the records; with ``state=True`` also greylisting, rate windows, drop
        memory, dice history and the feedback format rotation."""
        self.recorder.reset()
        if state:
            self.state.reset()
            self.feedback.reset()

    # -- feedback ----------------------------------------------------------------------------

    def set_feedback_to(self, target: str | None) -> None:
        """Send feedback to ``"HOST:PORT"`` (127.0.0.0/8) from now on, retries included;
        None: nowhere. ConfigError for anything else."""
        self.feedback.set_target(target)

    def set_fbl_address(self, address: str | None) -> None:
        """Send complaints to ``address`` from now on; None: to the envelope sender."""
        self.feedback.fbl_address = None if address is None else check_address(address)

    async def settle_feedback(self, timeout: float | None = None) -> bool:
        """Wait until every planned feedback item is sent or failed, at most ``timeout``
        seconds; True when none is pending."""
        return await self.feedback.settle(timeout)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def toml_snippet(
    dns_address: str,
    smtp_port: int,
    hints: Iterable[dict[str, Any]] = (),
    *,
    helo_hostname: str = "",
) -> str:
    """The node configuration that points at a simulator, with optional throttle rules."""
    lines = [
        "[dns]",
        f"nameservers = [{_toml_value(dns_address)}]",
        "",
        "[delivery]",
        f"smtp_port = {smtp_port}",
    ]
    if helo_hostname:
        lines.append(f"helo_hostname = {_toml_value(helo_hostname)}")
    for hint in hints:
        lines += ["", "[[throttle.rules]]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in hint.items()]
    return "\n".join(lines) + "\n"
