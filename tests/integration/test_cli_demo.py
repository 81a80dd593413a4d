"""``postline demo`` run as an operator runs it, in a subprocess on loopback, with a tiny
message count: with ``--keep`` it keeps the node and the simulated internet running after
the summary, prints the dashboard's address and an admin token that signs in to it over
HTTP, and stops cleanly on Ctrl-C (SIGINT); without it, it says nothing about the
dashboard and exits when done."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sys
from pathlib import Path

import httpx

SRC = Path(__file__).resolve().parents[2] / "src"
POSTLINE = str(Path(sys.executable).with_name("postline"))
ARGS = ["demo", "--messages", "20", "--domains", "10", "--time-limit", "120"]
CSRF = re.compile(r'name="csrf" (?:content|value)="([^"]+)"')


def _env() -> dict[str, str]:
    """This checkout's code in the child (not whatever the venv installed)."""
    return {**os.environ, "PYTHONPATH": str(SRC), "POSTLINE_URL": "", "POSTLINE_CONFIG": ""}


async def _line(stream: asyncio.StreamReader, seen: list[str], prefix: str) -> str:
    while True:
        raw = await stream.readline()
        assert raw, f"the demo ended before printing {prefix!r}:\n" + "".join(seen)
        text = raw.decode()
        seen.append(text)
        if text.startswith(prefix):
            return text[len(prefix) :].strip()


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


async def test_demo_keep_serves_the_dashboard_until_ctrl_c() -> None:
    proc = await asyncio.create_subprocess_exec(
        POSTLINE,
        *ARGS,
        "--keep",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=_env(),
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        url = await asyncio.wait_for(_line(proc.stdout, seen, "dashboard: "), 240)
        token = await asyncio.wait_for(_line(proc.stdout, seen, "admin token: "), 10)
        output = "".join(seen)
        assert "exactly-once check" in output and "every accepted recipient" in output
        found = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/ui", url)
        assert found is not None, url
        port = int(found.group(1))
        assert token.startswith("pla_"), token

        async with httpx.AsyncClient(base_url=url.removesuffix("/ui"), timeout=30) as ui:
            r = await ui.get("/ui")
            assert r.status_code in (302, 303) and "/ui/login" in r.headers["location"]
            r = await ui.get("/ui/login")
            csrf = CSRF.search(r.text)
            assert r.status_code == 200 and csrf is not None
            r = await ui.post(
                "/ui/login", data={"csrf": csrf.group(1), "token": token, "next": "/ui"}
            )
            assert r.status_code == 303, r.text
            r = await ui.get("/ui")
            assert r.status_code == 200 and "Sign out" in r.text, r.text[:500]
            tenants = await ui.get("/ui/api/tenants")
            assert tenants.status_code == 200
            assert "demo" in tenants.text
            # The node is still delivering what it is given: the demo's tenant is there.
            r = await ui.get("/admin/v1/tenants", headers={"Authorization": f"Bearer {token}"})
            assert [t["name"] for t in r.json()["tenants"]] == ["demo"]

        proc.send_signal(signal.SIGINT)
        rest, _ = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode == 0, output + rest.decode()
        tail = rest.decode()
        assert "stopping the node" in tail and "state kept in" in tail
        assert "Traceback" not in tail
        assert not _listening(port)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_demo_without_keep_says_nothing_about_the_dashboard() -> None:
    proc = await asyncio.create_subprocess_exec(
        POSTLINE,
        *ARGS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=_env(),
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 240)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode()
    assert proc.returncode == 0, text
    assert "exactly-once check" in text
    assert "dashboard" not in text.lower() and "admin token" not in text
    assert "state kept in" not in text
