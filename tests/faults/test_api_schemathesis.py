"""schemathesis against a running node's HTTP API, driven by its own OpenAPI document.

A ``postline serve`` process (SQLite; delivery to a closed loopback port, DNS to a
loopback port where nothing answers: nothing leaves the machine) is tested by the ``schemathesis``
command line with a tenant's API key (``/v1`` and the public routes) and, on another
node, with an admin token (``/admin/v1``). The checks: no 5xx, every status code and
content type documented for its operation, every response body valid against its
documented schema. Examples, coverage and fuzzing phases run with a few examples per
operation, and the stateful phase follows the document's links; a fixed seed keeps a run
repeatable (``POSTLINE_FUZZ=long`` runs many more examples with a random seed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from postline.control.tokens import generate_token, hash_token
from support.node import POSTLINE, NodeProcess, free_port

SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
LONG = os.environ.get("POSTLINE_FUZZ") == "long"
CHECKS = (
    "not_a_server_error,status_code_conformance,content_type_conformance,"
    "response_schema_conformance"
)

pytestmark = pytest.mark.skipif(
    SCHEMATHESIS is None, reason="schemathesis is not installed: pip install -e '.[dev]'"
)


class Api:
    def __init__(self, process: NodeProcess, key: str, admin_token: str) -> None:
        self.process = process
        self.url = f"http://{process.ready['api']}"
        self.key = key
        self.admin_token = admin_token


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    token = generate_token()
    config = tmp_path / "node.toml"
    config.write_text(f"""
data_dir = "{tmp_path / "data"}"
node_id = "schemathesis-node"
[node]
workers = 1
[api]
listen = "127.0.0.1:{free_port()}"
[submission]
enabled = false
[inbound]
enabled = false
[bounce]
domain = "bounce.api.test"
secret = "schemathesis-secret"
[delivery]
helo_hostname = "node.api.test"
tls = "disabled"
[[delivery.routes]]
domain = "*"
host = "127.0.0.1"
port = {free_port()}
[dns]
nameservers = ["127.0.0.1:{free_port()}"]
timeout = "1s"
[admin]
tokens = ["sha256:{hash_token(token)}"]
[log]
level = "warning"
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTLINE_")}
    out = subprocess.run(
        [POSTLINE, "tenant", "create", "acme", "--config", str(config)],
        capture_output=True,
        check=True,
        env=env,
    )
    key = out.stdout.decode().strip().splitlines()[-1]
    process = NodeProcess(config, tmp_path / "node.log")
    process.start(30)
    try:
        yield Api(process, key, token)
    finally:
        process.kill()
    log = (tmp_path / "node.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-4000:]


def _run(api: Api, token: str, paths: str, tmp: Path) -> None:
    assert SCHEMATHESIS is not None
    args = [
        SCHEMATHESIS,
        "run",
        f"{api.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--include-path-regex",
        paths,
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        "50" if LONG else "3",
        "--workers",
        "1",
        "--request-timeout",
        "20",
        "--suppress-health-check",
        "all",
        "--no-color",
    ]
    args += ["--max-time", "900"] if LONG else ["--seed", "1"]
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=tmp,
        timeout=1100 if LONG else 600,
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )
    (tmp / "schemathesis.out").write_text(result.stdout + result.stderr)
    failures = result.stdout.find("FAILURES")
    assert result.returncode == 0, result.stdout[max(failures, 0) :][:30000] + result.stderr[-4000:]


@pytest.mark.timeout(1200 if LONG else 300)
def test_the_tenant_api_conforms_to_its_document(api: Api, tmp_path: Path) -> None:
    _run(api, api.key, r"^/(v1/|healthz|readyz|u/)", tmp_path)


@pytest.mark.timeout(1200 if LONG else 300)
def test_the_admin_api_conforms_to_its_document(api: Api, tmp_path: Path) -> None:
    _run(api, api.admin_token, r"^/admin/v1/", tmp_path)
