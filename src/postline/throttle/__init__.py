"""Throttles as data: rules, shipped provider limits, adaptive slow-down and backends.

- ``rules``: ``ThrottleRules.load`` / ``from_toml`` validate ``[[throttle.rules]]`` and
  merge them with the shipped ``defaults.toml``; ``match`` picks a destination's bucket.
- ``adaptive``: recognise "slow down" replies; AIMD factor and suspension, pure.
- ``gcra``: the rate algorithm, pure. ``keys``: bucket and backend record names.
- ``base``: the ``ThrottleBackend`` interface; ``memory``: the in-process backend;
  ``shared``: one SQLite file shared by the worker processes of a node; ``redis``: a fleet.
- ``durations``: ``"30s"``/``"5m"`` parsing shared with the configuration.
"""

from postline.throttle.adaptive import (
    AdaptiveParams,
    AdaptiveState,
    current_factor,
    is_throttling_reply,
    on_throttled,
)
from postline.throttle.base import ThrottleBackend, ThrottleStatus
from postline.throttle.memory import MemoryThrottleBackend
from postline.throttle.rules import Destination, Limits, ThrottleRule, ThrottleRules
from postline.throttle.shared import SharedThrottleBackend
from postline.units import format_duration, parse_duration

__all__ = [
    "AdaptiveParams",
    "AdaptiveState",
    "Destination",
    "Limits",
    "MemoryThrottleBackend",
    "SharedThrottleBackend",
    "ThrottleBackend",
    "ThrottleRule",
    "ThrottleRules",
    "ThrottleStatus",
    "current_factor",
    "format_duration",
    "is_throttling_reply",
    "on_throttled",
    "parse_duration",
]
