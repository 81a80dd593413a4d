"""A throwaway PostgreSQL server for tests, started from the machine's own binaries.

One server per test process (``initdb`` on a temp dir, ``pg_ctl start`` on a free loopback
port, TCP only), a fresh database per test. Under root the server runs as the ``postgres``
system user (or ``nobody``), because ``initdb`` refuses to run as root.

Without PostgreSQL binaries the fixtures skip, except when the environment variable ``CI``
is set: CI must never skip the fleet tests, so there they fail.

Fixtures (import them into a ``conftest.py``): ``pg_server`` (session) and ``pg_dsn``
(a DSN to a new, empty database, dropped after the test). A test that stops and restarts
its server (:meth:`PgServer.halt`, :meth:`PgServer.resume`) uses ``own_pg_server``, a
server of its own that no other test shares.

Failover: :meth:`PgServer.start_replica` makes a streaming replica of a server
(``pg_basebackup -R``, hot standby), :meth:`PgServer.make_synchronous` has the primary
wait for it at every commit (``synchronous_standby_names = '*'``), and
:meth:`PgServer.promote` turns the replica into a primary (``pg_ctl promote``).
``pg_cluster`` is a primary with a synchronous replica, for one test.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

__all__ = [
    "PgServer",
    "find_bin_dir",
    "multi_host_dsn",
    "own_pg_server",
    "pg_cluster",
    "pg_dsn",
    "pg_server",
    "require_postgres",
    "shared_server",
]

_BINARIES = ("initdb", "pg_ctl", "postgres")
_TEMPLATE = "postline_template"


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None.

    ``initdb`` on PATH wins (resolved through symlinks); otherwise the newest
    ``/usr/lib/postgresql/*/bin`` (Debian's layout).
    """
    candidates: list[Path] = []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    versions.sort(key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    candidates.extend(Path(p) for p in reversed(versions))
    for bin_dir in candidates:
        if all((bin_dir / b).is_file() and os.access(bin_dir / b, os.X_OK) for b in _BINARIES):
            return bin_dir
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged account to run the server as, or None when not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither 'postgres' nor 'nobody' exists")


class PgServer:
    """One PostgreSQL cluster in a temp dir, listening on 127.0.0.1 only.

    ``fsync=False`` (the default) makes tests fast; benchmarks that compare durable
    commits pass ``fsync=True``.
    """

    def __init__(self, bin_dir: Path, *, fsync: bool = False) -> None:
        self.bin_dir = bin_dir
        self.fsync = fsync
        self.host = "127.0.0.1"
        self.port = 0
        self.user = "postgres"
        self._tmp: Path | None = None
        self._account = _run_as()
        self._log: Path | None = None
        self.startup_seconds = 0.0
        self._template_ready = False

    @property
    def data_dir(self) -> Path:
        assert self._tmp is not None
        return self._tmp / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        account = self._account
        if account is not None:
            env["HOME"] = str(self._tmp)
        proc = subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=str(self._tmp),
            check=False,
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
        )
        if proc.returncode != 0:
            log = self._log.read_text(errors="replace") if self._log and self._log.exists() else ""
            raise RuntimeError(
                f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip()}\n{log[-2000:]}"
            )
        return proc

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _make_dir(self) -> None:
        # The server's account must reach the directory: under root use /tmp, not a TMPDIR
        # that may sit in root's home.
        parent = "/tmp" if self._account is not None and os.path.isdir("/tmp") else None
        self._tmp = Path(tempfile.mkdtemp(prefix="postline-pg-", dir=parent))
        if self._account is not None:
            os.chown(self._tmp, self._account.pw_uid, self._account.pw_gid)
        self._log = self._tmp / "server.log"

    def _start(self) -> None:
        started = time.monotonic()
        self._make_dir()
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        settings = {
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": "",
            "fsync": "on" if self.fsync else "off",
            "full_page_writes": "on" if self.fsync else "off",
            "shared_buffers": "128MB",
            "max_connections": "200",
            "max_wal_size": "1GB",
            "logging_collector": "off",
        }
        with (self.data_dir / "postgresql.conf").open("a") as f:
            for key, value in settings.items():
                f.write(f"{key} = '{value}'\n")
        self._launch()
        self.startup_seconds = time.monotonic() - started

    def _launch(self) -> None:
        """``pg_ctl start`` on a free port (another one when the port was taken)."""
        last: Exception | None = None
        for _ in range(5):
            self.port = _free_port()
            try:
                self._run(
                    "pg_ctl",
                    "start",
                    "-w",
                    "-t",
                    "30",
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self._log),
                    "-o",
                    f"-p {self.port}",
                )
            except RuntimeError as exc:  # the port was taken meanwhile
                last = exc
            else:
                return
        raise RuntimeError(f"PostgreSQL did not start: {last}")

    def start_replica(self) -> PgServer:
        """A streaming replica of this server (a hot standby on a port of its own), made
        with ``pg_basebackup -R``; it accepts reads once started. Once promoted it waits
        for no standby of its own (``synchronous_standby_names`` is cleared)."""
        replica = PgServer(self.bin_dir, fsync=self.fsync)
        replica._make_dir()
        try:
            replica._run(
                "pg_basebackup",
                "-D",
                str(replica.data_dir),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                self.user,
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            )
            with (replica.data_dir / "postgresql.conf").open("a") as f:
                f.write("synchronous_standby_names = ''\nhot_standby = 'on'\n")
            replica._launch()
        except BaseException:
            replica.stop()
            raise
        return replica

    async def make_synchronous(self, timeout: float = 30.0) -> None:
        """Have every commit wait for a standby (``synchronous_standby_names = '*'``,
        with ``synchronous_commit = on`` a commit returns once a standby flushed it), and
        wait until one streams as the synchronous standby."""
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            await conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + timeout
            while True:
                states = [
                    r[0] for r in await conn.fetch("SELECT sync_state FROM pg_stat_replication")
                ]
                if "sync" in states:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no synchronous standby after {timeout}s: {states}")
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    def promote(self) -> None:
        """Turn this replica into a primary (``pg_ctl promote``, waiting until it takes
        writes)."""
        self._run("pg_ctl", "promote", "-w", "-t", "30", "-D", str(self.data_dir))

    def halt(self) -> None:
        """Stop the server at once, as a crash would (``pg_ctl stop -m immediate``: no
        checkpoint, every client connection cut), keeping its data directory and port for
        :meth:`resume`."""
        self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data_dir))

    def resume(self) -> None:
        """Start a halted server again on the same port and data directory (it recovers
        from its write-ahead log first)."""
        assert self._log is not None
        self._run(
            "pg_ctl",
            "start",
            "-w",
            "-t",
            "30",
            "-D",
            str(self.data_dir),
            "-l",
            str(self._log),
            "-o",
            f"-p {self.port}",
        )

    def stop(self) -> None:
        if self._tmp is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.data_dir))
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    async def create_database(self, name: str | None = None, *, template: str = "template0") -> str:
        """Create a database (empty, or a copy of ``template``); returns its DSN."""
        name = name or f"t_{uuid.uuid4().hex[:16]}"
        # FILE_COPY copies the files (one checkpoint, cheap without fsync); WAL_LOG would
        # write every block of the template to the WAL.
        strategy = "wal_log" if self.fsync else "file_copy"
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(
                f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY {strategy}'
            )
        finally:
            await conn.close()
        return self.dsn(name)

    async def create_postline_database(self) -> str:
        """A new database with postline's current schema installed; returns its DSN.

        The schema is installed once per server into a template database, then copied
        (several times faster than installing it each time).
        """
        from postline.store.postgres.backend import PostgresStore

        if not self._template_ready:
            dsn = await self.create_database(_TEMPLATE)
            store = PostgresStore(dsn, min_size=1, max_size=1)
            await store.open()
            await store.close()
            self._template_ready = True
        return await self.create_database(template=_TEMPLATE)

    async def drop_database(self, dsn: str) -> None:
        name = dsn.rsplit("/", 1)[1]
        conn = await asyncpg.connect(self.dsn())
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


