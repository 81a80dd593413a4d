"""``config check`` reports what ``serve`` would fail on, in the same words: certificate
files that cannot be read (naming the file and its setting) and listen addresses in
use; ``serve`` stops on them with that message and status 2, without a traceback."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from support.node import POSTLINE, free_port


def _postline(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTLINE, *args], capture_output=True, text=True, timeout=60, check=False
    )


def _config(tmp_path: Path, *, api: str, submission: str, extra: str = "") -> Path:
    path = tmp_path / "node.toml"
    path.write_text(
        f"""data_dir = "data"
[api]
listen = "{api}"
[submission]
listen = "{submission}"
{extra}
[delivery]
helo_hostname = "node.postline.test"
[node]
workers = 1
"""
    )
    return path


def _problems(done: subprocess.CompletedProcess[str]) -> list[str]:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == "postline: a node cannot start with this configuration:"
    return [line.strip() for line in lines[1:]]


def test_a_missing_certificate_fails_check_and_serve_alike(tmp_path: Path) -> None:
    missing = tmp_path / "tls" / "node.crt"
    config = _config(
        tmp_path,
        api="127.0.0.1:0",
        submission="127.0.0.1:0",
        extra=f'tls_cert = "{missing}"\ntls_key = "{tmp_path / "tls" / "node.key"}"',
    )
    expected = [f"submission.tls_cert: cannot read {missing}: No such file or directory"]
    check = _postline("config", "check", "--config", str(config))
    assert _problems(check) == expected
    assert "configuration OK" not in check.stderr
    serve = _postline("serve", "--config", str(config))
    assert _problems(serve) == expected
    assert serve.stdout == ""  # never ready
    assert not (tmp_path / "data").exists()  # stopped before anything was made


def test_a_listen_address_in_use_fails_check_and_serve_alike(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = f"127.0.0.1:{taken.getsockname()[1]}"
        config = _config(tmp_path, api=busy, submission=f"127.0.0.1:{free_port()}")
        expected = [f"api.listen: cannot listen on {busy}: Address already in use"]
        assert _problems(_postline("config", "check", "--config", str(config))) == expected
        assert _problems(_postline("serve", "--config", str(config))) == expected
        # a running node's own configuration can still be checked
        running = _postline("config", "check", "--no-listen", "--config", str(config))
        assert running.returncode == 0, running.stderr


def test_two_listeners_on_one_address_are_reported(tmp_path: Path) -> None:
    both = f"127.0.0.1:{free_port()}"
    config = _config(tmp_path, api=both, submission=both)
    expected = [f"submission.listen: cannot listen on {both}: Address already in use"]
    assert _problems(_postline("config", "check", "--config", str(config))) == expected
    assert _problems(_postline("serve", "--config", str(config))) == expected


def test_a_sentinel_url_without_a_service_fails_check_with_the_fix(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        api="127.0.0.1:0",
        submission="127.0.0.1:0",
        extra='[throttle]\nbackend = "redis+sentinel://:s3cret@127.0.0.1:26379,127.0.0.1:26380"',
    )
    check = _postline("config", "check", "--config", str(config))
    assert check.returncode == 2, (check.stdout, check.stderr)
    assert "Traceback" not in check.stderr
    assert "throttle.backend: the URL names no service" in check.stderr
    assert "redis+sentinel://[user:password@]host1:26379,host2:26379/<service>" in check.stderr
    assert "s3cret" not in check.stderr
