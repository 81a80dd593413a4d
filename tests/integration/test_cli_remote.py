"""The operator's commands over a node's admin API (``--url`` / POSTLINE_URL, token in
POSTLINE_ADMIN_TOKEN), run with typer's runner against a real node over real HTTP: each
command does what it says, ``--json`` prints the API's JSON, a problem answer ends the
command non-zero with the problem's detail and fix, an unreachable node is explained,
and the token is never printed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from postline.cli import app as cli_app
from postline.runtime import Node
from support.node import api_client, free_port, running_node

NO_DELIVERY = "[delivery]\nenabled = false\n"
MSG = {"from": "ann@acme.test", "to": ["bob@example.test"], "subject": "Hi", "text": "Hello"}


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(tmp_path, NO_DELIVERY) as n:
        yield n


class Cli:
    """``postline …`` with the node's URL and an admin token in the environment."""

    def __init__(self, url: str, token: str) -> None:
        self.env = {"POSTLINE_URL": url, "POSTLINE_ADMIN_TOKEN": token, "POSTLINE_CONFIG": ""}
        self.token = token

    async def __call__(
        self, *args: str, code: int = 0, env: dict[str, str] | None = None
    ) -> Result:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_app, list(args), env={**self.env, **(env or {})}
        )
        assert result.exit_code == code, (args, result.exit_code, result.stdout, result.stderr)
        assert self.token not in result.stdout + result.stderr
        return result

    async def json(self, *args: str) -> Any:
        return json.loads((await self(*args, "--json")).stdout)


async def _token(config: Path) -> str:
    """``postline admin token create`` on the node's store: the bootstrap, no URL."""
    result = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["admin", "token", "create", "--config", str(config)],
        env={"POSTLINE_URL": ""},
    )
    assert result.exit_code == 0, result.output
    return result.stdout.splitlines()[-1]


