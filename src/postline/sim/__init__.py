"""``postline sim``: an internet in a box for tests and the demo.

An authoritative DNS server (:mod:`postline.sim.dns`) and mail exchangers on 127.0.0.0/8
that behave like the big providers (:mod:`postline.sim.mx`): rate limits and connection
limits with their real reply texts, greylisting, tarpits, blocklists, transient failures,
dropped connections, STARTTLS, and mailboxes scripted by local part
(:mod:`postline.sim.profiles`). Domains may also send feedback after accepting a message
(:mod:`postline.sim.feedback`): late bounces in the words of Postfix, Exim, qmail,
Exchange and Gmail, ARF complaints and auto-replies (:mod:`postline.sim.notices`).
:class:`Simulator` runs it all in the caller's event loop and :class:`Recorder` /
:class:`SimReport` tell what it saw.
"""

from __future__ import annotations

from postline.sim.config import SimConfig
from postline.sim.dns import DNSServer, Zone
from postline.sim.profiles import Behaviour, DomainSpec, MXHostSpec, Profile, behaviour_of
from postline.sim.recorder import FeedbackRecord, Recorder, SimReport, peak_rate_of
from postline.sim.runner import Simulator

__all__ = [
    "Behaviour",
    "DNSServer",
    "DomainSpec",
    "FeedbackRecord",
    "MXHostSpec",
    "Profile",
    "Recorder",
    "SimConfig",
    "SimReport",
    "Simulator",
    "Zone",
    "behaviour_of",
    "peak_rate_of",
]
