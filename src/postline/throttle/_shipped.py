"""Read the shipped throttle data, ``defaults.toml``, once per process."""

from __future__ import annotations

import functools
import tomllib
from importlib import resources
from typing import Any

__all__ = ["shipped_data"]


@functools.cache
def shipped_data() -> dict[str, Any]:
    """The parsed ``postline/throttle/defaults.toml`` (treat it as read-only)."""
    text = resources.files("postline.throttle").joinpath("defaults.toml").read_text("utf-8")
    return tomllib.loads(text)
