"""The examples in README.md and docs/*.md run as written.

Every ``toml`` block is a configuration the node loads (``load_config``: unknown keys and
bad values are errors), and every shell block with ``curl`` runs in bash against a running
node with the variables the text names (``$KEY``, ``$POSTLINE_ADMIN_TOKEN``,
``$TENANT_ID``…) set to real ones: each must be answered 2xx. A renamed field, a route or
query parameter that changed, a missing Content-Type — the example fails here, not for
a reader.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from postline.bounce.classify import load_rules
from postline.config import load_config
from postline.control.tokens import generate_token, hash_token
from postline.tenants import generate_key, hash_key, key_prefix
from support.node import add_tenant, api_client, running_node

ROOT = Path(__file__).resolve().parents[3]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
# Blocks that are not node configurations: the simulator's own files.
_NOT_NODE = {"sim.md"}


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def _blocks(langs: set[str]) -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        for m in _FENCE.finditer(text):
            if m.group(1) in langs:
                line = text.count("\n", 0, m.start()) + 1
                found.append(Block(path, line, m.group(1), m.group(2)))
    return found


TOML = [b for b in _blocks({"toml"}) if b.path.name not in _NOT_NODE]
SHELL = [b for b in _blocks({"sh", "bash", "shell"}) if "curl " in b.text]
# A reader runs a document's blocks in one shell, in order: so does the test.
SESSIONS = sorted({b.path for b in SHELL})


def test_the_docs_have_examples() -> None:
    assert len(TOML) >= 10 and len(SHELL) >= 5


@pytest.mark.parametrize("block", TOML, ids=[b.where for b in TOML])
def test_config_block_loads(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(block.text)
    if block.text.lstrip().startswith("[[rule]]"):
        # A bounce rules file (postline bounce classify --rules).
        rules = load_rules([path], shipped=False)
        assert rules.rules
    else:
        load_config(path, environ={})


def _curl_count(text: str) -> int:
    return len(re.findall(r"^\s*curl ", text, re.M))


@pytest.mark.parametrize("doc", SESSIONS, ids=[str(p.relative_to(ROOT)) for p in SESSIONS])
async def test_curl_examples_are_answered_2xx(doc: Path, tmp_path: Path) -> None:
    text = "\n".join(b.text for b in SHELL if b.path == doc)
    if shutil.which("curl") is None:
        if os.environ.get("CI"):
            pytest.fail("curl is missing")
        pytest.skip("curl is not installed")
    # No lookup leaves loopback: the resolvers point at a closed local port.
    extra = '[delivery]\nenabled = false\n[dns]\nnameservers = ["127.0.0.1:9"]\n'
    async with running_node(tmp_path, extra) as node:
        store = node.store
        key = await add_tenant(node, "docs")
        tenant = await store.get_tenant(name="docs")
        assert tenant is not None
        other = generate_key()
        second = await store.add_api_key(tenant.id, hash_key(other), key_prefix(other))
        admin = generate_token()
        await store.add_admin_token("docs", hash_token(admin), admin[:11])
        spare = generate_token()
        spare_token = await store.add_admin_token("spare", hash_token(spare), spare[:11])
        retired = await store.create_tenant("retired")  # the one the examples delete
        async with api_client(node, key) as api:
            hook = await api.post("/v1/webhooks", json={"url": "https://hooks.example/x"})
            assert hook.status_code == 201, hook.text
        async with api_client(node, admin) as ops:
            reroute = await ops.post(
                "/admin/v1/queues/reroute",
                json={"domain": "before.example", "host": "relay.example", "duration": "1h"},
            )
            assert reroute.status_code == 201, reroute.text
        assert node.api_address is not None
        host, port = node.api_address
        env = {
            "PATH": os.environ["PATH"],
            "KEY": key,
            "POSTLINE_ADMIN_TOKEN": admin,
            "TENANT_ID": tenant.id,
            "OLD_TENANT_ID": retired.id,
            "KEY_ID": second.id,
            "TOKEN_ID": spare_token.id,
            "HOOK": hook.json()["id"],
            "REROUTE_ID": reroute.json()["id"],
        }
        script = [
            # Each curl prints its status on a line of its own after the body.
            "curl() { command curl -sS -o /dev/null "
            '-w "status %{http_code} %{url_effective}\\n" "$@"; }'
        ]
        # The block as written, pointed at this node.
        local = r"(https?://)?(localhost|127\.0\.0\.1):8025"
        script.append(re.sub(local, f"http://{host}:{port}", text))
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            "\n".join(script),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    answers = [ln.split(" ", 2) for ln in out.decode().splitlines() if ln.startswith("status ")]
    assert len(answers) == _curl_count(text), err.decode()
    failed = [(code, url) for _, code, url in answers if not code.startswith("2")]
    assert not failed, f"{doc.relative_to(ROOT)}: {failed}"
