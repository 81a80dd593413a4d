"""parse_duration and format_duration."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postline.units import DURATION_HINT, format_duration, parse_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("3d", 259200.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        (" 2M ", 120.0),
        ("90", 90.0),
        ("0", 0.0),
        (90, 90.0),
        (2.5, 2.5),
        (0, 0.0),
    ],
)
def test_parse_duration_accepts(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    [
        "5 minutes",
        "",
        "1x",
        "-5s",
        "h",
        "m5",
        "1.2.3s",
        "5 m",
        "1h-30m",
        -1,
        True,
        math.nan,
        math.inf,
    ],
)
def test_parse_duration_refuses_with_a_hint(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)  # type: ignore[arg-type]
    assert DURATION_HINT in str(info.value)
    assert repr(value) in str(info.value)


def test_parse_duration_refuses_other_types() -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.25, "250ms"), (30, "30s"), (90, "1m30s"), (5400, "1h30m"), (86400, "1d")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_duration_refuses_negative() -> None:
    with pytest.raises(ValueError):
        format_duration(-1)


@given(st.integers(min_value=0, max_value=10**10))
def test_format_then_parse_round_trips_to_the_millisecond(millis: int) -> None:
    assert parse_duration(format_duration(millis / 1000)) == pytest.approx(millis / 1000)
