"""The PostgreSQL backend: the state shared by several Hefestus instances.

Why PostgreSQL: instances on every Zabbix node must see one cursor, one ledger
and one set of remediation claims, and elect one leader; a file cannot be
shared that way. psycopg 3 with its connection pool: the pool checks a
connection before lending it (``check_connection``), so a restarted server is
reconnected transparently, and it keeps a few connections (1..4) warm.

Within the process, every use still goes through one re-entrant lock, as with
SQLite: :meth:`Database.hold` keeps its meaning (a read and the write that
depends on it, as one step against the other threads), and the state is a few
small statements per event, far from needing parallel connections.

Opening applies the versioned migrations of :mod:`.schema` in one transaction
that first takes ``pg_advisory_xact_lock``: instances starting at once migrate
once, the others wait and find the schema current. As with the SQLite file, a
database written by a newer Hefestus, or one holding someone else's tables, is
refused and left untouched.

Errors: a connection-class failure (server down or restarting, connection cut,
no connection free in time, statement timeout, serialisation failure) becomes
:class:`~hefestus.errors.StateUnavailable`, which the daemon retries; anything
else :class:`~hefestus.errors.StateError` with a hint. The password never
reaches a message: the store is named by :func:`describe_url`.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Literal

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from hefestus.errors import StateError, StateUnavailable
from hefestus.state.db import Connection, Cursor, Fence, check_meta, read_integer_meta, write_meta
from hefestus.state.schema import POSTGRESQL_MIGRATIONS, SCHEMA_VERSION, statements

#: Key of the advisory lock taken by the migrating transaction ("HEFESTUS" in ASCII).
MIGRATION_LOCK = 0x4845464553545553

#: A connection the server refused for good (no SQLSTATE comes with those): not transient.
_LOGIN_REFUSED = re.compile(r'password authentication failed|no pg_hba\.conf entry|no password '
                            r'supplied|role ".*" does not exist|permission denied for database')
_NO_DATABASE = re.compile(r'database ".*" does not exist')
_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%")


@functools.lru_cache(maxsize=1024)
def translate(sql: str) -> str:
    """SQLite's ``?`` placeholders as psycopg's ``%s``, and every literal ``%`` doubled.

    A ``?`` inside a quoted literal is text, not a placeholder, and stays; psycopg reads
    ``%`` everywhere in the query, so it is doubled inside literals too.
    """
    def token(m: re.Match[str]) -> str:
        t = m.group(0)
        return "%s" if t == "?" else t.replace("%", "%%")
    return _TOKENS.sub(token, sql)


class _Translating:
    """A psycopg connection speaking the repositories' ``?`` convention (:class:`.db.Connection`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor:
        return self._conn.execute(translate(sql), tuple(args))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Cursor:
        cur = self._conn.cursor()
        cur.executemany(translate(sql), [tuple(r) for r in rows])
        return cur


def describe_url(url: str) -> str:
    """The URL as it may be shown: ``postgresql://user@host:port/db``, without the password."""
    try:
        info = {k: str(v) for k, v in conninfo_to_dict(url).items()}
    except psycopg.Error:
        return "postgresql://(a URL that does not parse)"
    info.pop("password", None)
    user, host, port = info.pop("user", ""), info.pop("host", ""), info.pop("port", "")
    dbname = info.pop("dbname", "")
    where = (f"{user}@" if user else "") + host + (f":{port}" if port else "")
    query = "&".join(f"{k}={v}" for k, v in sorted(info.items()))
    return f"postgresql://{where}/{dbname}" + (f"?{query}" if query else "")


def _password(url: str) -> str | None:
    try:
        return str(conninfo_to_dict(url).get("password") or "") or None
    except psycopg.Error:
        return None


#: Every transaction Hefestus opens lasts milliseconds; one idle this long belongs to a frozen process.
IDLE_IN_TRANSACTION_MS = 5000
#: Server-side TCP keepalive of a presence session: idle s, interval s, probes (about 11 s in all).
PRESENCE_KEEPALIVE = (5, 2, 3)


