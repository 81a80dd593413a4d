"""Sends tenants' events to their webhook endpoints.

An endpoint is worked like a destination's queue: a node leases it (so in a fleet one
node at a time sends to it, and a dead node's endpoints move on one lease time later),
sends its events in the order the store recorded them, one batch in flight, and retries
a failed batch — the same events under the same ``webhook-id`` — with exponential backoff
and full jitter until ``[webhooks] max_age``; then the batch is dead (logged, replayable)
and the endpoint goes on. The cursor moves only after a batch is answered 2xx (or dies),
in the same transaction that logs it: an event is sent at least once, whatever crashes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from postline import __version__
from postline.config import WebhooksConfig
from postline.errors import ConfigError, StoreUnavailable
from postline.events import event_object
from postline.model.ids import new_id
from postline.store.base import Event, EventLog, EventQuery, Webhook, WebhookDelivery, WebhookStore
from postline.store.health import StoreHealth
from postline.webhooks import signing
from postline.webhooks.client import HttpClient, HttpError
from postline.webhooks.sealing import SealedSecrets
from postline.webhooks.urls import UrlRefused, networks, parse_url, resolve

__all__ = [
    "Attempt",
    "Dispatcher",
    "SecretUnavailable",
    "WebhookSender",
    "backoff",
    "batch_id",
]

log = logging.getLogger(__name__)

_REFRESH = 1.0
"""While an endpoint keeps taking batches, its row is read again at least this often (a
change made through another node is seen within it; one through this node at once)."""

LEASE_MARGIN = 5.0
"""A POST starts only while this node's lease on the endpoint has at least ``[webhooks]
timeout`` plus this many seconds left, so it ends before another node may take over."""


_SECRET_WARN_EVERY = 600.0


class SecretUnavailable(Exception):
    """The endpoint's secret does not open with this node's secret."""


class _Store(WebhookStore, EventLog, Protocol):
    """The roles the dispatcher uses."""

    health: StoreHealth


def backoff(attempts: int, rng: random.Random, *, base: float = 5.0, cap: float = 3600.0) -> float:
    """Seconds before retry number ``attempts`` (1 = the first retry): full jitter over
    ``base`` doubling, at most ``cap``."""
    return rng.uniform(0, min(cap, base * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of one POST."""

    ok: bool
    status: int | None
    latency_ms: float | None
    error: str


