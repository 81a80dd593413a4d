"""Backends under contract. Each parameter builds a fresh, empty store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from postline.store import Store
from postline.store.sqlite.backend import SQLiteStore


async def _sqlite(tmp_path: Path) -> Store:
    store = SQLiteStore(tmp_path / "postline.db")
    await store.open()
    return store


BACKENDS = {"sqlite": _sqlite}


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s = await BACKENDS[request.param](tmp_path)
    try:
        yield s
    finally:
        await s.close()
