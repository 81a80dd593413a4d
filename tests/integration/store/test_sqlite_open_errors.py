"""A store that cannot be opened says which file and what usually causes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from postline.errors import StoreError
from postline.store.sqlite.backend import SQLiteStore


async def test_an_unopenable_store_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "postline.db"
    path.mkdir()  # a directory where the database file should be
    store = SQLiteStore(path)
    with pytest.raises(StoreError) as err:
        await store.open()
    message = str(err.value)
    assert str(path) in message and "disk full" in message