class WebhookSender:
    """Builds, signs and POSTs one batch (used by the dispatcher and by the test route)."""

    def __init__(self, config: WebhooksConfig, secrets: SealedSecrets) -> None:
        self.config = config
        self.secrets = secrets
        self.networks = networks(config.allow_networks)
        self.client = HttpClient(timeout=config.timeout, user_agent=f"postline/{__version__}")

    def signing_secrets(self, hook: Webhook, now: float) -> list[str]:
        """The secrets that sign for the endpoint now; :class:`SecretUnavailable` when
        this node's secret does not open them."""
        try:
            out = [self.secrets.open(hook.secret, hook.id)]
            if hook.old_secret and hook.old_secret_until and hook.old_secret_until > now:
                out.append(self.secrets.open(hook.old_secret, hook.id))
        except ValueError as exc:
            raise SecretUnavailable(str(exc)) from None
        return out

    async def post(
        self, hook: Webhook, msg_id: str, objects: list[dict[str, Any]], *, slot: str
    ) -> Attempt:
        body = json.dumps(objects, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        now = time.time()
        headers = signing.headers(msg_id, int(now), body, self.signing_secrets(hook, now))
        try:
            target = parse_url(hook.url, allow_http=self.config.allow_http)
            address = await resolve(target, self.networks)
        except UrlRefused as exc:
            return Attempt(False, None, None, f"refused: {exc}")
        try:
            response = await self.client.post(slot, target, address, body, headers)
        except HttpError as exc:
            return Attempt(False, None, None, str(exc))
        ok = 200 <= response.status < 300
        error = "" if ok else f"HTTP {response.status}"
        if 300 <= response.status < 400:
            error += " (redirects are not followed)"
        return Attempt(ok, response.status, round(response.latency_ms, 1), error)


class Dispatcher:
    """Leases endpoints and sends their events (see module docstring)."""

    def __init__(
        self,
        store: _Store,
        config: WebhooksConfig,
        *,
        node_id: str,
        secrets: SealedSecrets,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_lease(config)
        self.store = store
        self.config = config
        self.node_id = node_id
        self.sender = WebhookSender(config, secrets)
        self.clock = clock
        self.rng = random.Random()
        self._held: dict[str, float] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self.deliveries: Counter[str] = Counter()
        """Batches by outcome: ok, failed, dead, disabled."""
        self.events_sent = 0
        self._known: dict[str, tuple[Webhook, float]] = {}
        self._secret_warned: dict[str, float] = {}
        """Per endpoint: where it stands after its last batch, and when its row was read."""
        self.lag: dict[str, float] = {}
        """Per endpoint held: age in seconds of its oldest event not yet delivered."""

    @property
    def held(self) -> list[str]:
        return list(self._held)

    def wake(self) -> None:
        """Endpoints changed, or new events were recorded: read the endpoints again and
        check them now rather than at the next poll."""
        self._known.clear()
        self._wake.set()

    async def run(self) -> None:
        renew = asyncio.create_task(self._renew_loop(), name="webhooks:renew")
        claim_every = max(1.0, self.config.poll_interval * 4)
        try:
            while True:
                room = self.config.max_endpoints - len(self._held)
                if room > 0:
                    await self._claim(room)
                await asyncio.sleep(claim_every)
        finally:
            renew.cancel()
            await self.stop()

    async def stop(self) -> None:
        """Stop sending and hand every endpoint back (a batch cut short is retried, with
        the same id, by whichever node takes the endpoint)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()
        self.sender.client.close_all()
        if self._held:
            held = list(self._held)
            self._held.clear()
            try:
                await self.store.release_webhooks(self.node_id, held)
            except Exception:
                log.exception("could not hand back webhook endpoints")

    async def _claim(self, room: int) -> None:
        now = self.clock()
        try:
            hooks = await self.store.claim_webhooks(
                self.node_id, now=now, lease_time=self.config.lease_time, limit=room
            )
        except StoreUnavailable as exc:  # logged with the store's outage
            self.store.health.failed("webhooks", exc)
            return
        except Exception:
            log.exception("claiming webhook endpoints failed")
            return
        for hook in hooks:
            self._held[hook.id] = now + self.config.lease_time
            if hook.id not in self._tasks:
                self._tasks[hook.id] = asyncio.create_task(
                    self._serve(hook.id), name=f"webhooks:{hook.id}"
                )

    async def _renew_loop(self) -> None:
        interval = self.config.lease_time / 3
        while True:
            await asyncio.sleep(interval)
            if not self._held:
                continue
            until = self.clock() + self.config.lease_time
            try:
                kept = set(await self.store.renew_webhooks(self.node_id, self.held, until=until))
            except StoreUnavailable as exc:
                self.store.health.failed("webhooks", exc)
                continue
            except Exception:
                log.exception("renewing webhook endpoints failed")
                continue
            for hook_id in self.held:
                if hook_id in kept:
                    self._held[hook_id] = until
                else:
                    self._drop(hook_id)

    def _drop(self, hook_id: str) -> None:
        self._held.pop(hook_id, None)
        self._known.pop(hook_id, None)
        self.lag.pop(hook_id, None)
        self.sender.client.close(hook_id)
        task = self._tasks.pop(hook_id, None)
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _serve(self, hook_id: str) -> None:
        try:
            while hook_id in self._held:
                delay = await self._step(hook_id)
                if delay is None:
                    break
                if delay > 0:
                    self._wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), delay)
        except asyncio.CancelledError:
            raise
        except SecretUnavailable as exc:
            # A node configured with another secret than the fleet's: say so once in a
            # while, not with a traceback every time it takes the endpoint again.
            now = self.clock()
            if now - self._secret_warned.get(hook_id, -math.inf) > _SECRET_WARN_EVERY:
                self._secret_warned[hook_id] = now
                log.error(
                    "webhook %s not sent from this node: %s",
                    hook_id,
                    exc,
                    extra={"action": "webhook.secret", "webhook": hook_id},
                )
        except Exception:
            log.exception("webhook endpoint %s failed; handing it back", hook_id)
        finally:
            if self._tasks.get(hook_id) is asyncio.current_task():
                self._tasks.pop(hook_id, None)
                if self._held.pop(hook_id, None) is not None:
                    with contextlib.suppress(Exception):
                        await self.store.release_webhooks(self.node_id, [hook_id])

    async def _step(self, hook_id: str) -> float | None:
        """Send the endpoint's next batch if there is one; how long to wait before the
        next step, or None to stop serving the endpoint."""
        poll = self.config.poll_interval
        known = self._known.pop(hook_id, None)
        if known is not None and self.clock() - known[1] < _REFRESH:
            hook: Webhook | None = known[0]
            read_at = known[1]
        else:
            read_at = self.clock()
            hook = await self.store.get_webhook(None, hook_id)
        if hook is None or hook.status != "active" or hook.lease_owner != self.node_id:
            self._drop(hook_id)
            return None
        now = self.clock()
        if hook.next_attempt_at > now:
            return min(poll * 4, hook.next_attempt_at - now)
        if self._held.get(hook_id, 0) - now < self.config.timeout + LEASE_MARGIN:
            return poll  # too close to the lease's end to start a POST: wait for renewal
        batch = await self._batch(hook)
        if not batch:
            self.lag.pop(hook_id, None)
            if hook.batch_id is not None and hook.batch_last is not None:
                # The retried batch's events are gone (retention): nothing left to send.
                await self._finish(hook, hook.batch_id, [], None, done=True, status="dead")
                return 0
            return poll
        self.lag[hook_id] = max(0.0, now - batch[0].at)
        msg_id = hook.batch_id
        if msg_id is None and len(batch) == hook.batch_size:
            # A full batch is the first batch_size events after the cursor, the same
            # whoever chooses it again (events below the read horizon never change): its
            # id is derived, nothing needs writing before the POST.
            msg_id = batch_id(hook.id, hook.cursor, batch[-1].id)
            hook = replace(hook, batch_started=now)
        elif msg_id is None:
            # A short batch could grow with new events: remember it first.
            msg_id = "msg_" + new_id()
            if not await self.store.begin_webhook_batch(
                hook.id, self.node_id, batch_id=msg_id, last=batch[-1].id, now=now
            ):
                self._drop(hook_id)
                return None
            hook = _started(hook, msg_id, batch[-1].id, now)
        objects = await self._objects(batch)
        attempt = await self.sender.post(hook, msg_id, objects, slot=hook.id)
        return await self._settle(hook, msg_id, batch, attempt, read_at)

    async def _batch(self, hook: Webhook) -> list[Event]:
        events = await self.store.events(
            EventQuery(
                tenant_id=hook.tenant_id,
                after=hook.cursor,
                limit=hook.batch_size,
                types=hook.events,
            )
        )
        if hook.batch_last is not None:
            events = [e for e in events if e.id <= hook.batch_last]
        return events

    async def _objects(self, batch: list[Event]) -> list[dict[str, Any]]:
        ids = {e.message_id for e in batch if e.message_id}
        labels = await self.store.message_labels(ids) if ids else {}
        out = []
        for e in batch:
            obj = event_object(e)
            tags, metadata = labels.get(e.message_id or "", ([], {}))
            obj["tags"] = tags
            obj["metadata"] = metadata
            out.append(obj)
        return out

    async def _settle(
        self, hook: Webhook, msg_id: str, batch: list[Event], attempt: Attempt, read_at: float
    ) -> float | None:
        now = self.clock()
        if attempt.ok:
            self.events_sent += len(batch)
            held = await self._finish(hook, msg_id, batch, attempt, done=True, status="ok")
            if held:
                # Where the endpoint now stands, without reading it back (see _REFRESH).
                moved = replace(
                    hook,
                    cursor=batch[-1].id,
                    batch_id=None,
                    batch_last=None,
                    batch_started=None,
                    attempts=0,
                    next_attempt_at=0.0,
                )
                self._known[hook.id] = (moved, read_at)
            return 0 if held else None
        if attempt.status == 410:
            log.warning(
                "webhook %s answered 410 Gone: disabled",
                hook.id,
                extra={"action": "webhook.disabled", "webhook": hook.id},
            )
            await self._finish(
                hook,
                msg_id,
                batch,
                attempt,
                done=False,
                status="failed",
                disable="the endpoint answered 410 Gone",
            )
            self._drop(hook.id)
            return None
        started = hook.batch_started or now
        if now - started >= self.config.max_age:
            log.warning(
                "webhook %s: batch %s dead after %d attempts (%s)",
                hook.id,
                msg_id,
                hook.attempts + 1,
                attempt.error,
                extra={"action": "webhook.dead", "webhook": hook.id},
            )
            held = await self._finish(hook, msg_id, batch, attempt, done=True, status="dead")
            return 0 if held else None
        delay = backoff(
            hook.attempts + 1, self.rng, base=self.config.retry_base, cap=self.config.retry_max
        )
        held = await self._finish(
            hook, msg_id, batch, attempt, done=False, status="failed", retry_at=now + delay
        )
        return delay if held else None

    async def _finish(
        self,
        hook: Webhook,
        msg_id: str,
        batch: list[Event],
        attempt: Attempt | None,
        *,
        done: bool,
        status: str,
        retry_at: float | None = None,
        disable: str | None = None,
    ) -> bool:
        now = self.clock()
        last = batch[-1].id if batch else (hook.batch_last or hook.cursor)
        delivery = WebhookDelivery(
            id=msg_id,
            webhook_id=hook.id,
            tenant_id=hook.tenant_id,
            status=status,
            first_event=batch[0].id if batch else last,
            last_event=last,
            count=len(batch),
            attempts=hook.attempts + 1,
            created_at=hook.batch_started or now,
            updated_at=now,
            response_code=attempt.status if attempt else None,
            latency_ms=attempt.latency_ms if attempt else None,
            error=attempt.error if attempt else "the batch's events are gone",
        )
        self.deliveries["disabled" if disable else status] += 1
        held = await self.store.finish_webhook_batch(
            hook.id,
            self.node_id,
            delivery,
            done=done,
            from_cursor=hook.cursor,
            next_attempt_at=retry_at if retry_at is not None else now,
            disable=disable,
        )
        if not held:
            self._drop(hook.id)
        return held


def _check_lease(config: WebhooksConfig) -> None:
    """Refuse a lease too short to ever start a POST (see :meth:`Dispatcher._step`); warn
    when sending would stall before each renewal (the lease is renewed every third of its
    time, so it has from 2/3 to all of it left)."""
    need = config.timeout + LEASE_MARGIN
    if config.lease_time <= need:
        raise ConfigError(
            f"[webhooks] lease_time ({config.lease_time:g} s) must be longer than timeout "
            f"({config.timeout:g} s) + {LEASE_MARGIN:g} s, or no webhook is ever sent; "
            f"use at least {need * 1.5:g} s"
        )
    if config.lease_time * 2 / 3 < need:
        log.warning(
            "[webhooks] lease_time (%g s) under %g s (1.5 x (timeout + %g s)): webhooks "
            "stall before each lease renewal",
            config.lease_time,
            need * 1.5,
            LEASE_MARGIN,
        )


def batch_id(hook_id: str, cursor: int, last: int) -> str:
    """The ``webhook-id`` of the full batch after ``cursor`` ending at event ``last``."""
    digest = hashlib.sha256(f"{hook_id}:{cursor}:{last}".encode()).digest()[:16]
    return "msg_" + base64.b32encode(digest).decode("ascii").rstrip("=")


def _started(hook: Webhook, msg_id: str, last: int, now: float) -> Webhook:
    return replace(hook, batch_id=msg_id, batch_last=last, batch_started=now, attempts=0)
