"""A throwaway Redis server for tests, started from the machine's ``redis-server``.

One server per test process: ``redis-server`` (Debian's package) on a free loopback port,
in a temp dir, with persistence off (``--save '' --appendonly no``). ``RedisServer`` can
also be used on its own (``with RedisServer() as server:``) by tests that stop and restart
a server.

Without ``redis-server`` the fixtures skip, except when the environment variable ``CI``
is set: CI must never skip the fleet tests, so there they fail.

``RedisServer(args=[...])`` adds options (``["--replicaof", host, port]`` for a replica);
``RedisSentinel(service, master)`` runs a sentinel (``redis-server --sentinel``) that
watches ``master`` under ``service`` alone (quorum 1), with short failure timings.

Fixtures (import them into a ``conftest.py`` or test module): ``redis_server`` (session),
``redis_url`` (the session server's URL) and ``redis_sentinel_url`` (the same server as
the master of a sentinel).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import pytest

__all__ = [
    "RedisSentinel",
    "RedisServer",
    "redis_sentinel_url",
    "redis_server",
    "redis_url",
    "require_redis",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require_redis() -> str:
    """The path of ``redis-server``; skips the test without it (fails under ``CI``)."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server not found (Debian package redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the Redis tests", pytrace=False)
        pytest.skip(reason)
    return binary


class RedisServer:
    """One ``redis-server`` process in a temp dir, listening on 127.0.0.1 only."""

    def __init__(self, binary: str | None = None, *, args: Sequence[str] = ()) -> None:
        self.binary = binary or require_redis()
        self.args = list(args)
        self.host = "127.0.0.1"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._tmp: Path | None = None
        self.startup_seconds = 0.0

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._proc is not None, "the server is not running"
        return self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, port: int | None = None) -> None:
        """Start the server; on ``port`` when given (e.g. a restart), else a free one."""
        if self.running:
            raise RuntimeError("the server is already running")
        started = time.monotonic()
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix="postline-redis-"))
        last = ""
        for _ in range(1 if port else 5):
            self.port = port or _free_port()
            self._spawn()
            if self._wait_ready(10.0):
                self.startup_seconds = time.monotonic() - started
                return
            last = self._log_tail()
            self.kill()
        raise RuntimeError(f"redis-server did not start:\n{last}")

    def stop(self) -> None:
        """Stop the server (SIGKILL: nothing is persisted anyway) and remove its dir."""
        self.kill()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def _spawn(self) -> None:
        assert self._tmp is not None
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--protected-mode",
            "yes",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._tmp),
            "--logfile",
            str(self._tmp / "redis.log"),
            "--daemonize",
            "no",
            *self.args,
        ]
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=str(self._tmp),
        )

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _log_tail(self) -> str:
        log = self._tmp / "redis.log" if self._tmp else None
        if log is None or not log.exists():
            return ""
        return log.read_text(errors="replace")[-2000:]

    def kill(self) -> None:
        """Stop the process but keep the temp dir, so ``start(port=...)`` can follow."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


class RedisSentinel(RedisServer):
    """One sentinel watching ``master`` as ``service``, alone: quorum 1, so it fails the
    master over by itself. It thinks a master down after ``down_after`` seconds without
    an answer and gives a failover ``failover_timeout`` seconds."""

    def __init__(
        self,
        service: str,
        master: RedisServer,
        *,
        down_after: float = 0.5,
        failover_timeout: float = 3.0,
        binary: str | None = None,
    ) -> None:
        super().__init__(binary)
        self.service = service
        self.master = master
        self.down_after = down_after
        self.failover_timeout = failover_timeout

    @property
    def url(self) -> str:
        return f"redis+sentinel://{self.host}:{self.port}/{self.service}"

    def _spawn(self) -> None:
        assert self._tmp is not None
        # A sentinel rewrites its configuration file: one of its own, written anew per start.
        conf = self._tmp / "sentinel.conf"
        name = self.service
        conf.write_text(
            f"port {self.port}\n"
            f"bind {self.host}\n"
            f"dir {self._tmp}\n"
            f"logfile {self._tmp / 'redis.log'}\n"
            "daemonize no\n"
            f"sentinel monitor {name} {self.master.host} {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {name} {round(self.down_after * 1000)}\n"
            f"sentinel failover-timeout {name} {round(self.failover_timeout * 1000)}\n"
            f"sentinel parallel-syncs {name} 1\n",
            encoding="utf-8",
        )
        self._proc = subprocess.Popen(
            [self.binary, str(conf), "--sentinel"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=str(self._tmp),
        )


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis server (started once, shared by every test of the process)."""
    with RedisServer(require_redis()) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's Redis server; tests use fresh keys instead of cleaning."""
    return redis_server.url


@pytest.fixture(scope="session")
def redis_sentinel_url(redis_server: RedisServer) -> Iterator[str]:
    """A ``redis+sentinel://`` URL whose master is the session's server (one sentinel
    that never fails it over: there is no replica, and it waits 10 s before thinking the
    master down, longer than a busy test machine stalls it)."""
    with RedisSentinel("session", redis_server, down_after=10.0) as sentinel:
        yield sentinel.url
