"""The SPAMC client and the pre-flight check against a real SpamAssassin ``spamd``.

The test starts its own spamd on a free loopback port (local tests only, no Bayes, no
user configuration, a temporary home; as root it runs the scanner as ``nobody``). It
is skipped when spamd is not installed, except under CI, which installs it (Debian's
``spamd`` and ``spamassassin`` packages, see .ci/run).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from textwrap import dedent

import pytest

from postline.check import check_message
from postline.check.spamd import SpamdClient
from postline.config import load_config
from support.node import free_port

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def _message(body: str) -> bytes:
    head = (
        "From: Shop <orders@shop.test>\n"
        "To: Ann <ann@inbox.test>\n"
        "Subject: Your order has shipped\n"
        "Date: Thu, 27 Nov 2025 10:00:00 +0000\n"
        "Message-ID: <01M8FKS4QFTN8QQJH20T323ZJ5@shop.test>\n"
        "MIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\n"
    )
    return f"{head}\n{body}\n".replace("\n", "\r\n").encode()


PLAIN = _message(
    "Hi Ann,\n\nyour order 1234 has shipped and should arrive on Tuesday.\n\nRegards,\nThe shop"
)
SPAM = _message(f"Hi Ann,\n\n{GTUBE}\n")


def _spamd_binary() -> str | None:
    for candidate in (shutil.which("spamd"), "/usr/sbin/spamd"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
def spamd_command(tmp_path: Path) -> list[str]:
    binary = _spamd_binary()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("spamd is not installed, but CI installs it (.ci/run): see its log")
        pytest.skip("spamd is not installed (Debian: apt-get install spamassassin spamd)")
    home = tmp_path / "spamd-home"
    home.mkdir()
    home.chmod(0o777)
    command = [
        binary,
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--max-children",
        "1",
        "--nouser-config",
        "--local",
        "--syslog",
        "stderr",
        "--helper-home-dir",
        str(home),
        "--cf",
        "use_bayes 0",
        "--pidfile",
        str(tmp_path / "spamd.pid"),
    ]
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.fail("running as root, spamd needs an unprivileged user; 'nobody' is missing")
        command += ["--username", "nobody"]
    return command


@pytest.fixture
async def spamd(spamd_command: list[str], tmp_path: Path) -> AsyncIterator[SpamdClient]:
    port = int(spamd_command[spamd_command.index("--listen") + 1].rpartition(":")[2])
    log = (tmp_path / "spamd.log").open("wb")
    process = subprocess.Popen(
        spamd_command,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "HOME": spamd_command[spamd_command.index("--helper-home-dir") + 1]},
    )
    client = SpamdClient("127.0.0.1", port, timeout=30)
    try:
        for _ in range(600):
            if process.poll() is not None:
                break
            if await SpamdClient("127.0.0.1", port, timeout=2).ping():
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("spamd did not answer PING within 60 s")
        if process.poll() is not None:
            log.flush()
            pytest.fail(
                f"spamd exited with {process.returncode}: "
                f"{(tmp_path / 'spamd.log').read_text(errors='replace')[-2000:]}"
            )
        yield client
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        log.close()


async def test_gtube_scores_high_with_its_rule_and_plain_mail_low(spamd: SpamdClient) -> None:
    spam = await spamd.report(SPAM)
    assert spam.spam and spam.score >= 1000 and spam.threshold > 0
    rules = {r.name: r for r in spam.rules}
    assert "GTUBE" in rules, spam.rules
    assert rules["GTUBE"].score is not None and rules["GTUBE"].score >= 1000
    assert "Generic Test for Unsolicited Bulk Email" in rules["GTUBE"].description

    plain = await spamd.report(PLAIN)
    assert not plain.spam
    assert plain.score < min(2.0, plain.threshold), plain.rules
    assert "GTUBE" not in {r.name for r in plain.rules}


async def test_preflight_asks_the_configured_spamd(spamd: SpamdClient, tmp_path: Path) -> None:
    config = load_config(
        text=dedent(
            f"""\
            data_dir = "{tmp_path / "data"}"
            [dns]
            nameservers = ["127.0.0.1:9"]
            timeout = "0.5s"
            [check]
            spamd = "127.0.0.1:{spamd.port}"
            spamd_timeout = "30s"
            """
        ),
        environ={},
    )

    async def scan(message: bytes) -> tuple[str, str]:
        report = await check_message(
            message,
            tenant_id=None,
            stream="transactional",
            domains=None,
            config=config,
            spamd=SpamdClient.parse(config.check.spamd, timeout=config.check.spamd_timeout),
        )
        (finding,) = [f for f in report.findings if f.check == "spamassassin"]
        assert report.spam is not None
        return finding.status, finding.message

    status, text = await scan(SPAM)
    assert status == "error" and "GTUBE (1000)" in text, text
    status, text = await scan(PLAIN)
    assert status == "ok", text
