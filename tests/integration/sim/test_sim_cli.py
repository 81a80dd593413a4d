"""``python -m postline.sim``: readiness line, control API, clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import smtplib
import sys

import httpx
import pytest


async def _ready(proc: asyncio.subprocess.Process) -> tuple[dict[str, object], list[str]]:
    assert proc.stdout is not None
    lines: list[str] = []
    while True:
        raw = await asyncio.wait_for(proc.stdout.readline(), 20)
        if not raw:
            raise AssertionError(f"the simulator exited before it was ready: {lines}")
        line = raw.decode().rstrip("\n")
        lines.append(line)
        if line.startswith("{"):
            return json.loads(line), lines


async def test_cli_prints_the_ready_line_and_serves_the_control_api() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "postline.sim",
        "--domains",
        "27",
        "--seed",
        "3",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ready, lines = await _ready(proc)
        assert set(ready) == {"dns", "smtp_port", "control"}
        assert str(ready["dns"]).startswith("127.0.0.1:")
        assert f'nameservers = ["{ready["dns"]}"]' in lines
        assert f"smtp_port = {ready['smtp_port']}" in lines
        assert "[[throttle.rules]]" in lines
        base = str(ready["control"])
        assert base.startswith("http://127.0.0.1:")
        async with httpx.AsyncClient(base_url=base, timeout=5) as http:
            assert (await http.get("/healthz")).json() == {"ok": True, "running": True}
            config = (await http.get("/config")).json()
            assert config["dns"] == ready["dns"]
            assert config["domains"]["nullmx.test"] == "null_mx"
            address = config["addresses"]["gmail-smtp-in.l.google.test"]

            def send() -> None:
                with smtplib.SMTP(address, int(ready["smtp_port"]), timeout=5) as c:  # type: ignore[call-overload]
                    c.sendmail(
                        "a@sender.test", ["ann@gmail.test"], b"Message-ID: <cli@x>\r\n\r\nhi\r\n"
                    )

            await asyncio.to_thread(send)
            report = (await http.get("/report")).json()
            assert report["accepted"] == 1
            assert report["records"][0]["message_id"] == "<cli@x>"
            assert report["records"][0]["host"] == "gmail-smtp-in.l.google.test"
            summary = (await http.get("/report", params={"details": "0", "window": "5"})).json()
            assert summary["records"] == [] and summary["window"] == 5.0
            assert (await http.post("/reset")).json() == {"ok": True}
            assert (await http.get("/report")).json()["accepted"] == 0
            assert (await http.get("/nope")).status_code == 404
            assert (await http.post("/report")).status_code == 405
            assert (await http.get("/report", params={"window": "x"})).status_code == 400
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize(
    "args",
    [
        ["--control", "10.1.2.3:0"],
        ["--control", "0.0.0.0:8080"],
        ["--domains", "30", "--seed", "x"],
    ],
)
async def test_cli_refuses_bad_arguments_and_non_loopback_addresses(args: list[str]) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "postline.sim",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert out == b""
    if args[0] == "--control":
        assert b"127.0.0.0/8" in err


async def test_cli_refuses_a_config_naming_real_domains(tmp_path) -> None:
    path = tmp_path / "sim.toml"
    path.write_text('[[domains]]\nname = "gmail.com"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "postline.sim",
        "--config",
        str(path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert out == b""
    assert b"reserved" in err
