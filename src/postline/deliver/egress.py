"""Egress: which local address a message leaves from.

    stream (and tenant) ──▶ pool ──(weight, room, blocks, warm-up)──▶ source ──▶ Site

A **source** is one local IP address with its EHLO name, a weight and optionally a
warm-up plan (``[[delivery.sources]]``). A **pool** is a named group of sources
(``[[delivery.pools]]``); a pool with a ``tenant`` is dedicated to that tenant's mail.
``[delivery.streams]`` maps a message's stream to a pool, ``*`` covering the streams not
listed. Pure configuration and choice; the engine decides which sources are usable at a
given moment and passes that in.

Without ``[[delivery.sources]]`` there is one implicit source (``[delivery]
source_address`` and the EHLO name) in one pool ``default``: :attr:`Egress.explicit` is
False, and the engine delivers through that one-source pool like through any other (see
:attr:`Source.implicit` for what sets the implicit source apart).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from postline.config import Config
from postline.deliver.warmup import WarmupPlan, plan_day, plans

__all__ = ["IMPLICIT", "Egress", "Pool", "Source", "pick"]

#: Name of the implicit source and pool of a configuration without sources.
IMPLICIT = "default"


@dataclass(frozen=True, slots=True, eq=False)
class Source:
    """One egress address. Compared by identity: each exists once per engine."""

    name: str
    address: str | None
    """Local address to bind; None lets the system choose."""
    ehlo: str
    weight: int = 1
    plan: WarmupPlan | None = None
    warmup_start: date | None = None
    pools: tuple[str, ...] = field(default=())
    implicit: bool = False
    """The source of a configuration without ``[[delivery.sources]]``. Its throttle
    buckets carry no source name (the keys every node of a fleet shares, whatever its
    version), its outcomes name no source, and its mail has nowhere else to go: a barred
    site keeps its work, a suspended bucket defers it, and block replies strike
    nothing."""

    def warmup_day(self, now: float) -> int | None:
        """Day of the warm-up plan at ``now``, or None for a warmed source."""
        if self.plan is None or self.warmup_start is None:
            return None
        day = plan_day(self.warmup_start, now)
        return None if self.plan.warmed(day) else day


@dataclass(frozen=True, slots=True, eq=False)
class Pool:
    name: str
    sources: tuple[Source, ...]
    tenant: str = ""
    """Tenant name or id this pool is dedicated to; empty = shared."""

    def __repr__(self) -> str:
        return f"Pool({self.name!r}, {[s.name for s in self.sources]!r})"


class Egress:
    """Sources, pools and the stream mapping of one configuration."""

    def __init__(self, config: Config) -> None:
        d = config.delivery
        self.explicit = bool(d.sources)
        schedules = plans(d.warmup)
        if not self.explicit:
            only = Source(
                IMPLICIT,
                d.source_address or None,
                config.hostname,
                pools=(IMPLICIT,),
                implicit=True,
            )
            self.sources: tuple[Source, ...] = (only,)
            self.pools: dict[str, Pool] = {IMPLICIT: Pool(IMPLICIT, (only,))}
            self._stream_pool: dict[str, Pool] = {}
            self._default = self.pools[IMPLICIT]
            self._dedicated: dict[str, tuple[Pool, ...]] = {}
            self._settle()
            return
        pool_specs: list[tuple[str, list[str], str]] = [
            (p.name, p.sources, p.tenant) for p in d.pools
        ] or [(IMPLICIT, [s.name for s in d.sources], "")]
        member: dict[str, list[str]] = {}
        for pname, names, _ in pool_specs:
            for n in names:
                member.setdefault(n, []).append(pname)
        by_name = {
            s.name: Source(
                s.name,
                s.address,
                s.ehlo or config.hostname,
                s.weight,
                schedules[s.warmup] if s.warmup else None,
                s.warmup_start,
                tuple(member.get(s.name, ())),
            )
            for s in d.sources
        }
        self.sources = tuple(by_name.values())
        self.pools = {
            pname: Pool(pname, tuple(by_name[n] for n in names), tenant)
            for pname, names, tenant in pool_specs
        }
        streams = {"*": IMPLICIT, **d.streams}
        self._stream_pool = {k: self.pools[v] for k, v in streams.items() if k != "*"}
        self._default = self.pools[streams["*"]]
        dedicated: dict[str, list[Pool]] = {}
        for pool in self.pools.values():
            if pool.tenant:
                dedicated.setdefault(pool.tenant, []).append(pool)
        self._dedicated = {k: tuple(v) for k, v in dedicated.items()}
        self._settle()

    def _settle(self) -> None:
        self.used: tuple[Source, ...] = tuple(s for s in self.sources if s.pools)
        """The sources that belong to at least one pool."""
        self.only_pool: Pool | None = (
            next(iter(self.pools.values()))
            if len(self.pools) == 1 and not self._dedicated
            else None
        )
        """The pool of every message when there is only one (and it is not dedicated)."""
        self.implicit: Source | None = self.sources[0] if not self.explicit else None
        """The implicit source of a configuration without ``[[delivery.sources]]``."""

    @property
    def needs_tenant_names(self) -> bool:
        """True when some pool is dedicated to a tenant (named, perhaps, not by id)."""
        return bool(self._dedicated)

    def pool_for(self, tenant_id: str, stream: str, tenant_name: str = "") -> Pool:
        """The pool of a message: its tenant's dedicated pool (the one its stream maps to,
        when it has several), else the stream's pool unless that one is dedicated to
        another tenant, else the pool of ``*``."""
        mapped = self._stream_pool.get(stream)
        if self._dedicated:
            own = self._dedicated.get(tenant_id) or (
                self._dedicated.get(tenant_name) if tenant_name else None
            )
            if own:
                return mapped if mapped is not None and mapped in own else own[0]
            if mapped is not None and mapped.tenant:
                return self._default
        return mapped if mapped is not None else self._default


def pick(
    sources: Sequence[Source],
    usable: Callable[[Source], bool],
    rng: random.Random,
    *,
    room: Mapping[str, bool] | None = None,
) -> Source | None:
    """A source drawn by weight among the ``usable`` ones, preferring those that have
    ``room`` (a name missing from ``room`` counts as having room); None when none is
    usable."""
    cands = [s for s in sources if usable(s)]
    if len(cands) <= 1:
        return cands[0] if cands else None
    if room is not None:
        roomy = [s for s in cands if room.get(s.name, True)]
        if roomy:
            cands = roomy
            if len(cands) == 1:
                return cands[0]
    total = sum(s.weight for s in cands)
    x = rng.random() * total
    for s in cands:
        x -= s.weight
        if x < 0:
            return s
    return cands[-1]
