"""A private, throwaway PostgreSQL 15 cluster for the state backend's tests, benches and
multi-instance runs.

Why a cluster of its own rather than the machine's (port 5432, which the dev Zabbix
uses): the tests restart and stop the server, and must never disturb anything else.
It runs the machine's binaries (Debian's ``postgresql-15``) as the ``postgres`` OS
user (``initdb`` refuses root), from a data directory under
``/var/tmp/hefestus-pg-test/``, listening on 127.0.0.1 only, on a free port of its
own, with its Unix socket in its own directory; ``fsync`` is off (a test cluster
never needs to survive a power cut). It is tracked by its data directory and its
postmaster's pid, stopped with ``pg_ctl stop -m fast`` on that directory (never by
name), and the directory is removed at the end.

Plain Python (no pytest), so a script can use it too::

    with PostgresCluster() as pg:
        url = pg.create_database("bench")

Roles: ``postgres`` (superuser) logs in without a password (trust); the role
:data:`PASSWORD_ROLE` must give its password (scram-sha-256), so a test can see what
happens to a wrong one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from types import TracebackType

import psycopg
from psycopg import sql

from tests.support.helpers import free_port


def _server_bin() -> Path:
    """PostgreSQL 15's binaries (Debian 12's, what CI runs), else the newest installed."""
    if env := os.environ.get("HEFESTUS_PG_BIN"):
        return Path(env)
    found = sorted((p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
                   key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    preferred = Path("/usr/lib/postgresql/15/bin")
    return preferred if preferred in found or not found else found[-1]


BIN = _server_bin()
ROOT = Path("/var/tmp/hefestus-pg-test")
#: The only role whose password is checked (for the tests of what errors show).
PASSWORD_ROLE = "hefestus_pw"
MISSING = ("PostgreSQL 15's server binaries are missing ({what}): install the Debian package "
           "postgresql-15 (apt-get install postgresql-15)")


class ClusterError(RuntimeError):
    """The cluster could not be set up or started; the message says why (log tail included)."""


def _as_postgres(*argv: str) -> list[str]:
    """The command run as the ``postgres`` OS user."""
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *argv]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{a}'" for a in argv)]


class PostgresCluster:
    """One private cluster: :meth:`start` creates it on first use, :meth:`cleanup` removes it."""

    def __init__(self, bin_dir: Path = BIN, root: Path = ROOT) -> None:
        self.bin_dir = bin_dir
        self.home = root / f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.data = self.home / "data"
        self.log = self.home / "postgres.log"
        self.port = free_port()
        self._created = False

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Create the cluster (first call) and start it; returns when it accepts connections."""
        if not self._created:
            self._create()
        self._pg_ctl("start", "-l", str(self.log), "-t", "60")

    def stop(self) -> None:
        """Stop the server (``-m fast``: sessions are disconnected, as a restart does)."""
        if self.pid is not None:
            self._pg_ctl("stop", "-m", "fast", "-t", "60")

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop the server if it runs, and remove everything it wrote."""
        try:
            if self._created:
                self.stop()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs (its ``postmaster.pid``), else None."""
        try:
            pid = int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    # -- databases -----------------------------------------------------------------------

    def url(self, dbname: str = "postgres", *, user: str = "postgres", password: str | None = None) -> str:
        auth = f"{user}:{password}" if password is not None else user
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        """A new, empty database; its URL (as the superuser, no password)."""
        self.admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def admin(self, statement: sql.Composed | str, dbname: str = "postgres") -> None:
        """Run one statement as the superuser, outside a transaction (CREATE DATABASE, ROLE)."""
        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)

    # -- internals -----------------------------------------------------------------------

    def _create(self) -> None:
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not (self.bin_dir / tool).exists():
                raise ClusterError(MISSING.format(what=self.bin_dir / tool))
        ROOT.mkdir(mode=0o755, exist_ok=True)
        self.home.mkdir(mode=0o700)
        shutil.chown(self.home, "postgres", "postgres")
        self._created = True
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres",
                  "-A", "trust", "-E", "UTF8", "--no-sync", "--no-instructions")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\n"
                       f"unix_socket_directories = '{self.home}'\nfsync = off\n"
                       "synchronous_commit = off\nfull_page_writes = off\nmax_connections = 60\n"
                       "shared_buffers = 32MB\n")
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"local all all trust\nhost all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n"
                       "host all all 127.0.0.1/32 trust\n")

    def _pg_ctl(self, *args: str) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", *args)

    def _run(self, *argv: str) -> None:
        done = subprocess.run(_as_postgres(*argv), cwd=self.home, capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise ClusterError(f"{Path(argv[0]).name} {' '.join(argv[1:])} failed "
                               f"({done.returncode}): {done.stdout}{done.stderr}{log}")