class Session:
    """A dedicated connection kept open for its presence on the server (:meth:`PostgresDatabase.session`)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def alive(self) -> bool:
        """Whether the server still has it (one round trip; a restarted server dropped it)."""
        if self._conn.closed:
            return False
        try:
            self._conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            self.close()
            return False

    def close(self) -> None:
        try:
            self._conn.close()
        except psycopg.Error:  # pragma: no cover - closing a broken connection
            pass


class PostgresDatabase:
    """The state in a PostgreSQL database: a small pool, the lock, the schema migrated at open.

    ``connect_timeout`` bounds each connection attempt; ``statement_timeout`` any one
    statement (a stuck lock fails as :class:`StateUnavailable` instead of hanging a
    cycle); ``wait`` how long a transaction waits for a pooled connection.
    """

    dialect: Literal["postgresql"] = "postgresql"

    def __init__(self, url: str, *, connect_timeout: int = 5, statement_timeout: float = 30.0,
                 wait: float = 10.0) -> None:
        self.fence: Fence | None = None
        self._where = describe_url(url)
        self._secret = _password(url)
        self._lock = threading.RLock()
        self._url = url
        kwargs: dict[str, Any] = {
            "connect_timeout": connect_timeout, "application_name": "hefestus",
            # idle_in_transaction_session_timeout: a process frozen mid-transaction (SIGSTOP, a
            # paused VM) must not keep its row locks, the lease's above all, for longer than that.
            "options": f"-c statement_timeout={int(statement_timeout * 1000)} "
                       f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS}",
            # No server-side prepared statements: they break behind PgBouncer's transaction mode.
            "prepare_threshold": None,
        }
        self._kwargs = kwargs
        try:
            with psycopg.connect(url, **kwargs) as conn:
                _migrate(conn, self._where)
            # reconnect_timeout = wait: the pool's reconnection backoff (1, 2, 4... s) gives up
            # within one wait, so after a long outage the next transaction starts a fresh
            # attempt at once instead of sleeping out a backoff grown to minutes.
            self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
                url, kwargs=kwargs, min_size=1, max_size=4, timeout=wait, reconnect_timeout=wait,
                open=False, check=ConnectionPool.check_connection, name="hefestus-state")
            self._pool.open(wait=False)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def describe(self) -> str:
        return self._where

    def session(self, application_name: str) -> Session:
        """A connection of its own, outside the pool, that runs nothing: its existence on the
        server is the message (see :mod:`.lease`, presence). The server drops it within the
        :data:`PRESENCE_KEEPALIVE` of its process's host going silent, at once when the
        process dies, and never while the process merely sleeps."""
        idle, interval, count = PRESENCE_KEEPALIVE
        kwargs = {**self._kwargs, "application_name": application_name, "autocommit": True,
                  "options": f"-c tcp_keepalives_idle={idle} -c tcp_keepalives_interval={interval} "
                             f"-c tcp_keepalives_count={count}"}
        try:
            return Session(psycopg.connect(self._url, **kwargs))
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def close(self) -> None:
        with self._lock:
            self._pool.close()

    def hold(self) -> AbstractContextManager[bool]:
        return self._lock

    @contextmanager
    def transaction(self, *, fenced: bool = False) -> Iterator[Connection]:
        """Hold the lock and run the block in one transaction on a pooled connection:
        committed at the end, rolled back on any exception."""
        with self._lock:
            try:
                with self._pool.connection() as raw:
                    conn = _Translating(raw)
                    if fenced and self.fence is not None:
                        self.fence(conn)
                    yield conn
            except psycopg.Error as exc:
                raise self._error(exc) from None

    def execute(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                with self._pool.connection() as raw:
                    cur = raw.execute(translate(sql), tuple(args))
                    return [tuple(r) for r in cur.fetchall()] if cur.description else []
            except psycopg.Error as exc:
                raise self._error(exc) from None

    def _error(self, exc: psycopg.Error) -> StateError:
        """The driver's error in the operator's terms (``from None``: the chained original
        could carry a connection string)."""
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if self._secret:
            msg = msg.replace(self._secret, "***")
        state = exc.sqlstate or ""  # None for a refused connection: its message tells what it was
        if state.startswith("28") or _LOGIN_REFUSED.search(msg):
            return StateError(f"state store {self._where}: {msg}: the server refused the login; "
                              "check the user and the password (in the URL, PGPASSWORD or ~/.pgpass) "
                              "and pg_hba.conf")
        if state.startswith("3D") or _NO_DATABASE.search(msg):
            return StateError(f"state store {self._where}: {msg}: create the database first "
                              "(createdb), owned by the Hefestus role")
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return StateUnavailable(f"state store {self._where}: {msg}: PostgreSQL is unreachable, "
                                    "restarting or busy; the transaction was rolled back and will "
                                    "be tried again")
        if state == "42501":
            hint = ("the Hefestus role lacks a privilege: it needs CREATE on the schema at the "
                    "first start, then SELECT, INSERT, UPDATE, DELETE on its tables")
        elif isinstance(exc, psycopg.IntegrityError):
            hint = "a row broke a constraint of the schema"
        else:
            hint = "the state store failed"
        return StateError(f"state store {self._where}: {msg}: {hint}")


def _migrate(conn: psycopg.Connection[Any], where: str) -> None:
    """Bring the schema to :data:`SCHEMA_VERSION` in one transaction, under the advisory lock."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        found = _inspect(conn, where) or 0
        for version, script in sorted(POSTGRESQL_MIGRATIONS.items()):
            if version > found:
                for stmt in statements(script):
                    conn.execute(stmt)
        # Written at every open: a role that cannot write its tables fails at start, not mid-cycle.
        write_meta(_Translating(conn), "schema_version", str(SCHEMA_VERSION))


def _inspect(conn: psycopg.Connection[Any], where: str) -> int | None:
    """The schema version found (None: no tables yet); :class:`StateError` for a database
    that is someone else's, damaged or newer (see :func:`.db.check_meta`)."""
    tables = sorted(str(n) for (n,) in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"))
    if not tables:
        return None
    foreign = (f"state store {where}: not a Hefestus state database (it holds tables "
               f"{', '.join(tables[:5])} but no Hefestus schema_version); it was left untouched: "
               "point [state] url (HEFESTUS_STATE_URL) at a database of its own")
    if "meta" not in tables:
        raise StateError(foreign)
    try:
        meta = read_integer_meta(_Translating(conn))
    except psycopg.ProgrammingError:  # a meta table of another program, with other columns
        raise StateError(foreign) from None
    return check_meta(meta, where, foreign=foreign, known=SCHEMA_VERSION,
                      fix="the table was edited; restore the database from a backup")
