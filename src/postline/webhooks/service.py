"""What tenants do with their webhook endpoints (the API's routes call these)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from postline.config import WebhooksConfig
from postline.events import event_object
from postline.model import EventType
from postline.model.ids import new_id
from postline.store.base import Event, EventLog, EventQuery, Webhook, WebhookDelivery, WebhookStore
from postline.webhooks import signing
from postline.webhooks.dispatch import Attempt, SecretUnavailable, WebhookSender
from postline.webhooks.sealing import SealedSecrets
from postline.webhooks.urls import UrlRefused, address_allowed, literal, networks, parse_url

__all__ = ["EVENT_TYPES", "Invalid", "WebhookService", "WebhookState"]

EVENT_TYPES = frozenset(t.value for t in EventType)
ROTATION_OVERLAP = 86400.0
"""How long a rotated-out secret keeps signing beside the new one."""


class Invalid(ValueError):
    """A request that cannot be carried out as given: which field, and how to fix it."""

    def __init__(self, field: str, message: str, fix: str) -> None:
        super().__init__(message)
        self.field = field
        self.fix = fix


class _Store(WebhookStore, EventLog, Protocol):
    """The roles the service uses."""


@dataclass(frozen=True, slots=True)
class WebhookState:
    """An endpoint with how its delivery stands."""

    hook: Webhook
    lag_seconds: float | None
    """Age of the oldest event not yet delivered; None when it is caught up."""
    pending_from: int | None
    """Id of that event."""
    deliveries: Mapping[str, int]


class WebhookService:
    def __init__(
        self,
        store: _Store,
        config: WebhooksConfig,
        secrets: SealedSecrets,
        *,
        on_change: Any = None,
    ) -> None:
        self.store = store
        self.config = config
        self.secrets = secrets
        self.sender = WebhookSender(config, secrets)
        self._networks = networks(config.allow_networks)
        self._on_change = on_change

    # -- validation ------------------------------------------------------------------
    def check_url(self, url: str) -> str:
        try:
            target = parse_url(url, allow_http=self.config.allow_http)
        except UrlRefused as exc:
            raise Invalid("url", f"The URL cannot receive webhooks: {exc}.", _URL_FIX) from None
        ip = literal(target.host)
        if ip is not None and not address_allowed(ip, self._networks):
            raise Invalid(
                "url",
                f"{ip} is not a public address; webhooks are not sent to private, loopback, "
                "link-local or metadata addresses.",
                "Use a public host, or list its network in [webhooks] allow_networks.",
            )
        return url

    @staticmethod
    def check_events(events: Sequence[str] | None) -> tuple[str, ...]:
        if not events:
            return ()
        unknown = sorted(set(events) - EVENT_TYPES)
        if unknown:
            raise Invalid(
                "events",
                f"Unknown event type(s): {', '.join(unknown)}.",
                f"Use any of: {', '.join(sorted(EVENT_TYPES))} (or omit for all).",
            )
        return tuple(dict.fromkeys(events))

    @staticmethod
    def check_batch_size(size: int) -> int:
        if not 1 <= size <= 1000:
            raise Invalid("batch_size", f"batch_size {size} is out of range.", "Use 1 to 1000.")
        return size

    # -- endpoints -------------------------------------------------------------------
    async def create(
        self,
        tenant_id: str,
        *,
        url: str,
        events: Sequence[str] | None = None,
        description: str = "",
        batch_size: int = 100,
    ) -> tuple[Webhook, str]:
        """A new endpoint and its secret (shown to the tenant once). It receives the
        events recorded from now on."""
        now = time.time()
        hook_id = "wh_" + new_id()
        secret = signing.new_secret()
        cursor = await self.store.latest_event_id(tenant_id)
        hook = Webhook(
            id=hook_id,
            tenant_id=tenant_id,
            url=self.check_url(url),
            events=self.check_events(events),
            description=description,
            batch_size=self.check_batch_size(batch_size),
            secret=self.secrets.seal(secret, hook_id),
            old_secret=None,
            old_secret_until=None,
            status="active",
            disabled_reason="",
            created_at=now,
            updated_at=now,
            cursor=cursor,
            next_attempt_at=now,
        )
        await self.store.create_webhook(hook)
        self._changed()
        return hook, secret

    async def get(self, tenant_id: str, hook_id: str) -> Webhook | None:
        return await self.store.get_webhook(tenant_id, hook_id)

    async def endpoints(self, tenant_id: str) -> list[Webhook]:
        return await self.store.list_webhooks(tenant_id)

    async def state(self, hook: Webhook) -> WebhookState:
        pending = await self.store.events(
            EventQuery(hook.tenant_id, after=hook.cursor, limit=1, types=hook.events)
        )
        counts = await self.store.webhook_delivery_counts(hook.id)
        if not pending:
            return WebhookState(hook, None, None, counts)
        return WebhookState(hook, max(0.0, time.time() - pending[0].at), pending[0].id, counts)

    async def update(
        self, tenant_id: str, hook_id: str, changes: Mapping[str, Any]
    ) -> Webhook | None:
        out: dict[str, Any] = {}
        if "url" in changes:
            out["url"] = self.check_url(changes["url"])
        if "events" in changes:
            out["events"] = self.check_events(changes["events"])
        if "description" in changes:
            out["description"] = changes["description"]
        if "batch_size" in changes:
            out["batch_size"] = self.check_batch_size(changes["batch_size"])
        if "events" in out or "batch_size" in out:
            # A batch being retried was chosen with the old filter or size: choose it again
            # (from the same cursor) so a retry never sends other events under the same id.
            out.update(batch_id=None, batch_last=None, batch_started=None, attempts=0)
        if "enabled" in changes:
            out["status"] = "active" if changes["enabled"] else "disabled"
            out["disabled_reason"] = "" if changes["enabled"] else "disabled by the tenant"
            out["next_attempt_at"] = time.time()
        hook = await self.store.update_webhook(tenant_id, hook_id, out, now=time.time())
        self._changed()
        return hook

    async def delete(self, tenant_id: str, hook_id: str) -> bool:
        deleted = await self.store.delete_webhook(tenant_id, hook_id)
        self._changed()
        return deleted

    async def rotate(self, tenant_id: str, hook_id: str) -> tuple[Webhook, str] | None:
        """A new secret; the current one keeps signing beside it for 24 h."""
        hook = await self.store.get_webhook(tenant_id, hook_id)
        if hook is None:
            return None
        now = time.time()
        secret = signing.new_secret()
        updated = await self.store.update_webhook(
            tenant_id,
            hook_id,
            {
                "secret": self.secrets.seal(secret, hook_id),
                "old_secret": hook.secret,
                "old_secret_until": now + ROTATION_OVERLAP,
            },
            now=now,
        )
        self._changed()
        return (updated, secret) if updated is not None else None

    async def replay(
        self, tenant_id: str, hook_id: str, *, since_event: int | None, since: float | None
    ) -> tuple[Webhook, int] | None:
        """Send again every event from ``since_event`` (or recorded at or after ``since``)
        on, in order; returns the endpoint and the id of the first event resent (0: none
        yet). A replay never skips events not sent yet."""
        hook = await self.store.get_webhook(tenant_id, hook_id)
        if hook is None:
            return None
        if since_event is not None:
            start = since_event
        else:
            first = await self.store.events(
                EventQuery(tenant_id, after=0, limit=1, since=since, types=hook.events)
            )
            start = first[0].id if first else hook.cursor + 1
        cursor = min(hook.cursor, max(0, start - 1))
        now = time.time()
        updated = await self.store.update_webhook(
            tenant_id,
            hook_id,
            {
                "cursor": cursor,
                "batch_id": None,
                "batch_last": None,
                "batch_started": None,
                "attempts": 0,
                "next_attempt_at": now,
            },
            now=now,
        )
        self._changed()
        return (updated, cursor + 1) if updated is not None else None

    async def deliveries(
        self,
        tenant_id: str,
        hook_id: str,
        *,
        status: str | None,
        before: float | None,
        limit: int,
    ) -> list[WebhookDelivery]:
        return await self.store.webhook_deliveries(
            tenant_id, hook_id, status=status, before=before, limit=limit
        )

    async def test(self, hook: Webhook) -> Attempt:
        """POST one ``test`` event to the endpoint now (not logged, not retried)."""
        now = time.time()
        event = Event(
            id=0,
            at=now,
            tenant_id=hook.tenant_id,
            type="test",
            message_id=None,
            recipient_idx=None,
            recipient=None,
            node_id=None,
            data={"webhook_id": hook.id, "description": hook.description},
        )
        obj = {**event_object(event), "id": "test_" + new_id(), "tags": [], "metadata": {}}
        try:
            return await self.sender.post(hook, "msg_" + new_id(), [obj], slot="test:" + hook.id)
        except SecretUnavailable as exc:
            return Attempt(False, None, None, f"this node cannot sign for the endpoint: {exc}")

    def close(self) -> None:
        """Close the connections test events left open."""
        self.sender.client.close_all()

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()


_URL_FIX = "Give an https:// URL with a host and no credentials, e.g. https://app.example/hooks."
