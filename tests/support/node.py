"""Start real postline nodes (in-process or as a subprocess) for tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from postline.config import load_config
from postline.runtime import Node
from postline.tenants import generate_key, hash_key, key_prefix

ROOT = Path(__file__).resolve().parents[2]
POSTLINE = str(Path(sys.executable).with_name("postline"))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def node_toml(
    data_dir: Path,
    extra: str = "",
    *,
    api: str = "127.0.0.1:0",
    submission: str = "127.0.0.1:0",
    api_extra: str = "",
    submission_extra: str = "",
    top_extra: str = "",
) -> str:
    return f"""
data_dir = "{data_dir}"
node_id = "test-node"
{top_extra}
[api]
listen = "{api}"
{api_extra}
[submission]
listen = "{submission}"
{submission_extra}
[inbound]
listen = "127.0.0.1:0"
[log]
level = "warning"
{extra}
"""


@contextlib.asynccontextmanager
async def running_node(tmp_path: Path, extra: str = "", **kw: Any) -> AsyncIterator[Node]:
    """A node in this event loop, stopped (and its store closed) afterwards."""
    cfg_path = tmp_path / "node.toml"
    cfg_path.write_text(node_toml(tmp_path / "data", extra, **kw))
    node = Node(load_config(cfg_path, environ={}))
    try:
        await node.start()
    except BaseException:
        await node.stop()
        raise
    try:
        yield node
    finally:
        await node.stop()


async def add_tenant(node: Node, name: str = "acme") -> str:
    """Create a tenant with one API key; returns the key."""
    tenant = await node.store.create_tenant(name)
    key = generate_key()
    await node.store.add_api_key(tenant.id, hash_key(key), key_prefix(key))
    return key


def api_client(node: Node, key: str | None = None) -> httpx.AsyncClient:
    assert node.api_address is not None
    host, port = node.api_address
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.AsyncClient(base_url=f"http://{host}:{port}", headers=headers, timeout=30)


async def wait_for(predicate: Any, timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Await ``predicate()`` (sync or async) until truthy; returns its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def cli_tenant(config: Path, name: str = "acme") -> str:
    """``postline tenant create`` against a config (the node may be running); the key."""
    proc = await asyncio.create_subprocess_exec(
        POSTLINE,
        "tenant",
        "create",
        name,
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode().strip().splitlines()[-1]


@contextlib.asynccontextmanager
async def served(
    config: Path, key: str, timeout: float = 20.0
) -> AsyncIterator[tuple[NodeProcess, httpx.AsyncClient]]:
    """A ``postline serve`` subprocess (log beside the config) and an API client with
    ``key``; killed (``kill -9``) on the way out unless the body already stopped it."""
    node = NodeProcess(config, config.with_name("node.log"))
    await asyncio.to_thread(node.start, timeout)
    try:
        url = f"http://{node.ready['api']}"
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as api:
            yield node, api
    finally:
        await asyncio.to_thread(node.kill)


class NodeProcess:
    """``postline serve`` in a subprocess (for crash tests), in its own process group:
    ``kill()`` is a ``kill -9`` of the whole node (supervisor and workers),
    ``terminate()`` a SIGTERM to the node (its supervisor, or its only process)."""

    def __init__(self, config_path: Path, log_path: Path) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready: dict[str, Any] = {}
        self._log: Any = None

    def start(self, timeout: float = 20.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSTLINE_")}
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [POSTLINE, "serve", "--config", str(self.config_path)],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith(b"{"):
                self.ready = json.loads(line)["ready"]
                return
        self.kill()
        raise RuntimeError(f"node did not start; see {self.log_path}")

    def kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            if self.proc.poll() is None:
                self.proc.wait(10)
        self._close()

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()
        if self._log is not None:
            self._log.close()
            self._log = None
