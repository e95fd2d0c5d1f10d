"""The SQLite backend: one file, one connection behind every state repository.

One connection because SQLite serialises writers anyway and a second connection to
the same file would only add ``database is locked`` waits; one lock because the
connection is used from the scheduler's worker thread, the HTTP API and
signal-time shutdown, and ``BEGIN``/``COMMIT`` on a shared connection must not
interleave.

Everything that can go wrong with the file is turned into
:class:`~hefestus.errors.StateError` here, with a hint for the operator, and
nothing ever deletes or recreates a file that fails to open: see the package
docstring for why.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Literal

from hefestus.errors import StateError
from hefestus.state.db import Connection, Fence, check_meta, read_integer_meta, write_meta
from hefestus.state.schema import SCHEMA, SCHEMA_VERSION, statements


class SqliteDatabase:
    """The opened state file: a shared connection, its lock, and the schema brought up to date.

    Opening never resets anything: a corrupt (``PRAGMA quick_check``), read-only or
    unopenable file, another program's SQLite database, one whose bookkeeping values are
    not numbers, or one written by a newer Hefestus (whose tables this code would
    misread), raises :class:`StateError` and leaves the file exactly as it was.
    """

    dialect: Literal["sqlite"] = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fence: Fence | None = None
        # Re-entrant so that a repository method holding the lock may call another that takes it.
        self._lock = threading.RLock()
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            # The scheduler runs cycles on a worker thread, one at a time (max_instances=1);
            # the lock keeps any other use (HTTP API, signal-time close, CLI) serialised, which
            # is why the connection may be used from a thread other than the one that opened it.
            # isolation_level=None: the driver never opens transactions behind our back, every
            # write is bracketed by transaction() below.
            self._db = sqlite3.connect(str(path), timeout=10, isolation_level=None,
                                       check_same_thread=False)
            # Everything that could refuse the file is checked before the first write (even
            # journal_mode=WAL rewrites the header): a refused file is left exactly as it was.
            _inspect(self._db, path)
            # WAL + synchronous=FULL: a committed transaction survives a crash or power cut.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            with self.transaction() as conn:
                for stmt in statements(SCHEMA):
                    conn.execute(stmt)
                # Written at every open, even unchanged: a file this process cannot write (a
                # read-only mount) fails here, at start and in `hefestus check`, not mid-cycle.
                write_meta(conn, "schema_version", str(SCHEMA_VERSION))  # migrations only add tables
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise StateError(explain(path, exc)) from exc
        except StateError:
            self._close_quietly()
            raise
        except OSError as exc:
            raise StateError(f"{path}: cannot create the state directory: {exc}") from exc

    def describe(self) -> str:
        return str(self.path)

    def close(self) -> None:
        """Close the connection (every committed write is already on disk)."""
        with self._lock:
            self._db.close()

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    def hold(self) -> AbstractContextManager[bool]:
        return self._lock

    @contextmanager
    def transaction(self, *, fenced: bool = False) -> Iterator[Connection]:
        """Hold the lock and run the block as one ``BEGIN IMMEDIATE`` transaction.

        IMMEDIATE takes the write lock up front, so a second process on the same file
        fails here (``locked``, after the 10 s busy timeout) instead of half-way through.
        Any exception rolls back; SQLite errors come out as :class:`StateError`.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if fenced and self.fence is not None:
                        self.fence(self._db)
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.DatabaseError as exc:
                raise StateError(explain(self.path, exc)) from exc

    def execute(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement under the lock and return all its rows.

        For reads, and for one-statement maintenance writes (each commits on its own, the
        connection being in autocommit mode); anything that must be atomic with other
        statements goes through :meth:`transaction`.
        """
        try:
            with self._lock:
                return list(self._db.execute(sql, args).fetchall())
        except sqlite3.DatabaseError as exc:
            raise StateError(explain(self.path, exc)) from exc


_CORRUPT = ("the file is corrupt; move it aside to start afresh (events already acknowledged "
            "are recognised by their [Hefestus] marker, so none is written twice)")


def _inspect(conn: sqlite3.Connection, path: Path) -> int | None:
    """Refuse, without writing, a file that is not Hefestus's or cannot be trusted; return its
    schema version (None: a new, empty file).

    Refused: a file that is not SQLite or fails ``PRAGMA quick_check`` (damaged pages would
    otherwise surface mid-cycle, or as a traceback in ``hefestus state``); an SQLite file
    with tables but no Hefestus ``meta`` (another program's database: creating our tables
    in it would damage it); a ``meta`` value the code reads as an integer that is not one;
    a schema newer than this code knows.
    """
    tables = {str(n) for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    problems = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)").fetchall()]
    if problems != ["ok"]:
        first = (problems[0].replace("*** in database main ***", "").strip().splitlines() or ["?"])[0]
        raise StateError(f"state store {path}: damaged (PRAGMA quick_check: {first}): {_CORRUPT}")
    if not tables:
        return None
    foreign = (f"state store {path}: not a Hefestus state file (it holds tables "
               f"{', '.join(sorted(tables)[:5])} but no Hefestus schema_version); it was left "
               "untouched: point [state] path (HEFESTUS_STATE_PATH) at a file of its own")
    try:
        meta = read_integer_meta(conn)
    except sqlite3.OperationalError:  # no meta table, or one with other columns
        raise StateError(foreign) from None
    return check_meta(meta, str(path), foreign=foreign, known=SCHEMA_VERSION,
                      fix="the file was edited or damaged; restore it from a backup or "
                          "move it aside to start afresh")


def explain(path: Path, exc: sqlite3.DatabaseError) -> str:
    """The SQLite error plus what the operator should do about it."""
    msg = str(exc)
    if "readonly" in msg or "read-only" in msg:
        hint = "the file or its directory is read-only for this user; fix permissions"
    elif "not a database" in msg or "malformed" in msg:
        hint = _CORRUPT
    elif "unable to open" in msg:
        hint = ("the file cannot be opened for writing; check the path, its permissions and that "
                "the filesystem is not read-only")
    elif "locked" in msg:
        hint = "another process holds the database; is a second Hefestus running?"
    else:
        hint = "the state store failed"
    return f"state store {path}: {msg}: {hint}"
