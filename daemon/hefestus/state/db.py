"""The one SQLite connection behind every state repository: file, schema, lock, errors.

The repositories (:mod:`.ledger`, :mod:`.answers`, :mod:`.remediations`) each own
some tables, but they share this one connection and this one lock. One
connection because SQLite serialises writers anyway and a second connection to
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
from typing import Any

from hefestus.errors import StateError

SCHEMA_VERSION = 4  # 2: answers (model answer cache); 3: remediations, breakers, audit;
#                    4: unclassified (event kinds no pattern matched)

# Every migration so far only adds tables, so the upgrade path from schema 1, 2 or 3
# is this script (all ``IF NOT EXISTS``) followed by bumping ``schema_version``.
# A migration that changes an existing table must be written out step by step.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    eventid    INTEGER PRIMARY KEY,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'skipped')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    domain     TEXT,
    category   TEXT,
    pattern_id TEXT,
    detail     TEXT NOT NULL DEFAULT '',
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_updated ON events (updated_at);
CREATE TABLE IF NOT EXISTS answers (
    fingerprint TEXT PRIMARY KEY,
    model       TEXT NOT NULL,
    answer      TEXT NOT NULL,
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS remediations (
    eventid         INTEGER PRIMARY KEY,
    rule            TEXT NOT NULL,
    origin          TEXT NOT NULL,
    job_id          TEXT NOT NULL,
    job_name        TEXT NOT NULL,
    project         TEXT NOT NULL,
    host            TEXT NOT NULL,
    options         TEXT NOT NULL,
    node_filter     TEXT,
    timeout         REAL NOT NULL,
    recovery_window REAL NOT NULL,
    state           TEXT NOT NULL CHECK (state IN
                        ('queued', 'starting', 'running', 'retry', 'verifying', 'done')),
    result          TEXT NOT NULL DEFAULT '',
    counted         INTEGER NOT NULL DEFAULT 1,
    attempts        INTEGER NOT NULL DEFAULT 0,
    exec_id         INTEGER,
    permalink       TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT '',
    claimed_at      REAL NOT NULL,
    ran_at          REAL,
    ended_at        REAL,
    next_at         REAL,
    outcome         TEXT NOT NULL DEFAULT '',
    outcome_state   TEXT NOT NULL DEFAULT 'none'
                        CHECK (outcome_state IN ('none', 'pending', 'written', 'failed'))
);
CREATE INDEX IF NOT EXISTS remediations_job ON remediations (job_id, claimed_at);
CREATE INDEX IF NOT EXISTS remediations_state ON remediations (state);
CREATE TABLE IF NOT EXISTS remediation_breakers (
    job_id    TEXT PRIMARY KEY,
    failures  INTEGER NOT NULL,
    opened_at REAL
);
CREATE TABLE IF NOT EXISTS remediation_audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      REAL NOT NULL,
    eventid INTEGER NOT NULL,
    host    TEXT NOT NULL,
    rule    TEXT NOT NULL,
    job_id  TEXT NOT NULL,
    action  TEXT NOT NULL,
    detail  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS unclassified (
    fingerprint TEXT PRIMARY KEY,
    domain      TEXT NOT NULL,
    count       INTEGER NOT NULL,
    hosts       TEXT NOT NULL,
    sample      TEXT NOT NULL,
    first_seen  REAL NOT NULL,
    last_seen   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS unclassified_last_seen ON unclassified (last_seen);
"""


class Database:
    """The opened state file: a shared connection, its lock, and the schema brought up to date.

    Opening never resets anything: a corrupt (``PRAGMA quick_check``), read-only or
    unopenable file, another program's SQLite database, one whose bookkeeping values are
    not numbers, or one written by a newer Hefestus (whose tables this code would
    misread), raises :class:`StateError` and leaves the file exactly as it was.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
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
                for stmt in filter(str.strip, _SCHEMA.split(";")):
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

    def close(self) -> None:
        """Close the connection (every committed write is already on disk)."""
        with self._lock:
            self._db.close()

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    def hold(self) -> AbstractContextManager[bool]:
        """The connection's (re-entrant) lock: a read and the write that depends on it, as one
        step against the other threads of this process."""
        return self._lock

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and run the block as one ``BEGIN IMMEDIATE`` transaction.

        IMMEDIATE takes the write lock up front, so a second process on the same file
        fails here (``locked``, after the 10 s busy timeout) instead of half-way through.
        Any exception rolls back; SQLite errors come out as :class:`StateError`.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
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


def read_meta(conn: sqlite3.Connection, key: str) -> str | None:
    """One ``meta`` value; for use inside :meth:`Database.transaction` (no lock, no translation)."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def write_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
    """Upsert one ``meta`` value; for use inside :meth:`Database.transaction`."""
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


#: ``meta`` values the code reads with ``int()``: anything else there is damage or an edit.
INTEGER_META = ("schema_version", "cursor", "floor", "backlog_until", "backlog_since")
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
        marks = ",".join("?" * len(INTEGER_META))
        meta = {str(k): str(v) for k, v in conn.execute(
            f"SELECT key, value FROM meta WHERE key IN ({marks})", INTEGER_META)}
    except sqlite3.OperationalError:  # no meta table, or one with other columns
        raise StateError(foreign) from None
    if "schema_version" not in meta:
        raise StateError(foreign)
    for key, value in meta.items():
        if not value.strip().isdigit():
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise StateError(f"state store {path}: meta {key!r} is {shown!r}, not a whole number: "
                             "the file was edited or damaged; restore it from a backup or "
                             "move it aside to start afresh")
    found = int(meta["schema_version"])
    if found > SCHEMA_VERSION:
        raise StateError(f"{path}: state was written by a newer Hefestus (schema {found})")
    return found


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
