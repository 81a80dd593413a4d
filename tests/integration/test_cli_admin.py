"""``postline admin token …`` and the audit entries of CLI actions, on a real SQLite store."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from postline.cli import app
from postline.config import load_config
from postline.store import create_store
from postline.store.base import AuditEntry


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(f'data_dir = "{tmp_path / "data"}"\nnode_id = "cli-test"\n')
    return path


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, [*args, "--config", str(config)])


def audit_log(config: Path) -> list[AuditEntry]:
    async def main() -> list[AuditEntry]:
        store = create_store(load_config(config, environ={}))
        await store.open()
        try:
            return await store.audit_entries()
        finally:
            await store.close()

    return asyncio.run(main())


def test_token_create_list_revoke(config: Path) -> None:
    made = cli(config, "admin", "token", "create", "--name", "deploy")
    assert made.exit_code == 0, made.output
    secret = made.stdout.splitlines()[-1]
    assert secret.startswith("pla_") and len(secret) == 56

    listed = cli(config, "admin", "token", "list")
    assert listed.exit_code == 0, listed.output
    [row] = [line.split("\t") for line in listed.stdout.splitlines()]
    token_id = row[0]
    assert row[1:4] == ["deploy", secret[:11], "store"]
    assert row[5:] == ["-", "-"]

    revoked = cli(config, "admin", "token", "revoke", token_id)
    assert revoked.exit_code == 0, revoked.output
    again = cli(config, "admin", "token", "revoke", token_id)
    assert again.exit_code == 2 and "no live admin token" in again.output

    entries = audit_log(config)
    assert [(e.action, e.target, e.actor_kind) for e in entries] == [
        ("admin_token.create", token_id, "cli"),
        ("admin_token.revoke", token_id, "cli"),
    ]
    assert secret not in repr(entries)
    assert entries[0].detail == {"name": "deploy", "prefix": secret[:11]}


def test_config_tokens_are_listed_by_hash_and_not_revocable(config: Path) -> None:
    digest = hashlib.sha256(b"pla_example").hexdigest()
    config.write_text(config.read_text() + f'[admin]\ntokens = ["sha256:{digest}"]\n')
    listed = cli(config, "admin", "token", "list")
    assert listed.stdout.split("\t")[:4] == [f"sha256:{digest[:12]}", "-", "-", "config"]
    refused = cli(config, "admin", "token", "revoke", f"sha256:{digest[:12]}")
    assert refused.exit_code == 2 and "configuration file" in refused.output


def test_config_refuses_a_token_in_place_of_its_hash(config: Path) -> None:
    config.write_text(config.read_text() + '[admin]\ntokens = ["pla_notahash"]\n')
    result = cli(config, "admin", "token", "list")
    assert result.exit_code == 2
    assert "never the token itself" in result.output and "pla_notahash" not in result.output


def test_tenant_commands_are_audited(config: Path) -> None:
    assert cli(config, "tenant", "create", "acme").exit_code == 0
    assert cli(config, "tenant", "pause", "acme", "--reason", "spam traps").exit_code == 0
    assert cli(config, "tenant", "resume", "acme").exit_code == 0
    entries = audit_log(config)
    assert [e.action for e in entries] == ["tenant.create", "tenant.pause", "tenant.resume"]
    assert {e.tenant_id for e in entries} == {entries[0].target}
    assert entries[1].detail == {
        "previous": "ok",
        "status": "paused",
        "reason": "spam traps",
        "changed": True,
    }