async def test_tenant_key_and_queue_commands_over_http(node: Node, tmp_path: Path) -> None:
    assert node.api_address is not None
    host, port = node.api_address
    cli = Cli(f"http://{host}:{port}", await _token(tmp_path / "node.toml"))

    made = await cli("tenant", "create", "acme")
    key = made.stdout.splitlines()[-1]
    assert key.startswith("pl_") and "created (id " in made.stdout
    beta = await cli.json("tenant", "create", "beta")
    assert beta["tenant"]["name"] == "beta" and beta["api_key"].startswith("pl_")

    listed = await cli.json("tenant", "ls")
    assert [t["name"] for t in listed["tenants"]] == ["acme", "beta"]
    acme_id = listed["tenants"][0]["id"]
    human = (await cli("tenant", "ls")).stdout
    assert "acme" in human and acme_id in human and "ok" in human
    shown = await cli.json("tenant", "show", "acme")
    assert shown["id"] == acme_id
    assert (await cli.json("tenant", "show", acme_id))["name"] == "acme"

    # Keys: made with a scope, listed, revoked.
    made_key = await cli.json("key", "create", "acme", "--name", "mailer", "--scope", "send")
    assert made_key["key"]["scopes"] == ["send"] and made_key["secret"].startswith("pl_")
    keys = await cli.json("key", "ls", "acme")
    assert [k["name"] for k in keys["keys"]] == ["", "mailer"]
    assert "mailer" in (await cli("key", "ls", "acme")).stdout
    revoked = await cli.json("key", "revoke", "acme", made_key["key"]["id"])
    assert revoked["revoked_at"] is not None
    async with api_client(node, made_key["secret"]) as gone:
        assert (await gone.post("/v1/messages", json=MSG)).status_code == 401

    # Pause and resume: the tenant's mail is refused, then accepted.
    paused = await cli("tenant", "pause", "acme", "--reason", "spam trap hits")
    assert "paused" in paused.stdout and "spam trap hits" in paused.stdout
    async with api_client(node, key) as acme:
        assert (await acme.post("/v1/messages", json=MSG)).status_code == 403
        assert (await cli.json("tenant", "resume", "acme"))["status"]["status"] == "ok"
        for _ in range(2):
            assert (await acme.post("/v1/messages", json=MSG)).status_code == 202

    # Queues (delivery is off here, so the mail stays queued).
    queues = await cli.json("queue", "ls")
    [q] = queues["queues"]
    assert (q["domain"], q["depth"]) == ("example.test", 2)
    assert "example.test" in (await cli("queue", "ls")).stdout
    show = await cli("queue", "show", "example.test")
    assert acme_id in show.stdout and "2 queued" in show.stdout
    # Per MX site: a node that does not deliver routes nothing, and says so.
    sites = await cli.json("queue", "sites")
    assert sites["sites"] == [] and sites["domains"] == 1
    assert [(u["domain"], u["reason"], u["depth"]) for u in sites["unrouted"]] == [
        ("example.test", "no-delivery", 2)
    ]
    assert "Not routed yet" in (await cli("queue", "sites")).stdout
    held = await cli.json("queue", "suspend", "--domain", "example.test", "--duration", "1h")
    assert held["count"] == 2 and held["until"]
    assert (await cli.json("queue", "show", "example.test"))["queues"][0]["suspended"] is True
    assert (await cli.json("queue", "resume", "--domain", "example.test"))["count"] == 2
    assert (await cli.json("queue", "retry", "--tenant", acme_id))["action"] == "retry-now"

    rerouted = await cli.json(
        "queue", "reroute", "--domain", "example.test", "--host", "127.0.0.1",
        "--port", "2525", "--duration", "1h", "--reason", "maintenance",
    )  # fmt: skip
    assert (rerouted["domain"], rerouted["host"], rerouted["port"]) == (
        "example.test",
        "127.0.0.1",
        2525,
    )
    listed_q = await cli.json("queue", "ls")
    assert [r["id"] for r in listed_q["reroutes"]] == [rerouted["id"]]
    assert "127.0.0.1:2525" in (await cli("queue", "ls")).stdout
    assert (await cli.json("queue", "reroute-end", rerouted["id"]))["id"] == rerouted["id"]
    assert (await cli.json("queue", "ls"))["reroutes"] == []

    bounced = await cli.json(
        "queue", "bounce", "--tenant", acme_id, "--domain", "example.test", "--reason", "gone",
        "--yes",
    )  # fmt: skip
    assert bounced["count"] == 2
    assert (await cli.json("queue", "ls"))["queues"] == []

    # Every action is in the audit log, by this token.
    entries = await node.store.audit_entries(limit=1000)
    actions = [e.action for e in entries]
    for action in (
        "tenant.create",
        "api_key.create",
        "api_key.revoke",
        "tenant.pause",
        "queue.suspend",
        "queue.reroute",
        "queue.reroute_end",
        "queue.bounce",
    ):
        assert action in actions, action
    assert {e.actor_kind for e in entries if e.action != "admin_token.create"} == {"admin_token"}


async def test_errors_are_explained_and_exit_non_zero(node: Node, tmp_path: Path) -> None:
    assert node.api_address is not None
    host, port = node.api_address
    cli = Cli(f"http://{host}:{port}", await _token(tmp_path / "node.toml"))
    await cli("tenant", "create", "acme")

    taken = await cli("tenant", "create", "acme", code=1)
    assert taken.stdout == "" and "409" in taken.stderr and "fix:" in taken.stderr
    empty = await cli("queue", "suspend", code=1)
    assert "422" in empty.stderr
    assert "a queue selection needs a tenant, a domain or both" in empty.stderr
    assert 'fix: Send {"tenant"' in empty.stderr
    missing = await cli("key", "revoke", "acme", "no-such-key", code=1)
    assert "404" in missing.stderr and "no-such-key" in missing.stderr
    nobody = await cli("tenant", "show", "nobody", code=1)
    assert "no tenant has the id or name 'nobody'" in nobody.stderr
    bad = await cli("queue", "reroute", "--domain", "a.test", "--host", "h.test",
                    "--duration", "forever", code=1)  # fmt: skip
    assert "'forever' is not a duration" in bad.stderr

    wrong = await cli("tenant", "ls", code=1, env={"POSTLINE_ADMIN_TOKEN": "pla_" + "x" * 52})
    assert "401" in wrong.stderr and "not valid" in wrong.stderr
    assert "pla_xxxx" not in wrong.stderr
    none = await cli("tenant", "ls", code=2, env={"POSTLINE_ADMIN_TOKEN": ""})
    assert "no admin token" in none.stderr

    # --token works too, and is not printed either.
    assert (
        "acme"
        in (
            await cli("tenant", "ls", "--token", cli.token, env={"POSTLINE_ADMIN_TOKEN": ""})
        ).stdout
    )

    closed = f"http://127.0.0.1:{free_port()}"
    down = await cli("queue", "ls", code=1, env={"POSTLINE_URL": closed})
    assert f"cannot reach the admin API at {closed}" in down.stderr
    assert "fix:" in down.stderr

    # Without a URL nor a configuration file, the dual commands say what they need.
    neither = await cli("tenant", "pause", "acme", code=2, env={"POSTLINE_URL": ""})
    assert "--url" in neither.stderr and "--config" in neither.stderr


