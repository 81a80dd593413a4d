"""Fixtures shared by every test directory."""

from __future__ import annotations

import os

import pytest

# The suite must never reach a real resolver or MX: every test configures the sim.
os.environ.pop("POSTLINE_DATA_DIR", None)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
