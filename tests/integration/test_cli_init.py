"""``postline init``: what it refuses without ``--force`` (overwriting a node.toml; a
data_dir inside a git work tree, where its secrets could be committed), and that what it
writes is a configuration ``config check`` accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

from postline.config import load_config
from support.node import POSTLINE, free_port


def _postline(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [POSTLINE, *args], capture_output=True, text=True, timeout=60, check=False, cwd=cwd
    )


def _ports() -> list[str]:
    return [
        "--api",
        f"127.0.0.1:{free_port()}",
        "--submission",
        f"127.0.0.1:{free_port()}",
        "--hostname",
        "node.postline.test",
    ]


def test_init_writes_a_config_that_passes_the_check(tmp_path: Path) -> None:
    done = _postline("init", *_ports(), cwd=tmp_path)  # DIR defaults to "."
    assert done.returncode == 0, done.stderr
    config = tmp_path / "node.toml"
    cfg = load_config(config, environ={})
    assert cfg.data_dir == tmp_path.resolve() / "data"
    assert cfg.delivery.routes == []  # no --smarthost: MX delivery, route left commented
    assert "[[delivery.routes]]" in config.read_text()
    assert "postline serve --config node.toml" in done.stdout
    check = _postline("config", "check", "--config", str(config))
    assert check.returncode == 0, check.stderr
    assert not (tmp_path / "data").exists()  # the check creates nothing


def test_init_with_a_smarthost_routes_everything_to_it(tmp_path: Path) -> None:
    done = _postline("init", str(tmp_path), "--smarthost", "127.0.0.1:2626", *_ports())
    assert done.returncode == 0, done.stderr
    (route,) = load_config(tmp_path / "node.toml", environ={}).delivery.routes
    assert (route.domain, route.host, route.port) == ("*", "127.0.0.1", 2626)
    bad = _postline("init", str(tmp_path / "b"), "--smarthost", "relay.example.net")
    assert bad.returncode != 0
    assert "--smarthost" in bad.stderr


def test_init_refuses_to_overwrite_a_config_without_force(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("# mine\n")
    refused = _postline("init", str(tmp_path), *_ports())
    assert refused.returncode != 0
    assert f"{config} exists" in refused.stderr
    assert "--force" in refused.stderr
    assert config.read_text() == "# mine\n"
    forced = _postline("init", str(tmp_path), "--force", *_ports())
    assert forced.returncode == 0, forced.stderr
    assert "written by `postline init`" in config.read_text()


def test_init_refuses_a_data_dir_inside_a_git_work_tree_without_force(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", str(repo)], check=True, timeout=30)
    directory = repo / "deploy" / "dev"
    refused = _postline("init", str(directory), *_ports())
    assert refused.returncode != 0
    assert "git work tree" in refused.stderr
    assert str(repo) in refused.stderr
    assert not (directory / "node.toml").exists()
    forced = _postline("init", str(directory), "--force", *_ports())
    assert forced.returncode == 0, forced.stderr
    assert (directory / "node.toml").exists()
