"""The control plane's actions: what operators (and, later, tenants) do to the service.

Each action is a function taking a :class:`ControlContext` (store, configuration, the
:class:`Actor` and the request id) that does the work and writes its audit entry; the
admin API (:mod:`postline.api.routes.admin`) and the CLI only translate to and from it.

* :mod:`postline.control.tenants`: create (with a first API key), list, show, pause,
  resume, delete;
* :mod:`postline.control.keys`: a tenant's API keys, made with scopes, listed, changed, revoked;
* :mod:`postline.control.tokens`: admin tokens, made, listed, revoked and checked;
* :mod:`postline.control.queues`: queues across tenants, viewed, suspended, resumed,
  retried now and bounced;
* :mod:`postline.control.reroutes`: a destination's mail sent to a static host for a while;
* :mod:`postline.control.audit`: the audit log, written and read;
* :mod:`postline.control.chores`: what every node does by itself — lift suspensions
  whose time is up, finish tenants' deletions;
* :mod:`postline.control.overview`, :mod:`~postline.control.standing`,
  :mod:`~postline.control.messages`, :mod:`~postline.control.lists`: what the operator
  dashboard reads — traffic per minute and the queue at a glance, tenants against the
  reputation thresholds, messages with their timeline, suppressions and sender domains.
"""

from __future__ import annotations

from postline.control import (
    audit,
    chores,
    keys,
    lists,
    messages,
    overview,
    queues,
    reroutes,
    standing,
    tenants,
    tokens,
)
from postline.control.context import Actor, ActorKind, ControlContext

__all__ = [
    "Actor",
    "ActorKind",
    "ControlContext",
    "audit",
    "chores",
    "keys",
    "lists",
    "messages",
    "overview",
    "queues",
    "reroutes",
    "standing",
    "tenants",
    "tokens",
]
