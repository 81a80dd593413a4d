"""docs/webhooks.md: the verification examples run as written against signed deliveries."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from postline.webhooks import signing

DOC = Path(__file__).resolve().parents[3] / "docs" / "webhooks.md"


def _example(kind: str) -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(rf"<!-- example:{kind} -->\n```\w+\n(.*?)```", text, re.S)
    assert found, f"no {kind} example in docs/webhooks.md"
    return found.group(1)


def _delivery(secrets: list[str]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps([{"id": "7", "type": "bounced", "tags": [], "metadata": {}}]).encode()
    return body, signing.headers("msg_1", int(time.time()), body, secrets)


def test_python_example() -> None:
    scope: dict[str, Any] = {}
    exec(_example("python"), scope)
    events_of = scope["events_of"]
    new, old = signing.new_secret(), signing.new_secret()
    body, headers = _delivery([new, old])
    assert events_of(body, headers, new)[0]["id"] == "7"
    assert events_of(body, headers, old)[0]["id"] == "7"
    with pytest.raises(ValueError, match="signature"):
        events_of(body + b" ", headers, new)
    with pytest.raises(ValueError, match="signature"):
        events_of(body, headers, signing.new_secret())
    stale = {**headers, "webhook-timestamp": str(int(time.time()) - 3600)}
    with pytest.raises(ValueError, match="stale"):
        events_of(body, stale, new)


def test_node_example(tmp_path: Path) -> None:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is missing (.ci/run installs nodejs)")
        pytest.skip("node is not installed")
    secret = signing.new_secret()
    body, headers = _delivery([secret])
    script = tmp_path / "verify.js"
    script.write_text(
        _example("node")
        + """
const [body, headers, secret] = JSON.parse(require("fs").readFileSync(0, "utf8"));
try { console.log(JSON.stringify(eventsOf(Buffer.from(body, "utf8"), headers, secret))); }
catch (e) { console.log("ERROR " + e.message); }
"""
    )

    def run(b: bytes, s: str) -> str:
        data = json.dumps([b.decode(), headers, s])
        out = subprocess.run(
            [node, str(script)], input=data, capture_output=True, text=True, timeout=30, check=True
        )
        return out.stdout.strip()

    assert json.loads(run(body, secret))[0]["id"] == "7"
    assert run(body + b" ", secret) == "ERROR bad webhook signature"
    assert run(body, signing.new_secret()) == "ERROR bad webhook signature"
