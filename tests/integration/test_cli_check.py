"""``postline check FILE``: the pre-flight check from the command line, against a DNS
server of the sim's on loopback — without a tenant (what the From domain publishes)
and with one (its verified domain signs), its output, JSON and exit statuses."""

from __future__ import annotations

import asyncio
import json
import os
from email.utils import formatdate
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postline.cli import app
from postline.config import load_config
from postline.dkim import check as check_records
from postline.dkim import make_resolver
from postline.domains.keys import key_secret
from postline.domains.service import DomainService
from postline.sim.dns import DNSServer, Zone
from postline.store import create_store
from support.node import POSTLINE

GOOD = (
    "From: Shop <orders@shop.test>\r\n"
    "To: ann@inbox.test\r\n"
    "Subject: Your order has shipped\r\n"
    f"Date: {formatdate(usegmt=True)}\r\n"
    "Message-ID: <1234@shop.test>\r\n"
    "\r\n"
    "It shipped.\r\n"
).encode()
BROKEN = (
    b"From: a@shop.test\r\nFrom: b@shop.test\r\nTo: ann@inbox.test\r\nSubject: s\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\n" + b"x" * 1200 + b"\r\n"
)


def write_config(tmp_path: Path, dns: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(
        f"""
data_dir = "{tmp_path / "data"}"
node_id = "cli-test"
[dns]
nameservers = ["{dns}"]
timeout = "1s"
[delivery]
helo_hostname = "node.postline.test"
[log]
level = "warning"
"""
    )
    return path


async def postline(*args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTLINE_")}
    process = await asyncio.create_subprocess_exec(
        POSTLINE,
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def line(output: str, check: str) -> str:
    found = [ln for ln in output.splitlines() if ln.split()[1:2] == [check]]
    assert found, f"no {check} line in:\n{output}"
    return found[0]


async def test_without_a_tenant_reports_what_the_from_domain_publishes(tmp_path: Path) -> None:
    zone = Zone(
        txt={
            "shop.test": ["v=spf1 a:node.postline.test ~all"],
            "_dmarc.shop.test": ["v=DMARC1; p=reject"],
        }
    )
    async with DNSServer(zone) as dns_server:
        config = write_config(tmp_path, dns_server.address)
        message = tmp_path / "good.eml"
        message.write_bytes(GOOD)
        code, out, err = await postline("check", str(message), "--config", str(config))
        assert code == 0, out + err
        assert line(out, "spf").startswith("ok") and "authorises this node" in line(out, "spf")
        assert line(out, "dmarc").startswith("ok") and "p=reject" in line(out, "dmarc")
        assert line(out, "dkim").startswith("WARNING") and "--tenant" in line(out, "dkim")
        assert line(out, "from").startswith("ok")
        assert out.splitlines()[-1].startswith("0 errors, ")
        assert "note:" not in out  # nothing had to be added

        # The same from standard input, without Message-ID and Date: postline adds them.
        bare = b"".join(
            ln
            for ln in GOOD.splitlines(keepends=True)
            if not ln.startswith((b"Date:", b"Message-ID:"))
        )
        code, out, _ = await postline("check", "-", "--config", str(config), stdin=bare)
        assert code == 0, out
        assert out.startswith("note: checked as postline would send it, with Message-ID and Date")

        # A broken message: one line per finding, errors, exit status 1.
        broken = tmp_path / "broken.eml"
        broken.write_bytes(BROKEN)
        code, out, _ = await postline("check", str(broken), "--config", str(config))
        assert code == 1, out
        errors = {ln.split()[1] for ln in out.splitlines() if ln.startswith("ERROR")}
        assert errors == {"duplicate_headers", "mime", "line_length"}, out
        assert " — fix: " in line(out, "line_length")
        assert out.splitlines()[-1].startswith("3 errors, ")
        assert "receivers would object" in out.splitlines()[-1]

        # Marketing without an https public URL: no working one-click link.
        code, out, _ = await postline(
            "check", str(message), "--config", str(config), "--stream", "marketing", "--json"
        )
        assert code == 1
        report = json.loads(out)
        assert report["stream"] == "marketing" and report["ok"] is False
        (unsubscribe,) = [f for f in report["findings"] if f["check"] == "unsubscribe"]
        assert unsubscribe["status"] == "error" and "public_url" in unsubscribe["fix"]


async def test_with_a_tenant_its_verified_domain_signs(tmp_path: Path) -> None:
    zone = Zone()
    async with DNSServer(zone) as dns_server:
        config_path = write_config(tmp_path, dns_server.address)
        config = load_config(config_path, environ={})
        store = create_store(config)
        await store.open()
        try:
            tenant = await store.create_tenant("acme")
            domains = DomainService(store, config, secret=key_secret(config))
            created = await domains.create(tenant.id, "shop.test")
            assert created is not None
            for record in domains.records(created):
                if record.type == "TXT":
                    zone.txt.setdefault(record.name, []).append(record.value)
            results = await check_records(
                domains.records(created), make_resolver([dns_server.address])
            )
            assert {r.record.purpose: r.status for r in results}["dkim"] == "ok"
            verified = await domains.verify(tenant.id, "shop.test")
            assert verified is not None and verified[0].status == "verified"
            selector = verified[0].keys[0].selector
        finally:
            await store.close()
        message = tmp_path / "good.eml"
        message.write_bytes(GOOD)
        code, out, err = await postline(
            "check", str(message), "--config", str(config_path), "--tenant", "acme"
        )
        assert code == 0, out + err
        dkim = line(out, "dkim")
        assert dkim.startswith("ok") and f"d=shop.test s={selector}" in dkim
        assert line(out, "dmarc_alignment").startswith("ok")
        code, out, err = await postline(
            "check", str(message), "--config", str(config_path), "--tenant", "nobody"
        )
        assert code == 2 and "no tenant named 'nobody'" in err


@pytest.mark.parametrize(
    ("args", "stdin", "needle"),
    [
        (["check", "/nonexistent/message.eml"], "", "cannot read"),
        (["check", "-"], "", "empty"),
        (["check", "-"], "no header section at all\n", "not an RFC 5322 message"),
        (["check", "-", "--tenant", "acme"], "From: a@b.test\n\nx\n", "--tenant needs --config"),
        (["check", "-", "--stream", "Bad Stream"], "From: a@b.test\n\nx\n", "not a stream"),
    ],
)
def test_bad_input_exits_2(args: list[str], stdin: str, needle: str) -> None:
    result = CliRunner().invoke(app, args, input=stdin, env={"POSTLINE_CONFIG": ""})
    assert result.exit_code == 2, result.output
    assert needle in result.output
