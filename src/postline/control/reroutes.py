"""Reroutes: an operator sends a destination's mail to a static host for a while.

A reroute is a temporary ``[[delivery.routes]]`` entry kept in the store: mail to one
recipient domain, or to every domain whose mail exchangers match a throttle rule (the
``provider``, as the rules and ``[[delivery.warmup.caps]]`` name it: ``google``, or a
site like ``default:site=mx1.example.net``), goes to ``host:port`` instead, until its
time is up, an operator resumes the selection or deletes the reroute. Reroutes come
before the configured routes. Every delivery engine reads them at each queue scan
(``[queue] scan_interval``) and when its time is up; the node that serves the request
at once. Mail being delivered when a reroute starts or ends finishes where it went.
"""

from __future__ import annotations

import ipaddress
import re
import time

from postline.control import audit
from postline.control.context import ControlContext
from postline.errors import NotFound, ValidationError
from postline.model.ids import new_id
from postline.store.base import Reroute

__all__ = ["MAX_DURATION", "active", "check_host", "lift", "list_reroutes", "remove", "reroute"]

MAX_DURATION = 30 * 86400.0
"""The longest a reroute may last (a lasting route belongs in ``[[delivery.routes]]``)."""

_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")
_PROVIDER = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}(?::[a-z]+=[a-z0-9.*_-]{1,253})?")


def _detail(r: Reroute) -> dict[str, object]:
    return {
        "id": r.id,
        "domain": r.domain or None,
        "provider": r.provider or None,
        "host": r.host,
        "port": r.port,
        "until": r.until,
        "reason": r.reason,
    }


def _target(r: Reroute) -> str:
    return f"domain:{r.domain}" if r.domain else f"provider:{r.provider}"


async def _changed(ctx: ControlContext) -> None:
    if ctx.on_reroute is not None:
        await ctx.on_reroute()


def check_host(host: str) -> str:
    host = host.strip()
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if not _HOST.fullmatch(host):
        raise ValidationError(
            f"{host!r} is not a host name or IP address",
            field="host",
            fix="Name the relay as a host name (e.g. 'relay.example.net') or an IP address.",
        )
    return host.rstrip(".").lower()


async def reroute(
    ctx: ControlContext,
    *,
    domain: str | None,
    provider: str | None,
    host: str,
    port: int,
    duration: float,
    reason: str = "",
) -> Reroute:
    """Send the selected destination's mail to ``host:port`` for ``duration`` seconds;
    replaces a reroute of the same destination."""
    if bool(domain) == bool(provider):
        raise ValidationError(
            "a reroute names a domain or a provider (exactly one)",
            field="domain",
            fix='Send {"domain": "example.com", ...} or {"provider": "google", ...}; routes '
            "are per destination, so a tenant cannot be rerouted alone.",
        )
    if provider and not _PROVIDER.fullmatch(provider):
        raise ValidationError(
            f"{provider!r} is not a provider",
            field="provider",
            fix="Name a throttle rule (e.g. 'google', 'microsoft', a rule of yours) or a "
            "site as the warm-up caps name it (e.g. 'default:site=mx1.example.net').",
        )
    if not 1 <= port <= 65535:
        raise ValidationError(
            f"port {port} is out of range", field="port", fix="Use a TCP port, 1-65535."
        )
    if not 0 < duration <= MAX_DURATION:
        raise ValidationError(
            "a reroute lasts more than 0 seconds and at most 30 days",
            field="duration",
            fix="Use e.g. '30m', '2h' or '1d'; a lasting route belongs in [[delivery.routes]].",
        )
    now = time.time()
    found = Reroute(
        id=new_id(),
        domain=domain or "",
        provider=provider or "",
        host=check_host(host),
        port=port,
        created_at=now,
        until=now + duration,
        reason=reason.strip()[:1000],
    )
    await ctx.store.add_reroute(found)
    await _changed(ctx)
    await audit.record(ctx, "queue.reroute", _target(found), detail=_detail(found))
    return found


async def list_reroutes(ctx: ControlContext) -> list[Reroute]:
    """The reroutes in force, oldest first, after removing (and auditing) those whose
    time is up."""
    now = time.time()
    out = []
    for r in await ctx.store.reroutes():
        if r.active(now):
            out.append(r)
        elif await ctx.store.remove_reroute(r.id) is not None:
            await audit.record(
                ctx, "queue.reroute_end", _target(r), detail={**_detail(r), "expired": True}
            )
    return out


async def remove(ctx: ControlContext, reroute_id: str) -> Reroute:
    """End a reroute now: the destination's mail goes where its route says again."""
    found = await ctx.store.remove_reroute(reroute_id)
    if found is None:
        raise NotFound(f"no reroute has id {reroute_id!r}")
    await _changed(ctx)
    await audit.record(ctx, "queue.reroute_end", _target(found), detail=_detail(found))
    return found


async def lift(ctx: ControlContext, *, domain: str | None, provider: str | None) -> list[Reroute]:
    """End the reroutes of exactly this destination (``resume``); those ended."""
    ended = []
    for r in await ctx.store.reroutes():
        same = (r.domain or None, r.provider or None) == (domain, provider)
        if same and await ctx.store.remove_reroute(r.id) is not None:
            ended.append(r)
            await audit.record(ctx, "queue.reroute_end", _target(r), detail=_detail(r))
    if ended:
        await _changed(ctx)
    return ended


def active(reroutes: list[Reroute], now: float) -> list[Reroute]:
    """Those of ``reroutes`` in force at ``now``."""
    return [r for r in reroutes if r.active(now)]
