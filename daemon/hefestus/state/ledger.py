"""The poll cursor and the ledger of handled events.

The ledger is what makes the Zabbix write happen once: an event is recorded
``pending`` before ``event.acknowledge`` is called and ``done`` after Zabbix
confirmed (see the package docstring). The cursor is how far back the next
poll needs to look: every event below it has reached a final state.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

from hefestus.state.answers import delete_expired
from hefestus.state.db import Database, read_meta, write_meta

#: One event's place in the ledger; the values of the ``events.state`` CHECK constraint.
EventState: TypeAlias = Literal["pending", "done", "failed", "skipped"]

#: States an event never leaves by itself: the cursor may move past them.
FINAL_STATES: frozenset[EventState] = frozenset({"done", "failed", "skipped"})

_ENTRY_COLUMNS = "eventid, state, attempts, domain, category, pattern_id, detail, updated_at"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One ``events`` row: how far handling an event got, and how it was classified."""

    eventid: int
    state: EventState
    attempts: int
    domain: str | None
    category: str | None
    pattern_id: str | None
    detail: str
    updated_at: float


class Ledger:
    """``meta`` (the cursor and the intake's bookkeeping) and ``events`` (the ledger)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- cursor and meta ----------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        """One ``meta`` value (cursor, floor, backlog_until, schema_version, ...)."""
        rows = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    def set_meta(self, **values: str | int) -> None:
        """Set several ``meta`` values in one transaction, so a restart sees all or none.

        Fenced (see :mod:`.db`): the cursor and the backlog bounds decide which events this
        instance writes to next.
        """
        with self._db.transaction(fenced=True) as conn:
            for k, v in values.items():
                write_meta(conn, k, str(v))

    @property
    def cursor(self) -> int | None:
        """Highest event id below which every seen event reached a final state."""
        v = self.meta("cursor")
        return None if v is None else int(v)

    def advance_cursor(self, eventid: int) -> None:
        """Move the cursor forward; never backwards (fenced, as :meth:`set_meta`)."""
        with self._db.transaction(fenced=True) as conn:
            current = read_meta(conn, "cursor")
            if current is None or eventid > int(current):
                write_meta(conn, "cursor", str(eventid))

    # -- ledger -------------------------------------------------------------------------

    def states(self, eventids: Iterable[int]) -> dict[int, LedgerEntry]:
        """The ledger rows of those events that have one."""
        ids = list(eventids)
        out: dict[int, LedgerEntry] = {}
        for chunk in range(0, len(ids), 500):  # below SQLite's bound-parameter limit (PostgreSQL's is 65535)
            part = ids[chunk : chunk + 500]
            marks = ",".join("?" * len(part))
            for row in self._db.execute(
                    f"SELECT {_ENTRY_COLUMNS} FROM events WHERE eventid IN ({marks})", part):
                out[row[0]] = LedgerEntry(*row)
        return out

    def record(self, rows: Iterable[tuple[int, EventState, str | None, str | None, str | None, str]]
               ) -> None:
        """Upsert (eventid, state, domain, category, pattern_id, detail) in one transaction.

        A ``None`` classification keeps the one already recorded, so the ``done`` row
        written after Zabbix confirmed need not repeat what the ``pending`` row said.

        Fenced (see :mod:`.db`): the ``pending`` row is the intent to write to Zabbix.
        """
        now = time.time()
        with self._db.transaction(fenced=True) as conn:
            conn.executemany(
                "INSERT INTO events (eventid, state, domain, category, pattern_id, detail, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(eventid) DO UPDATE SET state = excluded.state, "
                "domain = COALESCE(excluded.domain, events.domain), "
                "category = COALESCE(excluded.category, events.category), "
                "pattern_id = COALESCE(excluded.pattern_id, events.pattern_id), "
                "detail = excluded.detail, updated_at = excluded.updated_at",
                [(*row, now) for row in rows])

    def record_failure(self, eventid: int, detail: str, *, give_up_after: int) -> bool:
        """Count a permanent failure; return True when the event is now given up (``failed``)."""
        now = time.time()
        with self._db.transaction() as conn:
            row = conn.execute("SELECT attempts FROM events WHERE eventid = ?", (eventid,)).fetchone()
            attempts = (row[0] if row else 0) + 1
            state: EventState = "failed" if attempts >= give_up_after else "pending"
            conn.execute(
                "INSERT INTO events (eventid, state, attempts, detail, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(eventid) DO UPDATE SET state = excluded.state, attempts = excluded.attempts, "
                "detail = excluded.detail, updated_at = excluded.updated_at",
                (eventid, state, attempts, detail, now))
        return state == "failed"

    def recent(self, limit: int = 50, state: EventState | None = None) -> list[LedgerEntry]:
        """The ``limit`` highest event ids (in ``state``, when given), newest first."""
        sql = f"SELECT {_ENTRY_COLUMNS} FROM events"
        args: tuple[object, ...] = ()
        if state:
            sql += " WHERE state = ?"
            args = (state,)
        sql += " ORDER BY eventid DESC LIMIT ?"
        return [LedgerEntry(*r) for r in self._db.execute(sql, (*args, limit))]

    def prune(self, older_than_days: int, *, keep_above: int | None) -> int:
        """Forget final entries older than N days, but never those the overlap window still re-reads.

        Also drops expired model answers (in the same transaction), as the single store
        did, so the one periodic prune keeps the whole file bounded.
        """
        cutoff = time.time() - older_than_days * 86400
        with self._db.transaction() as conn:
            cur = conn.execute(
                "DELETE FROM events WHERE updated_at < ? AND state != 'pending' AND eventid < ?",
                (cutoff, keep_above if keep_above is not None else 0))
            delete_expired(conn, time.time())
            return cur.rowcount
