"""What every state repository needs from a backend: the :class:`Database` protocol.

The repositories (:mod:`.ledger`, :mod:`.answers`, :mod:`.remediations`,
:mod:`.unclassified`) are written once, against this protocol, and run unchanged
over SQLite (:mod:`.sqlite`, one file, the default) or PostgreSQL (:mod:`.postgres`,
shared by several instances). Their SQL is the common subset of both dialects,
with ``?`` placeholders (SQLite's paramstyle); the PostgreSQL backend translates
them (see :func:`hefestus.state.postgres.translate`), so one SQL text serves both.

Every backend serialises its users within the process (one re-entrant lock, see
:meth:`Database.hold`) and turns its driver's exceptions into
:class:`~hefestus.errors.StateError` (:class:`~hefestus.errors.StateUnavailable`
when trying again later may work).

**Fencing.** When several instances share one PostgreSQL database, a leader that
was paused past its lease must not act on what it decided before the pause. So
the transactions that record an intent to write to Zabbix or to run a Rundeck
job are opened with ``transaction(fenced=True)``, and a backend with a
:attr:`Database.fence` set calls it on the transaction's connection *before any
other statement*: the fence checks the lease epoch in that same transaction and
raises to abort it, so nothing of the intent is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol, TypeAlias

from hefestus.errors import StateError

#: The SQL dialects a backend speaks (the few statements that differ branch on it).
Dialect: TypeAlias = Literal["sqlite", "postgresql"]


class Cursor(Protocol):
    """The result of one statement (``sqlite3.Cursor`` and the PostgreSQL wrapper's)."""

    @property
    def rowcount(self) -> int: ...

    @property
    def description(self) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """A connection inside :meth:`Database.transaction`: ``?`` placeholders in both dialects."""

    def execute(self, sql: str, args: Sequence[Any] = (), /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Cursor: ...


#: Installed by the leader election: called first in every fenced transaction; raises to abort it.
Fence: TypeAlias = Callable[[Connection], None]


class Database(Protocol):
    """An opened state store, whatever holds it; see the module docstring."""

    @property
    def dialect(self) -> Dialect:
        """Which SQL the backend speaks (the few statements that differ branch on it)."""
        ...

    #: Called first inside ``transaction(fenced=True)`` when set (None: no fencing).
    fence: Fence | None

    def transaction(self, *, fenced: bool = False) -> AbstractContextManager[Connection]:
        """Hold the lock and run the block as one transaction: committed when it ends,
        rolled back on any exception. ``fenced``: call :attr:`fence` first (see above)."""
        ...

    def execute(self, sql: str, args: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one statement on its own (autocommitted) and return all its rows."""
        ...

    def hold(self) -> AbstractContextManager[bool]:
        """The (re-entrant) lock: a read and the write that depends on it, as one step
        against the other threads of this process."""
        ...

    def close(self) -> None:
        """Release the connection(s); the repositories are unusable afterwards."""
        ...

    def describe(self) -> str:
        """Where the state lives, for logs and ``hefestus check``: a path, or a URL without
        its password."""
        ...


def read_meta(conn: Connection, key: str) -> str | None:
    """One ``meta`` value; for use inside :meth:`Database.transaction`."""
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return None if row is None else str(row[0])


def write_meta(conn: Connection, key: str, value: str) -> None:
    """Upsert one ``meta`` value; for use inside :meth:`Database.transaction`."""
    conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


#: ``meta`` values the code reads with ``int()``: anything else there is damage or an edit.
INTEGER_META = ("schema_version", "cursor", "floor", "backlog_until", "backlog_since")


def read_integer_meta(conn: Connection) -> dict[str, str]:
    """The :data:`INTEGER_META` rows present, as stored (raises the driver's error when
    there is no ``meta`` table of ours)."""
    marks = ",".join("?" * len(INTEGER_META))
    return {str(k): str(v) for k, v in conn.execute(
        f"SELECT key, value FROM meta WHERE key IN ({marks})", INTEGER_META)}


def check_meta(meta: dict[str, str], where: str, *, foreign: str, fix: str,
               known: int) -> int:
    """The schema version of a store holding Hefestus tables; :class:`StateError` unless it
    is ours (``foreign``), its bookkeeping values are whole numbers (``fix`` says what to do
    otherwise), and its schema is not newer than ``known`` (whose tables this code would
    misread)."""
    if "schema_version" not in meta:
        raise StateError(foreign)
    for key, value in meta.items():
        if not value.strip().isdigit():
            shown = value if len(value) <= 40 else value[:40] + "..."
            raise StateError(f"state store {where}: meta {key!r} is {shown!r}, not a whole number: "
                             f"{fix}")
    found = int(meta["schema_version"])
    if found > known:
        raise StateError(f"{where}: state was written by a newer Hefestus (schema {found}); this "
                         f"one knows schema {known}: upgrade Hefestus")
    return found
