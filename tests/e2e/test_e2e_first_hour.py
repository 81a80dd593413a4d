"""A newcomer's first hour, as README.md tells it: from an empty directory, `postline
init` (with a smarthost: a loopback sink stands for the relay), `tenant create`, `serve`,
then the README's curl, swaks and smtplib examples — and the mail arrives at the sink.

The README's blocks are run as written, with only the directory and the ports replaced
(the test picks free ones) and the smarthost added to `init`.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from postline.sim.sink import Sink
from support.node import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _block(lang: str, needle: str) -> str:
    for m in _FENCE.finditer(README):
        if m.group(1) == lang and needle in m.group(2):
            return m.group(2)
    raise AssertionError(f"README has no {lang} block with {needle!r}")


def _local(text: str, directory: Path, api: int, submission: int) -> str:
    text = text.replace("~/postline-dev", str(directory))
    text = re.sub(r"\b8025\b", str(api), text)
    return re.sub(r"\b2587\b", str(submission), text)


async def _bash(script: str, env: dict[str, str]) -> str:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-ec", script, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"{script}\n{out.decode()}\n{err.decode()}"
    return out.decode()


async def test_from_an_empty_directory_to_mail_at_the_relay(tmp_path: Path) -> None:
    if shutil.which("swaks") is None:
        if os.environ.get("CI"):
            pytest.fail("swaks is missing in CI (Debian package 'swaks')")
        pytest.skip("swaks is not installed (apt-get install swaks)")
    sink = Sink()
    _, relay_port = await sink.start("127.0.0.1")
    directory = tmp_path / "postline-dev"
    api, submission = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTLINE_")}
    lines = _local(_block("sh", "postline init"), directory, api, submission).splitlines()
    init, create, serve = (ln.split("  #", 1)[0].strip() for ln in lines)
    assert init.startswith(".venv/bin/postline init") and "tenant create" in create
    # The README's init, with the ports and a smarthost (the sink) added.
    init += f" --api 127.0.0.1:{api} --submission 127.0.0.1:{submission}"
    init += f" --smarthost 127.0.0.1:{relay_port}"
    await _bash(init, env)
    key = (await _bash(f'{create}\necho "$KEY"', env)).strip().splitlines()[-1]
    assert key.startswith("pl_"), key
    env["KEY"] = key

    log = (tmp_path / "serve.log").open("wb")
    node = subprocess.Popen(serve.split(), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log)
    try:
        assert node.stdout is not None
        ready = await asyncio.wait_for(asyncio.to_thread(node.stdout.readline), 30)
        assert b'"ready"' in ready, ready

        curl = _local(
            _block("sh", "curl -s localhost:8025/v1/messages"), directory, api, submission
        )
        answer = await _bash(curl, env)
        assert '"status":"queued"' in answer.replace(" ", ""), answer
        await _bash(_local(_block("sh", "swaks "), directory, api, submission), env)
        python = _local(_block("python", "smtplib"), directory, api, submission)
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", python, env=env)
        assert await asyncio.wait_for(proc.wait(), 60) == 0

        await wait_for(lambda: sink.stats.recipients >= 3, timeout=30)
        assert sink.stats.recipients == 3
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        if node.stdout is not None:
            node.stdout.close()
        log.close()
        await sink.stop()
