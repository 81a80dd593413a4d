"""The composition root: builds a node from its configuration, starts and stops it.

Start order: store → throttles, resolver, reputation (tenant statuses), delivery engine
→ ingest → listeners (API, submission). Stop order is the reverse: listeners close first
(no new mail is accepted), the engine hands unsent leases back, outcomes and reputation
counts are flushed, the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import logging
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvicorn

from postline.activity import ActivityCounter
from postline.api.app import create_app
from postline.api.context import ApiContext, Readiness
from postline.api.http import BoundedHttpToolsProtocol
from postline.config import Config, parse_listen, postgres_url
from postline.control import Actor, ControlContext, chores
from postline.deliver.engine import DeliveryEngine
from postline.dns.resolver import Resolver
from postline.domains.finalize import Finalizer
from postline.domains.keys import key_secret
from postline.domains.service import DomainService
from postline.errors import ConfigError, StoreUnavailable, ThrottleError
from postline.feedback.failures import FailureHandler
from postline.feedback.keys import verp_secrets
from postline.feedback.processor import FeedbackProcessor
from postline.feedback.unsubscribe import Unsubscriber
from postline.feedback.unsubscribe import headers as unsubscribe_headers
from postline.inbound.server import InboundHandler, start_inbound
from postline.ingest.service import IngestLimits, Ingestor
from postline.limits import Limiter
from postline.metrics import TOP_DOMAINS, Metrics
from postline.model.times import iso
from postline.reputation import Reputation
from postline.retention import Cleaner
from postline.schedule.shares import WorkerShare
from postline.smtp.node_counts import NodeConnections, WorkerCounts
from postline.smtp.server import AuthFailures, SessionTimeouts
from postline.store import Store, create_store
from postline.store.sqlite.core import memory_used as sqlite_memory_used
from postline.submission.server import start_submission
from postline.tenants import KeyAuthenticator
from postline.throttle.adaptive import AdaptiveParams
from postline.throttle.base import ThrottleBackend
from postline.throttle.memory import MemoryThrottleBackend
from postline.throttle.rules import ThrottleRules
from postline.throttle.shared import SharedThrottleBackend
from postline.tls import ensure_self_signed, load_server_context
from postline.webhooks.dispatch import Dispatcher
from postline.webhooks.sealing import SealedSecrets
from postline.webhooks.service import WebhookService
from postline.workers.link import WorkerLink

__all__ = [
    "SELF_SIGNED",
    "Listeners",
    "Node",
    "bind_beside",
    "bind_listen",
    "bind_listeners",
    "configure_logging",
    "listen_settings",
    "listening",
    "store_kind",
    "throttle_file",
    "tls_context",
    "worker_name",
]

log = logging.getLogger(__name__)

#: How errors name the self-signed pair of an empty ``[submission] tls_cert``.
SELF_SIGNED = "submission.tls_cert (empty: self-signed in data_dir)"
_DEPTHS_EVERY = 10.0  # seconds between readings of the deepest domains (metrics)


# The attributes every log record has; any other came from ``extra``.
_RECORD_ATTRS = frozenset(
    [*vars(logging.LogRecord("", 0, "", 0, "", None, None)), "message", "asctime", "taskName"]
)
_JSON_VALUE = (str, int, float, bool, type(None))


class _JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the fields a line
    carries in ``extra`` (``action`` always; a delivery outcome its message id, domain,
    reply and MX host)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and key not in out and isinstance(value, _JSON_VALUE):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def configure_logging(config: Config) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if config.log.format == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.log.level.upper())
    for noisy in ("aiosmtpd", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # aiosmtpd warns of every unknown command a client sends, with the client's bytes: a
    # hostile client would write the log. Its errors (a session's exception) still show.
    logging.getLogger("mail.log").setLevel(max(logging.ERROR, root.level))
    # asyncpg's pool logs a traceback each time it fails to reconnect; the store's health
    # (postline.store.health) reports an outage once, with counts.
    logging.getLogger("asyncpg.pool").setLevel(max(logging.ERROR, root.level))


def store_kind(config: Config) -> str:
    """The store for a log line: the SQLite file, or PostgreSQL's host and database
    (never the URL's credentials)."""
    if config.store.startswith(("postgresql://", "postgres://")):
        url = urlsplit(config.store)
        where = ",".join(postgres_url(config.store).hosts) or "localhost"
        return f"postgresql {where}{url.path or ''}"
    return f"sqlite {config.sqlite_path}"


def listening(**addresses: tuple[str, int] | str | None) -> str:
    """``api 127.0.0.1:8025, submission ...`` for the listeners that are open (each a
    (host, port) pair or already ``host:port``)."""
    parts = []
    for name, address in addresses.items():
        if isinstance(address, str):
            parts.append(f"{name} {address}")
        elif address:
            host, port = address
            parts.append(f"{name} {f'[{host}]' if ':' in host else host}:{port}")
    return ", ".join(parts) or "no listeners"


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the node owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind_listen(listen: str, *, setting: str = "", reuse_port: bool = False) -> socket.socket:
    """A listening socket on ``listen`` (host:port); one that cannot be bound is a
    :class:`ConfigError` naming ``setting`` (e.g. ``api.listen``) and the address."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return _bind_address(family, (host, port), listen, setting=setting, reuse_port=reuse_port)


def _cannot_listen(listen: str, setting: str, exc: OSError) -> ConfigError:
    prefix = f"{setting}: " if setting else ""
    return ConfigError(f"{prefix}cannot listen on {listen}: {exc.strerror}")


def _bind_address(
    family: socket.AddressFamily,
    address: Any,
    listen: str,
    *,
    setting: str = "",
    reuse_port: bool = False,
) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise _cannot_listen(listen, setting, exc) from exc
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@dataclass(frozen=True, slots=True)
class Listeners:
    """Sockets bound before the node starts (by the supervisor of a node's workers); a
    listener that is None is bound by the node itself."""

    api: socket.socket | None = None
    submission: socket.socket | None = None
    inbound: socket.socket | None = None
    connections: NodeConnections | None = None
    """The SMTP connections of every worker of the node, counted in shared memory."""


def listen_settings(config: Config) -> list[tuple[str, str] | None]:
    """The API, submission and inbound listeners of a node with this configuration, each
    as (setting, host:port), or None when that server does not run."""
    return [
        ("api.listen", config.api.listen) if config.api.enabled else None,
        ("submission.listen", config.submission.listen) if config.submission.enabled else None,
        ("inbound.listen", config.inbound.listen)
        if config.inbound.enabled and config.bounce.domain
        else None,
    ]


def bind_listeners(config: Config, *, api_reuse_port: bool = False) -> Listeners:
    """The listening sockets a node with this configuration serves; with
    ``api_reuse_port`` the API's is bound with ``SO_REUSEPORT``, so that
    :func:`bind_beside` can give each worker an API socket of its own. A socket that
    cannot be bound is a :class:`ConfigError` naming the setting and the address."""
    bound: list[socket.socket] = []
    socks: list[socket.socket | None] = []
    try:
        for i, wanted in enumerate(listen_settings(config)):
            sock = (
                None
                if wanted is None
                else bind_listen(wanted[1], setting=wanted[0], reuse_port=api_reuse_port and i == 0)
            )
            if sock is not None:
                bound.append(sock)
            socks.append(sock)
    except ConfigError:
        for sock in bound:
            sock.close()
        raise
    api, submission, inbound = socks
    return Listeners(api, submission, inbound)


def bind_beside(family: socket.AddressFamily, address: Any) -> socket.socket:
    """Another listening socket on ``address`` whose first socket was bound with
    ``SO_REUSEPORT``: the kernel spreads new connections over every socket of the address
    by a hash of the client's address and port."""
    return _bind_address(family, address, f"{address[0]}:{address[1]}", reuse_port=True)


def tls_context(config: Config) -> ssl.SSLContext:
    """The certificate of submission's STARTTLS (and inbound's): ``[submission] tls_cert``
    and ``tls_key``, or a self-signed pair made once in ``data_dir``. A file that cannot be
    read or used is a :class:`ConfigError` naming it and its setting."""
    s = config.submission
    if s.tls_cert:
        return load_server_context(
            Path(s.tls_cert),
            Path(s.tls_key or s.tls_cert),
            cert_setting="submission.tls_cert",
            key_setting="submission.tls_key" if s.tls_key else "submission.tls_cert",
        )
    cert, key = ensure_self_signed(config.data_dir, s.hostname or config.hostname)
    return load_server_context(cert, key, cert_setting=SELF_SIGNED, key_setting=SELF_SIGNED)


def worker_name(config: Config, share: WorkerShare) -> str:
    """The name a node's process goes by in leases, events and connection slots: the
    node's, or ``<node>.<index>`` for each of several workers."""
    return config.node_name if share.count == 1 else f"{config.node_name}.{share.index}"


def throttle_file(config: Config) -> Path:
    """The throttle state the workers of a node share (``[throttle] backend = "memory"``)."""
    return config.data_dir / "throttle.db"


async def _throttle_backend(cfg: Config, share: WorkerShare) -> ThrottleBackend:
    t = cfg.throttle
    params = AdaptiveParams(
        decrease=t.decrease,
        recover_step=t.recover_step,
        recover_interval=t.recover_interval,
        strikes=t.suspend_after,
        strike_window=t.suspend_window,
        suspend_for=t.suspend_for,
    )
    if t.backend == "memory":
        if share.count > 1:
            # One node, several processes: the limits hold for all of them together.
            return SharedThrottleBackend(throttle_file(cfg), params)
        return MemoryThrottleBackend(params)
    # Any other value is a Redis URL that the configuration checked (postline.redisurl).
    from postline.redisurl import shown
    from postline.throttle.redis import RedisThrottleBackend

    try:
        return await RedisThrottleBackend.connect(t.backend, params=params, quarantine=t.quarantine)
    except ThrottleError as exc:
        raise ConfigError(f"throttle backend {shown(t.backend)}: {exc}") from exc


def _both(*observers: Callable[..., None]) -> Callable[..., None]:
    """One observer calling each of ``observers`` with the same arguments."""

    def call(*args: Any) -> None:
        for observe in observers:
            observe(*args)

    return call


class Node:
    """One postline node. ``await node.start()``, then ``await node.stop()``."""

    def __init__(
        self,
        config: Config,
        *,
        share: WorkerShare | None = None,
        listeners: Listeners | None = None,
    ) -> None:
        self.config = config
        self.share = share or WorkerShare()
        self.listeners = listeners or Listeners()
        self.node_id = worker_name(config, self.share)
        self.metrics = Metrics()
        self.store: Store = create_store(config)
        self.engine: DeliveryEngine | None = None
        self.resolver: Resolver | None = None
        self.throttle: ThrottleBackend | None = None
        self.ingestor: Ingestor | None = None
        self.limiter: Limiter | None = None
        self.api_address: tuple[str, int] | None = None
        self.submission_address: tuple[str, int] | None = None
        sub = config.submission
        # Failed SMTP AUTH of this process; clear() lets an operator lift a lockout.
        self.auth_failures = AuthFailures(
            per_user=sub.auth_lockout_failures,
            per_address=sub.auth_lockout_address_failures,
            window=sub.auth_lockout_window,
        )
        self.inbound_address: tuple[str, int] | None = None
        self.failures: FailureHandler | None = None
        self.feedback: FeedbackProcessor | None = None
        self.reputation: Reputation | None = None
        self.activity = ActivityCounter(self.store, keep=config.dashboard.history)
        self.unsubscriber: Unsubscriber | None = None
        self.domains: DomainService | None = None
        self.webhooks: WebhookService | None = None
        self.dispatcher: Dispatcher | None = None
        self._dispatch_task: asyncio.Task[None] | None = None
        self.cleaner: Cleaner | None = None
        self._inbound: asyncio.Server | None = None
        self._api: _Uvicorn | None = None
        self._api_task: asyncio.Task[None] | None = None
        self._submission: asyncio.Server | None = None
        self._background: list[asyncio.Task[None]] = []
        self._depths_at: float | None = None
        self._depths_task: asyncio.Task[None] | None = None
        self._ready = False
        self._stopping = False
        self._stopped = asyncio.Event()
        self._link: WorkerLink | None = None
        self._chores_wake = asyncio.Event()

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def public_url(self) -> str:
        """Base of the one-click unsubscribe links: ``[api] public_url``, else
        ``http://`` and the API's address (the bound one once listening; a wildcard
        address is replaced by the host name)."""
        if self.config.api.public_url:
            return self.config.api.public_url
        host, port = self.api_address or parse_listen(self.config.api.listen)
        with contextlib.suppress(ValueError):
            if ipaddress.ip_address(host).is_unspecified:
                host = self.config.hostname
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def _unsubscribe_headers(
        self, secrets: list[bytes]
    ) -> Callable[[str, int], list[tuple[str, str]]]:
        bounce_domain = self.config.bounce.domain

        def headers(message_id: str, idx: int) -> list[tuple[str, str]]:
            return unsubscribe_headers(
                message_id,
                idx,
                secrets=secrets,
                public_url=self.public_url,
                bounce_domain=bounce_domain,
            )

        return headers

    def readiness(self) -> Readiness:
        """What /readyz answers (no store round trip: each part is a state this process
        keeps): starting, stopping, or unavailable while the store does not answer, the
        throttle backend does not answer or accepting a message is slow."""
        if self._stopping:
            return Readiness("stopping")
        if not self._ready:
            return Readiness("starting")
        reasons = []
        store = self.store.health.reason()
        if store is not None:
            reasons.append(store)
        throttle = self.engine.throttle_reason() if self.engine is not None else None
        if throttle is not None:
            reasons.append(throttle)
        ingestor = self.ingestor
        if ingestor is not None and not ingestor.acks_healthy(time.monotonic()):
            reasons.append(
                {
                    "component": "ingest",
                    "detail": "accepting a message takes longer than [node] ready_ack_budget "
                    f"({ingestor.ack_budget:g} s)",
                    "since": iso(time.time()),
                }
            )
        return Readiness("unavailable", tuple(reasons)) if reasons else Readiness()

    def _is_ready(self) -> bool:
        return self.readiness().ready

    def _health(self) -> dict[str, bool]:
        """Each part of the node's readiness (the dashboard's warnings)."""
        ingestor = self.ingestor
        return {
            "ready": self._ready,
            "throttle": self.engine is None or self.engine.throttle_healthy,
            "store_writes": self.store.health.reason() is None,
            "acks": ingestor is None or ingestor.acks_healthy(time.monotonic()),
            "delivery": self.engine is not None,
        }

    async def start(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        await self.store.open()
        rules = ThrottleRules.load(cfg.throttle.rules, include_defaults=cfg.throttle.defaults)
        self.throttle = await _throttle_backend(cfg, self.share)
        throttle = self.throttle
        d = cfg.dns
        resolver = self.resolver = Resolver(
            d.nameservers,
            timeout=d.timeout,
            min_ttl=d.min_ttl,
            max_ttl=d.max_ttl,
            negative_ttl=d.negative_ttl,
            temp_fail_ttl=d.temp_fail_ttl,
        )
        self.domains = DomainService(self.store, cfg, secret=key_secret(cfg))
        await self.domains.refresh()
        sealed = SealedSecrets(key_secret(cfg))
        if cfg.webhooks.enabled:
            self.dispatcher = Dispatcher(
                self.store, cfg.webhooks, node_id=self.node_id, secrets=sealed
            )
            self.metrics.webhooks = self.dispatcher
        self.webhooks = WebhookService(
            self.store,
            cfg.webhooks,
            sealed,
            on_change=self.dispatcher.wake if self.dispatcher else None,
        )
        secrets = verp_secrets(cfg) if cfg.bounce.domain else []
        link_secrets = secrets or verp_secrets(cfg)
        self.failures = FailureHandler(
            self.store,
            None,
            suppression=cfg.suppression,
            reporting_mta=cfg.hostname,
            notify_senders=cfg.bounce.notify_senders,
            notify_except=cfg.bounce.notify_senders_except,
            notify_only=cfg.bounce.notify_senders_only,
            metrics=self.metrics,
        )
        if cfg.delivery.enabled:
            self.engine = DeliveryEngine(
                config=cfg,
                store=self.store,
                resolver=resolver,
                rules=rules,
                throttle=throttle,
                metrics=self.metrics,
                node_id=self.node_id,
                verp_secret=secrets[0] if secrets else b"",
                share=self.share,
            )
            self.engine.on_failed = self.failures.add
            finalizer = Finalizer(
                signer_for=self.domains.signer_for,
                signs_for=self.domains.signs_for,
                unsubscribe=self._unsubscribe_headers(link_secrets),
                unsubscribe_streams=cfg.domains.list_unsubscribe_streams,
            )
            self.engine.finalizer = finalizer
            self.engine.per_recipient = finalizer.per_recipient
        # Reputation: counts outcomes, judges tenants, holds and refuses paused ones.
        # Statuses are read before the engine starts and before any mail is accepted.
        engine = self.engine
        rep = cfg.reputation
        for rate, action, value in (
            ("bounce", "warn", rep.bounce_warn),
            ("bounce", "pause", rep.bounce_pause),
            ("complaint", "warn", rep.complaint_warn),
            ("complaint", "pause", rep.complaint_pause),
        ):
            self.metrics.reputation_threshold.labels(rate, action).set(value)
        reputation = self.reputation = Reputation(
            self.store,
            cfg.reputation,
            node_id=self.node_id,
            metrics=self.metrics,
            on_hold=engine.hold_tenant if engine is not None else None,
        )
        await reputation.load()
        activity = self.activity
        if engine is not None:
            engine.on_recorded = _both(reputation.observe, activity.observe)
            await engine.start()
        self.limiter = Limiter(self.store, throttle, cfg.limits, ttl=cfg.api.key_cache_ttl)
        self.ingestor = Ingestor(
            self.store,
            node_id=self.node_id,
            hostname=cfg.hostname,
            limits=IngestLimits(
                max_recipients=cfg.api.max_recipients,
                max_age=cfg.retry.max_age,
                max_scheduled_ahead=cfg.queue.max_scheduled_ahead,
                max_message_size=cfg.submission.max_message_size,
            ),
            dispatcher=self.engine,
            metrics=self.metrics,
            lease_time=cfg.queue.lease_time,
            gate=reputation,
            ack_budget=cfg.node.ready_ack_budget,
            send_limits=self.limiter,
        )
        self.ingestor.sender_check = self.domains.check_sender
        self.ingestor.on_accepted = activity.accepted
        self._background.append(asyncio.create_task(self.domains.run(), name="domains"))
        self.failures.ingestor = self.ingestor
        self._background.append(asyncio.create_task(self.failures.run(), name="failures"))
        # One-click links are signed with the VERP secrets, also without a bounce domain.
        self.unsubscriber = Unsubscriber(
            self.store,
            secrets=link_secrets,
            node_id=self.node_id,
            metrics=self.metrics,
        )
        if secrets:
            self.feedback = FeedbackProcessor(
                self.store,
                secrets=secrets,
                suppression=cfg.suppression,
                node_id=self.node_id,
                metrics=self.metrics,
                unsubscriber=self.unsubscriber,
            )
            self.feedback.on_recorded = _both(reputation.observe, activity.observe)
            self.feedback.on_complaint = _both(reputation.complained, activity.complained)
            self._background.append(asyncio.create_task(self.feedback.run(), name="feedback"))
            if cfg.inbound.enabled:
                await self._start_inbound(secrets, self.feedback)
        auth = KeyAuthenticator(self.store, ttl=cfg.api.key_cache_ttl)
        self.metrics.on_refresh(self._refresh_metrics)
        self.metrics.store = self.store.health
        self.metrics.ready = self._is_ready
        if self.share.count > 1:
            self._link = WorkerLink(cfg.data_dir, self.share)
            await self._link.serve(self.metrics.render_own)
            self.metrics.peers = self._link.gather
        if cfg.api.enabled:
            await self._start_api(auth)
        if cfg.submission.enabled:
            await self._start_submission(auth)
        first = self.share.index == 0  # node-wide chores run in one worker
        if first:
            self._background.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        self._background.append(asyncio.create_task(reputation.run(), name="reputation"))
        self._background.append(asyncio.create_task(self._chores(), name="chores"))
        self._background.append(asyncio.create_task(activity.run(purge=first), name="activity"))
        if self.dispatcher is not None:
            self._dispatch_task = asyncio.create_task(self.dispatcher.run(), name="webhooks")
        if cfg.retention.enabled and first:
            self.cleaner = Cleaner(self.store, cfg.retention)
            self.metrics.retention = self.cleaner
            self._background.append(asyncio.create_task(self.cleaner.run(), name="retention"))
        self._ready = True
        log.info(
            "node %s ready: %s; worker %d of %d; store %s; delivery %s",
            self.node_id,
            listening(
                api=self.api_address,
                submission=self.submission_address,
                inbound=self.inbound_address,
            ),
            self.share.index + 1,
            self.share.count,
            store_kind(cfg),
            "on" if self.engine is not None else "off",
            extra={"action": "node.ready"},
        )

    async def _start_api(self, auth: KeyAuthenticator) -> None:
        assert self.ingestor is not None
        engine = self.engine
        ctx = ApiContext(
            config=self.config,
            store=self.store,
            ingestor=self.ingestor,
            auth=auth,
            throttle_state=engine.throttle_state if engine else None,
            metrics_text=self.metrics.render,
            on_pause=self._paused,
            on_cancel=engine.cancelled if engine else None,
            ready=self.readiness,
            unsubscribe=self.unsubscriber,
            webhooks=self.webhooks,
            node_id=self.node_id,
            on_tenant_status=self.reputation.refresh if self.reputation else None,
            session_secret=hashlib.sha256(
                b"postline dashboard sessions\0" + key_secret(self.config).encode()
            ).digest(),
            health=self._health,
            limiter=self.limiter,
            extra={
                "domains": self.domains,
                "pools_of": engine.pools_of if engine else None,
                "wake_queue": (lambda t, d: engine.due.enter((t, d), 0.0)) if engine else None,
                "reroutes_changed": engine.reroutes_changed if engine else None,
                "sites_of": engine.sites_of if engine else None,
                "worker": (self.share.index, self.share.count),
            },
        )
        app = create_app(ctx)
        sock = self.listeners.api or bind_listen(self.config.api.listen, setting="api.listen")
        self.api_address = sock.getsockname()[:2]
        uv_config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            timeout_keep_alive=30,
            http=BoundedHttpToolsProtocol,
            loop="none",
        )
        self._api = _Uvicorn(uv_config)
        self._api_task = asyncio.create_task(self._api.serve(sockets=[sock]), name="api")
        while not self._api.started:
            if self._api_task.done():
                self._api_task.result()
                raise ConfigError("the API server stopped during start-up")
            await asyncio.sleep(0.01)

    def _node_counts(self, listener: str) -> WorkerCounts | None:
        table = self.listeners.connections
        return None if table is None else table.worker(listener, self.share.index)

    async def _start_submission(self, auth: KeyAuthenticator) -> None:
        cfg = self.config.submission
        assert self.ingestor is not None
        tls = tls_context(self.config)
        trusted = None
        if cfg.trusted_networks:
            trusted = await self.store.get_tenant(name=cfg.trusted_tenant)
            if trusted is None:
                raise ConfigError(
                    f"submission.trusted_tenant {cfg.trusted_tenant!r} does not exist; create "
                    f"it with 'postline tenant create {cfg.trusted_tenant} --config FILE'"
                )
        host, port = parse_listen(cfg.listen)
        try:
            self._submission = await start_submission(
                cfg,
                host=host,
                port=port,
                sock=self.listeners.submission,
                node_counts=self._node_counts("submission"),
                hostname=cfg.hostname or self.config.hostname,
                ingestor=self.ingestor,
                auth=auth,
                metrics=self.metrics,
                tls_context=tls,
                trusted_tenant=trusted,
                auth_failures=self.auth_failures,
            )
        except OSError as exc:
            raise _cannot_listen(cfg.listen, "submission.listen", exc) from exc
        self.submission_address = self._submission.sockets[0].getsockname()[:2]

    async def _start_inbound(self, secrets: list[bytes], processor: FeedbackProcessor) -> None:
        b = self.config.bounce
        handler = InboundHandler(
            self.store,
            bounce_domain=b.domain,
            fbl_address=b.fbl_address or f"fbl@{b.domain}",
            secrets=secrets,
            metrics=self.metrics,
            on_stored=processor.wake,
        )
        inbound = self.config.inbound
        host, port = parse_listen(inbound.listen)
        try:
            self._inbound = await start_inbound(
                handler,
                host=host,
                port=port,
                sock=self.listeners.inbound,
                node_counts=self._node_counts("inbound"),
                hostname=self.config.hostname,
                max_message_size=inbound.max_message_size,
                tls_context=tls_context(self.config),
                timeouts=SessionTimeouts(
                    idle=inbound.timeout,
                    commands=inbound.command_time_limit,
                    data=inbound.data_timeout,
                ),
                max_connections_per_ip=inbound.max_connections_per_ip,
                max_connections=inbound.max_connections,
            )
        except OSError as exc:
            raise _cannot_listen(self.config.inbound.listen, "inbound.listen", exc) from exc
        self.inbound_address = self._inbound.sockets[0].getsockname()[:2]

    async def _refresh_metrics(self) -> None:
        """Before a scrape: counters only, so a scrape costs the same at any depth. The
        deepest domains (a ranking of every queue) are read in the background, at most
        every ``_DEPTHS_EVERY`` seconds; a scrape shows the last ranking (the very first
        one waits for it). While the store does not answer, a scrape shows the last
        figures read (and ``postline_ready`` 0) — except what the engine holds, read from
        memory: outcomes kept through an outage show in ``postline_outcomes_pending``."""
        if self.engine is not None:
            self.metrics.leased = self.engine.leased_count
            self.metrics.outcomes_pending = self.engine.recorder.pending
        self.metrics.sqlite_memory.set(sqlite_memory_used())
        try:
            self.metrics.state_counts = await self.store.state_counts()
        except StoreUnavailable as exc:
            self.store.health.failed("metrics", exc)
            return
        if self._depths_at is None:
            await self._read_depths()
        elif time.monotonic() - self._depths_at > _DEPTHS_EVERY and (
            self._depths_task is None or self._depths_task.done()
        ):
            self._depths_task = asyncio.create_task(self._read_depths(), name="depths")
        if self.engine is not None:
            self.metrics.sources = await self.engine.sources_state()

    async def _read_depths(self) -> None:
        try:
            depths = await self.store.queue_depths(TOP_DOMAINS)
        except StoreUnavailable as exc:
            self.store.health.failed("metrics", exc)
            return
        except Exception:
            log.exception("queue depths not read", extra={"action": "node.depths"})
            return
        self.metrics.queue_total, self.metrics.queue_top = depths.total, depths.top
        self.metrics.queue_oldest = depths.oldest
        self._depths_at = time.monotonic()

    def _paused(self, tenant_id: str, domain: str, paused: bool) -> None:
        """A queue hold changed through this node: its engine follows at once, and the
        chores look at the suspensions again (a new one may end before their next
        round)."""
        if self.engine is not None:
            self.engine.set_paused(tenant_id, domain, paused)
        self._chores_wake.set()

    async def _chores(self) -> None:
        """The control plane's chores (:mod:`postline.control.chores`): when the next
        suspension ends, when a hold changed here, and every ``[queue] scan_interval``."""
        engine = self.engine
        ctx = ControlContext(
            self.store,
            self.config,
            Actor.node(self.node_id),
            node_id=self.node_id,
            on_pause=engine.set_paused if engine else None,
            on_tenant_status=self.reputation.refresh if self.reputation else None,
        )
        interval = self.config.queue.scan_interval
        while True:
            following: float | None = None
            self._chores_wake.clear()
            try:
                following = await chores.run(ctx)
            except StoreUnavailable as exc:
                self.store.health.failed("maintenance", exc)
            except Exception:
                log.exception("control chores failed", extra={"action": "node.chores"})
            wait = interval if following is None else min(interval, following - time.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._chores_wake.wait(), max(0.01, wait))

    async def _housekeeping(self) -> None:
        while True:
            try:
                await self.store.purge_idempotency(time.time() - self.config.api.idempotency_ttl)
                await self.store.drop_empty_queues()
            except StoreUnavailable as exc:
                self.store.health.failed("maintenance", exc)
            except Exception:
                log.exception("housekeeping failed", extra={"action": "node.housekeeping"})
            await asyncio.sleep(600)

    async def stop(self) -> None:
        """Stop within ``[node] shutdown_timeout``: listeners first (nothing new is
        accepted), then the engine flushes (outcomes written, leases handed back)."""
        started = time.monotonic()
        deadline = started + self.config.node.shutdown_timeout

        def left(share: float = 1.0, at_most: float = 1e9) -> float:
            return max(0.1, min(at_most, (deadline - time.monotonic()) * share))

        self._ready = False
        self._stopping = True
        if self._submission is not None:
            self._submission.close()
        if self._inbound is not None:
            self._inbound.close()
        if self._api is not None:
            self._api.should_exit = True
        if self._api_task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._api_task, left(0.2, 5.0))
        if self._submission is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._submission.wait_closed(), left(0.2, 3.0))
        for task in self._background:
            task.cancel()
        if self._depths_task is not None:
            self._depths_task.cancel()
        if self._dispatch_task is not None:
            # Its stop hands every endpoint back (a batch cut short is retried, same id).
            self._dispatch_task.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._dispatch_task, left(0.2, 5.0))
        if self.webhooks is not None:
            self.webhooks.close()
        drained = None
        if self.engine is not None:
            drained = await self.engine.stop(timeout=left(0.9))
        if self.failures is not None:
            try:
                await asyncio.wait_for(self.failures.drain(), left(0.5, 5.0))
            except Exception:
                log.exception("final failures not handled", extra={"action": "node.stop"})
        if self.reputation is not None:
            await self.reputation.close()
        await self.activity.close()
        if self.resolver is not None:
            await self.resolver.aclose()
        if self.throttle is not None:
            await self.throttle.close()
        if self._link is not None:
            await self._link.close()
        await self.store.close()
        log.info(
            "node %s stopped in %.1fs: %s",
            self.node_id,
            time.monotonic() - started,
            drained if drained is not None else "delivery off, nothing to drain",
            extra={"action": "node.stopped"},
        )
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()
