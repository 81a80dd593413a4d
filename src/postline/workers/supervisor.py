"""The supervisor of a node's worker processes (``[node] workers`` above 1).

Python runs one core per process, so a node of several cores runs one worker process per
core. The supervisor, a small process that runs no event loop and no thread:

1. binds the listening sockets. Submission and inbound: one socket each that every worker
   accepts on, so the worker that wakes first (the least busy) takes a new SMTP client,
   and a client never finds the port closed while a worker restarts. The API: a socket
   per worker on the same address (``SO_REUSEPORT``), the kernel spreading connections by
   a hash of the client's address and port. HTTP clients keep their connections open, and
   on one shared socket the worker that woke first took every connection waiting: 8
   clients of ``bench/ingest.py`` landed on one worker in 4 runs of 4 (10.0–10.7k
   recipients/s against 14.1–15.3k spread). For the relay the shared SMTP socket did
   better (1,495 and 1,532 msgs/s against 1,400 and 1,486 with a socket per worker). A dead
   worker's API socket is closed at once, so new connections go to the others until it
   runs again on a new one;
2. prepares what the workers share: the store's schema (migrations run once), the node's
   throttle state (``throttle.db``, fresh at every start as an in-process one would be) and
   the key files;
3. forks the workers. Worker ``i`` is a whole node (``runtime.Node``) named
   ``<node_id>.<i>`` that delivers the queues whose domain hashes to ``i``
   (``schedule/shares.py``); all share the store, the throttle limits and the sockets;
4. waits for signals: a worker that exits unasked is started again (after 0.5 s, doubling
   up to 30 s while it keeps dying within 10 s of its start) and hands back the leases of
   the one it replaces; SIGTERM or SIGINT is passed to every worker, each drains as a
   single node does (``[node] shutdown_timeout``), and the supervisor exits when all have.

A worker whose supervisor dies gets SIGTERM from the kernel (``PR_SET_PDEATHSIG``), so a
``kill -9`` of the supervisor alone still drains the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import select
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from postline.config import Config
from postline.errors import ConfigError, PostlineError, ThrottleError
from postline.runtime import (
    Listeners,
    Node,
    bind_beside,
    bind_listeners,
    listening,
    store_kind,
    throttle_file,
    worker_name,
)
from postline.schedule.shares import WorkerShare
from postline.smtp.node_counts import NodeConnections
from postline.store import create_store
from postline.throttle.shared import SharedThrottleBackend

__all__ = ["Supervisor"]

log = logging.getLogger(__name__)

_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}
_FIRST_DELAY = 0.5
_MAX_DELAY = 30.0
_STABLE = 10.0  # a worker that lived this long starts again after the first delay
_PR_SET_PDEATHSIG = 1


@dataclass(slots=True)
class _Worker:
    index: int
    pid: int = 0
    started: float = 0.0
    delay: float = _FIRST_DELAY
    restart_at: float | None = None
    ready_fd: int = -1
    ready: bool = False
    exited: int = 0  # the pid of the process that exited last
    api: socket.socket | None = None  # its own API socket (closed when it dies)


def _run_worker(config: Config, share: WorkerShare, listeners: Listeners, ready_fd: int) -> int:
    """A worker's life: a node on the given sockets until SIGTERM/SIGINT."""

    async def main() -> int:
        node = Node(config, share=share, listeners=listeners)
        try:
            await node.start()
        except (ConfigError, PostlineError) as exc:
            log.error("worker %d could not start: %s", share.index, exc)
            await node.stop()
            return 2
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with contextlib.suppress(OSError):
            os.write(ready_fd, b"r")
            os.close(ready_fd)
        await stop.wait()
        await node.stop()
        return 0

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(main())
    return uvloop.run(main())


