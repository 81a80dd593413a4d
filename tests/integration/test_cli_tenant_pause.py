"""``postline tenant pause|resume|status`` against a real SQLite store."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from postline.cli import tenant
from postline.config import load_config
from postline.store import create_store
from postline.store.base import Event, EventQuery


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\nnode_id = "cli-test"\n')
    for name in ("acme", "bravo"):
        created = CliRunner().invoke(tenant.app, ["create", name, "--config", str(path)])
        assert created.exit_code == 0, created.output
    return path


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(tenant.app, [*args, "--config", str(config)])


def events(config: Path, name: str) -> list[Event]:
    async def main() -> list[Event]:
        store = create_store(load_config(config, environ={}))
        await store.open()
        try:
            t = await store.get_tenant(name=name)
            assert t is not None
            return await store.events(EventQuery(tenant_id=t.id))
        finally:
            await store.close()

    return asyncio.run(main())


def rows(config: Path, *names: str) -> list[list[str]]:
    result = cli(config, "status", *names)
    assert result.exit_code == 0, result.output
    return [line.split("\t") for line in result.stdout.splitlines()]


def test_pause_status_resume(config: Path) -> None:
    assert [r[:2] for r in rows(config)] == [["acme", "ok"], ["bravo", "ok"]]

    paused = cli(config, "pause", "acme", "--reason", "spam trap hits reported by a provider")
    assert paused.exit_code == 0, paused.output
    assert "postline tenant resume acme" in paused.stdout
    [row] = rows(config, "acme")
    assert row == [
        "acme",
        "paused",
        "bounce - (0/0)",
        "complaint - (0/0)",
        "spam trap hits reported by a provider",
    ]
    again = cli(config, "pause", "acme")
    assert again.exit_code == 1 and "paused already" in again.output

    resumed = cli(config, "resume", "acme")
    assert resumed.exit_code == 0, resumed.output
    assert rows(config, "acme")[0][:2] == ["acme", "ok"]
    not_paused = cli(config, "resume", "bravo")
    assert not_paused.exit_code == 1 and "neither paused nor warned" in not_paused.output

    got = [(e.type, e.data["by"], e.node_id) for e in events(config, "acme")]
    assert got == [("tenant_paused", "operator", "cli"), ("tenant_resumed", "operator", "cli")]
    assert events(config, "bravo") == []


def test_unknown_tenant(config: Path) -> None:
    for args in (("pause", "nobody"), ("resume", "nobody"), ("status", "nobody")):
        result = cli(config, *args)
        assert result.exit_code == 2
        assert "no tenant named 'nobody'" in result.output
