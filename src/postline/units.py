"""Parsing of human-written durations and sizes used throughout the configuration.

``parse_duration`` turns ``"250ms"``, ``"30s"``, ``"5m"``, ``"1h"``, ``"3d"``, compounds such
as ``"1h30m"``, plain numbers (``90``, ``2.5``) and numeric strings (``"90"``) into seconds;
``format_duration`` writes seconds back in the same syntax. ``parse_size`` reads byte sizes.
"""

from __future__ import annotations

import math
import re

__all__ = ["DURATION_HINT", "format_duration", "parse_duration", "parse_size"]

#: The hint that ends every "not a duration" message.
DURATION_HINT = "use e.g. '30s', '5m', '1h'"

_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_PART = re.compile(rf"({_NUMBER})(ms|s|m|h|d)")
_WHOLE = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+")
_PLAIN = re.compile(_NUMBER)


def parse_duration(value: str | int | float) -> float:
    """Return ``value`` in seconds; raise ``ValueError`` naming the value when it is not one.

    Units: ``ms``, ``s``, ``m`` (minutes), ``h``, ``d``; parts may be chained from any
    units (``"1h30m"``, ``"1m30s"``). A bare number means seconds. Negative, infinite and
    NaN values are refused; zero is allowed (callers that need a positive value check it).

    >>> parse_duration("1h30m")
    5400.0
    >>> parse_duration("250ms")
    0.25
    """
    if isinstance(value, bool):  # bool is an int subclass; ``true`` is no duration
        raise ValueError(f"{value!r} is not a duration; {DURATION_HINT}")
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"{value!r} is not a duration; {DURATION_HINT}")
        return seconds
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration; {DURATION_HINT}")
    text = value.strip().lower()
    if _PLAIN.fullmatch(text):
        return float(text)
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"{value!r} is not a duration; {DURATION_HINT}")
    return sum(float(num) * _UNITS[unit] for num, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Write ``seconds`` in the syntax ``parse_duration`` reads, largest units first.

    >>> format_duration(5400)
    '1h30m'
    >>> format_duration(0.25)
    '250ms'
    """
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"cannot write {seconds!r} as a duration")
    millis = round(seconds * 1000)
    if millis == 0:
        return "0s"
    parts: list[str] = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = round(_UNITS[unit] * 1000)
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|kb|k|mb|m|gb|g|kib|mib|gib)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}


def parse_size(value: str | int) -> int:
    """Bytes from ``"25MB"``, ``"512KiB"``, ``"1000"`` or an integer."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size; use e.g. '25MB', '512KiB' or bytes")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"size {value!r} is negative")
        return value
    m = _SIZE.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a size; use e.g. '25MB', '512KiB' or a number of bytes")
    return int(float(m.group(1)) * _SIZE_UNITS[(m.group(2) or "b").lower()])