class Supervisor:
    """Runs ``count`` workers of one node; ``run()`` returns the exit status."""

    def __init__(
        self,
        config: Config,
        count: int,
        *,
        echo: Callable[[str], None] = print,
    ) -> None:
        if count < 2:
            raise ValueError("a supervisor runs two workers or more")
        self.config = config
        self.count = count
        self.echo = echo
        self.workers = [_Worker(i) for i in range(count)]
        self.listeners = Listeners()  # the API socket of worker 0, the shared SMTP ones
        # SMTP connections counted for the node (limits per address and in all).
        self.connections = NodeConnections(count)
        self.api_address: tuple[socket.AddressFamily, Any] | None = None

    # -- start -------------------------------------------------------------------------
    def _prepare(self) -> None:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)

        async def schema() -> None:
            store = create_store(cfg)
            await store.open()
            await store.close()

        asyncio.run(schema())
        SharedThrottleBackend.reset(throttle_file(cfg))
        if (cfg.submission.enabled or cfg.inbound.enabled) and not cfg.submission.tls_cert:
            from postline.tls import ensure_self_signed

            ensure_self_signed(cfg.data_dir, cfg.submission.hostname or cfg.hostname)

    def _fork(self, worker: _Worker) -> None:
        if worker.api is None and self.api_address is not None:
            worker.api = bind_beside(*self.api_address)
        read_fd, write_fd = os.pipe()
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                os.close(read_fd)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                _die_with(parent)
                for other in self.workers:
                    # Another worker's API socket held open here would keep taking its
                    # share of connections after that worker died.
                    if other is not worker and other.api is not None:
                        other.api.close()
                share = WorkerShare(worker.index, self.count)
                listeners = Listeners(
                    worker.api,
                    self.listeners.submission,
                    self.listeners.inbound,
                    self.connections,
                )
                code = _run_worker(self.config, share, listeners, write_fd)
            except BaseException:
                log.exception("worker %d failed", worker.index, extra={"action": "workers.crash"})
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        os.close(write_fd)
        worker.pid, worker.started, worker.ready_fd, worker.ready = (
            pid,
            time.monotonic(),
            read_fd,
            False,
        )
        worker.restart_at = None

    def _read_ready(self, timeout: float) -> None:
        fds = {w.ready_fd: w for w in self.workers if w.ready_fd >= 0 and not w.ready}
        if not fds:
            return
        readable, _, _ = select.select(list(fds), [], [], timeout)
        for fd in readable:
            worker = fds[fd]
            data = os.read(fd, 1)
            worker.ready = data == b"r"
            os.close(fd)
            worker.ready_fd = -1

    @staticmethod
    def _address(sock: socket.socket | None) -> str | None:
        if sock is None:
            return None
        host, port = sock.getsockname()[:2]
        return f"{host}:{port}"

    # -- run ---------------------------------------------------------------------------
    def run(self) -> int:
        self.listeners = bind_listeners(self.config, api_reuse_port=True)
        self.workers[0].api = api = self.listeners.api
        if api is not None:
            self.api_address = (api.family, api.getsockname())
        self._prepare()
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        for worker in self.workers:
            self._fork(worker)
        if not self._start_up():
            self._stop_all()
            return 1
        ready = {
            "node": self.config.node_name,
            "workers": self.count,
            "api": self._address(self.workers[0].api),
            "submission": self._address(self.listeners.submission),
        }
        self.echo(json.dumps({"ready": ready}))
        log.info(
            "node %s ready: %s; %d workers; store %s",
            self.config.node_name,
            listening(
                api=self._address(self.workers[0].api),
                submission=self._address(self.listeners.submission),
                inbound=self._address(self.listeners.inbound),
            ),
            self.count,
            store_kind(self.config),
            extra={"action": "workers.ready"},
        )
        self._supervise()
        started = time.monotonic()
        killed = self._stop_all()
        log.info(
            "node %s stopped in %.1fs: %d workers drained%s",
            self.config.node_name,
            time.monotonic() - started,
            self.count - killed,
            f", {killed} killed after [node] shutdown_timeout" if killed else "",
            extra={"action": "workers.stopped"},
        )
        return 0

    def _start_up(self) -> bool:
        """Wait until every worker is ready; False when one exited first or a stop came."""
        while not all(w.ready for w in self.workers):
            self._read_ready(0.1)
            info = signal.sigtimedwait(_SIGNALS, 0)
            if info is not None and info.si_signo != signal.SIGCHLD:
                return False
            for worker, status in self._reap():
                log.error(
                    "worker %d exited during start-up (%s)",
                    worker.index,
                    _describe(status),
                    extra={"action": "workers.start_failed"},
                )
                return False
        return True

    def _supervise(self) -> None:
        while True:
            now = time.monotonic()
            due = [w.restart_at for w in self.workers if w.restart_at is not None]
            timeout = max(0.0, min(due) - now) if due else None
            info = (
                signal.sigwaitinfo(_SIGNALS)
                if timeout is None
                else signal.sigtimedwait(_SIGNALS, timeout)
            )
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                log.info("stopping %d workers", self.count, extra={"action": "workers.stopping"})
                return
            for worker, status in self._reap():
                if worker.api is not None:
                    worker.api.close()
                    worker.api = None
                self._free_slots(worker)
                # The kernel closed its SMTP connections with it.
                self.connections.forget(worker.index)
                lived = time.monotonic() - worker.started
                worker.delay = (
                    _FIRST_DELAY if lived >= _STABLE else min(_MAX_DELAY, worker.delay * 2)
                )
                worker.restart_at = time.monotonic() + worker.delay
                log.error(
                    "worker %d (pid %d) exited (%s) after %.1fs; starting it again in %.1fs",
                    worker.index,
                    worker.exited,
                    _describe(status),
                    lived,
                    worker.delay,
                    extra={"action": "workers.exited"},
                )
            now = time.monotonic()
            for worker in self.workers:
                if worker.restart_at is not None and worker.restart_at <= now:
                    self._fork(worker)
                    log.info(
                        "worker %d started again (pid %d)",
                        worker.index,
                        worker.pid,
                        extra={"action": "workers.restarted"},
                    )

    def _free_slots(self, worker: _Worker) -> None:
        """The connection slots a dead worker held are free again at once (its successor
        has its name and would otherwise wait for their leases to expire)."""
        if self.config.throttle.backend != "memory":
            return  # a fleet's slots expire on their own, whoever held them
        holder = worker_name(self.config, WorkerShare(worker.index, self.count))
        try:
            freed = SharedThrottleBackend.release_holder(throttle_file(self.config), holder)
        except ThrottleError as exc:
            log.warning(
                "could not free the connection slots of worker %d: %s",
                worker.index,
                exc,
                extra={"action": "workers.free_slots"},
            )
            return
        if freed:
            log.info(
                "freed %d connection slots of worker %d",
                freed,
                worker.index,
                extra={"action": "workers.free_slots"},
            )

    def _reap(self) -> list[tuple[_Worker, int]]:
        """Workers that exited (their ``pid`` is 0 afterwards, ``exited`` the old one)."""
        out = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            for worker in self.workers:
                if worker.pid == pid:
                    worker.pid, worker.exited = 0, pid
                    if worker.ready_fd >= 0:
                        os.close(worker.ready_fd)
                        worker.ready_fd = -1
                    out.append((worker, status))
        return out

    def _stop_all(self) -> int:
        """SIGTERM to every worker, then wait for them (SIGKILL after the drain time);
        returns how many had to be killed."""
        killed = 0
        for worker in self.workers:
            worker.restart_at = None
            if worker.pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.node.shutdown_timeout + 10.0
        while any(w.pid for w in self.workers):
            left = deadline - time.monotonic()
            if left <= 0:
                for worker in self.workers:
                    if worker.pid:
                        killed += 1
                        log.error(
                            "worker %d did not stop in time; killed",
                            worker.index,
                            extra={"action": "workers.killed"},
                        )
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(worker.pid, signal.SIGKILL)
                deadline = time.monotonic() + 5.0
            signal.sigtimedwait({signal.SIGCHLD}, max(0.05, min(1.0, left)))
            self._reap()
        self._close_listeners()
        return killed

    def _close_listeners(self) -> None:
        for worker in self.workers:
            if worker.api is not None:
                worker.api.close()
                worker.api = None
        for sock in (self.listeners.submission, self.listeners.inbound):
            if sock is not None:
                sock.close()


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"status {os.waitstatus_to_exitcode(status)}"


def _die_with(parent: int) -> None:
    """Have the kernel send SIGTERM to this process when the supervisor dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # it died before the call
        os.kill(os.getpid(), signal.SIGTERM)