async def test_limits_of_tenants_and_keys_over_http(node: Node, tmp_path: Path) -> None:
    assert node.api_address is not None
    host, port = node.api_address
    cli = Cli(f"http://{host}:{port}", await _token(tmp_path / "node.toml"))
    key = (await cli("tenant", "create", "acme")).stdout.splitlines()[-1]

    # A tenant's limits: set some, show them with the usage, put one back to its default.
    data = await cli.json(
        "tenant", "limits", "acme", "--rate", "5", "--burst", "20", "--daily", "3"
    )
    assert data["limits"] == {
        "rate_per_second": 5,
        "burst": 20,
        "daily_quota": 3,
        "monthly_quota": 0,
        "overridden": ["rate_per_second", "burst", "daily_quota"],
    }
    async with api_client(node, key) as acme:
        assert (await acme.post("/v1/messages", json=MSG)).status_code == 202
    shown = (await cli("tenant", "show", "acme")).stdout
    assert "Limits of acme" in shown and "5/s" in shown and "1 (" in shown
    assert "[limits] default" in shown and "unlimited" in shown
    assert (await cli.json("tenant", "show", "acme"))["usage"]["day"]["used"] == 1
    human = (await cli("tenant", "limits", "acme")).stdout
    assert "daily" in human and "3" in human and "remaining" in human
    cleared = await cli.json("tenant", "limits", "acme", "--clear", "rate", "--monthly", "100")
    assert cleared["limits"]["rate_per_second"] == 0
    assert cleared["limits"]["overridden"] == ["burst", "daily_quota", "monthly_quota"]
    every = await cli.json("tenant", "limits", "acme", "--clear", "all")
    assert every["limits"]["overridden"] == []
    both = await cli("tenant", "limits", "acme", "--daily", "1", "--clear", "daily", code=2)
    assert "both --daily and --clear daily" in both.stderr
    wrong = await cli("tenant", "limits", "acme", "--clear", "hourly", code=2)
    assert "not 'hourly'" in wrong.stderr

    # A key's rate limit and scopes, changed after creation.
    made = await cli.json("key", "create", "acme", "--name", "app")
    key_id = made["key"]["id"]
    assert "(default)" in (await cli("key", "ls", "acme")).stdout
    limited = await cli.json("key", "limits", "acme", key_id, "--rate", "1", "--burst", "2")
    assert limited["limits"]["rate_per_second"] == 1 and limited["limits"]["burst"] == 2
    said = (await cli("key", "limits", "acme", key_id)).stdout
    assert "1/s burst 2" in said and "(default)" not in said
    async with api_client(node, made["secret"]) as app:
        two = {**MSG, "to": ["a@example.test", "b@example.test"]}
        assert (await app.post("/v1/messages", json=two)).status_code == 202
        assert (await app.post("/v1/messages", json=MSG)).status_code == 429
    back = await cli.json("key", "limits", "acme", key_id, "--clear", "all")
    assert back["limits"]["overridden"] == []
    scoped = await cli.json("key", "scopes", "acme", key_id, "--scope", "send", "--scope", "read")
    assert scoped["scopes"] == ["read", "send"]
    assert "scopes send" in (await cli("key", "scopes", "acme", key_id, "--all")).stdout
    neither = await cli("key", "scopes", "acme", key_id, code=2)
    assert "--all" in neither.stderr
    missing = await cli("key", "limits", "acme", "no-such-key", "--rate", "1", code=1)
    assert "404" in missing.stderr and "no live API key" in missing.stderr

    actions = [e.action for e in await node.store.audit_entries(limit=1000)]
    assert actions.count("tenant.limits") == 3 and actions.count("api_key.update") == 4
