"""What the control plane does by itself, on every node: lift the suspensions whose time
is up (:func:`postline.control.queues.expire`) and finish the deletion of tenants
(:func:`postline.control.tenants.finish_deletions`).

Any node may do either, and several at once: a suspension is lifted (and audited) by the
node whose store call removed it, and every node applies the lift to its own delivery
engine; a deletion's batches are one transaction each. The node runs :func:`run` when the
next suspension ends, when told (a suspension made on it) and every ``[queue]
scan_interval`` (a suspension made on another node).
"""

from __future__ import annotations

from postline.control import queues, tenants
from postline.control.context import ControlContext

__all__ = ["run"]


async def run(ctx: ControlContext) -> float | None:
    """One round of chores; when the next suspension ends (None: no suspension has an
    end)."""
    following = await queues.expire(ctx)
    await tenants.finish_deletions(ctx)
    return following