_lock = threading.Lock()
_shared: PgServer | None = None
_users = 0


def require_postgres() -> Path:
    """The binaries' directory; skips the test without them (fails under ``CI``)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        reason = "PostgreSQL binaries (initdb, pg_ctl, postgres) not found"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the PostgreSQL tests", pytrace=False)
        pytest.skip(reason)
    return bin_dir


@contextlib.contextmanager
def shared_server() -> Iterator[PgServer]:
    """The process-wide server, started on first use and stopped after its last user."""
    global _shared, _users
    bin_dir = require_postgres()
    with _lock:
        if _shared is None:
            server = PgServer(bin_dir)
            server.start()
            _shared = server
        _users += 1
        server = _shared
    try:
        yield server
    finally:
        with _lock:
            _users -= 1
            if _users == 0 and _shared is not None:
                _shared.stop()
                _shared = None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (started once, shared by every directory)."""
    with shared_server() as server:
        yield server


@pytest.fixture
async def pg_dsn(pg_server: PgServer) -> AsyncIterator[str]:
    """A DSN to a fresh, empty database, dropped after the test."""
    dsn = await pg_server.create_database()
    try:
        yield dsn
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pg_server.drop_database(dsn), 30)


def multi_host_dsn(servers: list[PgServer], database: str) -> str:
    """One URL naming every server, in order, that connects to the one taking writes
    (libpq's syntax, ``target_session_attrs=read-write``)."""
    hosts = ",".join(f"{s.host}:{s.port}" for s in servers)
    return f"postgresql://{servers[0].user}@{hosts}/{database}?target_session_attrs=read-write"


@pytest.fixture
def pg_cluster() -> Iterator[tuple[PgServer, PgServer]]:
    """(primary, replica): a server of this test's own and its streaming replica, not
    yet synchronous (:meth:`PgServer.make_synchronous` once the databases exist)."""
    primary = PgServer(require_postgres())
    primary.start()
    try:
        replica = primary.start_replica()
        try:
            yield primary, replica
        finally:
            replica.stop()
    finally:
        primary.stop()


@pytest.fixture
def own_pg_server() -> Iterator[PgServer]:
    """A server for this test alone (it may halt and resume it), removed afterwards."""
    server = PgServer(require_postgres())
    server.start()
    try:
        yield server
    finally:
        server.stop()
