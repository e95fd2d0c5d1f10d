"""The state store: poll cursor and the ledger of handled events, in SQLite.

Why SQLite: one file, transactional, and with ``synchronous=FULL`` in WAL mode
a committed write survives a crash or power cut. Every state change is its own
transaction, and the write to Zabbix is bracketed by them:

1. ``pending``   recorded *before* ``event.acknowledge`` is called;
2. ``done``      recorded after Zabbix confirmed.

A crash between 1 and 2 leaves a pending row; on restart the event is fetched
again and its acknowledgements are searched for Hefestus's marker, so the
message is never written twice. A store that cannot be opened, is corrupt or
is read-only raises :class:`~hefestus.errors.StateError`: silently starting
afresh would re-handle (or skip) events, so the operator must decide.

Self-healing keeps its safety state here too (schema 3), so it survives a
restart: one ``remediations`` row per event (its primary key is the "at most
once per event" rule), written *before* Rundeck is asked to run anything; the
per-job circuit breakers; and an append-only audit trail of every decision.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from hefestus.errors import StateError

SCHEMA_VERSION = 3  # 2: answers (model answer cache); 3: remediations, breakers, audit

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
"""

FINAL_STATES = frozenset({"done", "failed", "skipped"})


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    eventid: int
    state: str
    attempts: int
    domain: str | None
    category: str | None
    pattern_id: str | None
    detail: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class RemediationRecord:
    """One event's self-healing: what was decided, how far it got, what operators were told.

    ``state``: queued (claimed, not yet sent) -> starting (the run call is about to
    be sent: from here on the job may be running) -> running (Rundeck gave an
    execution id) -> verifying (succeeded; waiting for the problem to recover) ->
    done. ``retry``: a transient failure before anything started, tried again at
    ``next_at``. ``counted``: whether the run counts towards cooldown and the
    hourly limit (not when Rundeck refused it, or it was never sent).
    """

    eventid: int
    rule: str
    origin: str
    job_id: str
    job_name: str
    project: str
    host: str
    options: tuple[tuple[str, str], ...]
    node_filter: str | None
    timeout: float
    recovery_window: float
    state: str
    result: str = ""
    counted: bool = True
    attempts: int = 0
    exec_id: int | None = None
    permalink: str = ""
    detail: str = ""
    claimed_at: float = 0.0
    ran_at: float | None = None
    ended_at: float | None = None
    next_at: float | None = None
    outcome: str = ""
    outcome_state: str = "none"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: float
    eventid: int
    host: str
    rule: str
    job_id: str
    #: ran, dry-run, refused, started, retry, succeeded, failed, ..., recovered, still-open
    action: str
    detail: str


_REMEDIATION_COLUMNS = tuple(f.name for f in fields(RemediationRecord))
IN_FLIGHT = ("queued", "starting", "running")


def _remediation(row: tuple[Any, ...]) -> RemediationRecord:
    values = dict(zip(_REMEDIATION_COLUMNS, row, strict=True))
    values["options"] = tuple((str(k), str(v)) for k, v in json.loads(str(values["options"])))
    values["counted"] = bool(values["counted"])
    return RemediationRecord(**values)


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            # The scheduler runs cycles on a worker thread, one at a time (max_instances=1);
            # the lock below keeps any other use (signal-time close, CLI) serialised.
            self._db = sqlite3.connect(str(path), timeout=10, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            with self._tx():
                for stmt in filter(str.strip, _SCHEMA.split(";")):
                    self._db.execute(stmt)
                found = self._get_meta("schema_version")
                if found is None:
                    self._set_meta("schema_version", str(SCHEMA_VERSION))
                elif int(found) > SCHEMA_VERSION:
                    raise StateError(f"{path}: state was written by a newer Hefestus (schema {found})")
                elif int(found) < SCHEMA_VERSION:  # migrations so far only add tables
                    self._set_meta("schema_version", str(SCHEMA_VERSION))
            self._db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:
            self._close_quietly()
            raise StateError(_explain(path, exc)) from exc
        except StateError:
            self._close_quietly()
            raise
        except OSError as exc:
            raise StateError(f"{path}: cannot create the state directory: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            db.close()

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._lock:
            yield from self._tx_locked()

    def _tx_locked(self) -> Iterator[None]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise StateError(_explain(self.path, exc)) from exc

    def _get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # -- cursor -----------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        try:
            return self._get_meta(key)
        except sqlite3.DatabaseError as exc:
            raise StateError(_explain(self.path, exc)) from exc

    def set_meta(self, **values: str | int) -> None:
        with self._tx():
            for k, v in values.items():
                self._set_meta(k, str(v))

    @property
    def cursor(self) -> int | None:
        """Highest event id below which every seen event reached a final state."""
        v = self.meta("cursor")
        return None if v is None else int(v)

    def advance_cursor(self, eventid: int) -> None:
        """Move the cursor forward; never backwards."""
        with self._tx():
            current = self._get_meta("cursor")
            if current is None or eventid > int(current):
                self._set_meta("cursor", str(eventid))

    # -- ledger -----------------------------------------------------------------------

    def states(self, eventids: Iterable[int]) -> dict[int, LedgerEntry]:
        ids = list(eventids)
        out: dict[int, LedgerEntry] = {}
        try:
            for chunk in range(0, len(ids), 500):
                part = ids[chunk : chunk + 500]
                marks = ",".join("?" * len(part))
                for row in self._db.execute(
                    f"SELECT eventid, state, attempts, domain, category, pattern_id, detail, updated_at "
                    f"FROM events WHERE eventid IN ({marks})", part):
                    out[row[0]] = LedgerEntry(*row)
        except sqlite3.DatabaseError as exc:
            raise StateError(_explain(self.path, exc)) from exc
        return out

    def record(self, rows: Iterable[tuple[int, str, str | None, str | None, str | None, str]]) -> None:
        """Upsert (eventid, state, domain, category, pattern_id, detail) in one transaction."""
        now = time.time()
        with self._tx():
            self._db.executemany(
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
        with self._tx():
            row = self._db.execute("SELECT attempts FROM events WHERE eventid = ?", (eventid,)).fetchone()
            attempts = (row[0] if row else 0) + 1
            state = "failed" if attempts >= give_up_after else "pending"
            self._db.execute(
                "INSERT INTO events (eventid, state, attempts, detail, updated_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(eventid) DO UPDATE SET state = excluded.state, attempts = excluded.attempts, "
                "detail = excluded.detail, updated_at = excluded.updated_at",
                (eventid, state, attempts, detail, now))
        return state == "failed"

    def recent(self, limit: int = 50, state: str | None = None) -> list[LedgerEntry]:
        sql = ("SELECT eventid, state, attempts, domain, category, pattern_id, detail, updated_at "
               "FROM events")
        args: tuple[object, ...] = ()
        if state:
            sql += " WHERE state = ?"
            args = (state,)
        sql += " ORDER BY eventid DESC LIMIT ?"
        return [LedgerEntry(*r) for r in self._db.execute(sql, (*args, limit))]

    # -- model answer cache (storm dedup) ----------------------------------------------

    def cached_answers(self, fingerprints: Iterable[str]) -> dict[str, tuple[str, str]]:
        """fingerprint -> (model, answer JSON) for the answers that have not expired."""
        fps = list(dict.fromkeys(fingerprints))
        out: dict[str, tuple[str, str]] = {}
        now = time.time()
        try:
            with self._lock:
                for chunk in range(0, len(fps), 500):
                    part = fps[chunk : chunk + 500]
                    marks = ",".join("?" * len(part))
                    for fp, model, answer in self._db.execute(
                            f"SELECT fingerprint, model, answer FROM answers "
                            f"WHERE fingerprint IN ({marks}) AND expires_at > ?", (*part, now)):
                        out[fp] = (model, answer)
        except sqlite3.DatabaseError as exc:
            raise StateError(_explain(self.path, exc)) from exc
        return out

    def cache_answer(self, fingerprint: str, model: str, answer: str, *, ttl: float) -> None:
        now = time.time()
        with self._tx():
            self._db.execute(
                "INSERT INTO answers (fingerprint, model, answer, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(fingerprint) DO UPDATE SET model = excluded.model, "
                "answer = excluded.answer, created_at = excluded.created_at, "
                "expires_at = excluded.expires_at", (fingerprint, model, answer, now, now + ttl))

    def prune(self, older_than_days: int, *, keep_above: int | None) -> int:
        """Forget final entries older than N days, but never those the overlap window still re-reads."""
        cutoff = time.time() - older_than_days * 86400
        with self._tx():
            cur = self._db.execute(
                "DELETE FROM events WHERE updated_at < ? AND state != 'pending' AND eventid < ?",
                (cutoff, keep_above if keep_above is not None else 0))
            self._db.execute("DELETE FROM answers WHERE expires_at < ?", (time.time(),))
            return cur.rowcount


    # -- remediation (self-healing) --------------------------------------------------

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return list(self._db.execute(sql, args).fetchall())
        except sqlite3.DatabaseError as exc:
            raise StateError(_explain(self.path, exc)) from exc

    def remediation(self, eventid: int) -> RemediationRecord | None:
        rows = self._read(f"SELECT {', '.join(_REMEDIATION_COLUMNS)} FROM remediations "
                          "WHERE eventid = ?", (eventid,))
        return _remediation(rows[0]) if rows else None

    def remediations(self, states: Iterable[str] = (), *, outcome_state: str | None = None
                     ) -> list[RemediationRecord]:
        """Rows in any of ``states`` (all when empty) and/or with that outcome state, oldest first."""
        where, args = [], []
        states = list(states)
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if outcome_state is not None:
            where.append("outcome_state = ?")
            args.append(outcome_state)
        sql = f"SELECT {', '.join(_REMEDIATION_COLUMNS)} FROM remediations"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_remediation(r) for r in self._read(sql + " ORDER BY eventid", tuple(args))]

    def _row(self, rec: RemediationRecord) -> tuple[object, ...]:
        values = list(astuple(rec))
        values[_REMEDIATION_COLUMNS.index("options")] = json.dumps([list(o) for o in rec.options])
        values[_REMEDIATION_COLUMNS.index("counted")] = int(rec.counted)
        return tuple(values)

    def add_remediation(self, rec: RemediationRecord) -> bool:
        """Insert the row unless the event already has one; True when inserted."""
        marks = ",".join("?" * len(_REMEDIATION_COLUMNS))
        with self._tx():
            cur = self._db.execute(
                f"INSERT OR IGNORE INTO remediations ({', '.join(_REMEDIATION_COLUMNS)}) "
                f"VALUES ({marks})", self._row(rec))
            return cur.rowcount == 1

    def save_remediation(self, rec: RemediationRecord) -> None:
        """Write the whole row (the event's row must exist)."""
        cols = [c for c in _REMEDIATION_COLUMNS if c != "eventid"]
        row = self._row(rec)
        with self._tx():
            self._db.execute(
                f"UPDATE remediations SET {', '.join(c + ' = ?' for c in cols)} WHERE eventid = ?",
                (*row[1:], rec.eventid))

    def remediation_claims(self, job_id: str, since: float, host: str | None = None) -> list[float]:
        """When counted runs of this job (on this host) were claimed, since ``since``, oldest first."""
        sql = "SELECT claimed_at FROM remediations WHERE job_id = ? AND counted = 1 AND claimed_at >= ?"
        args: tuple[object, ...] = (job_id, since)
        if host is not None:
            sql += " AND host = ?"
            args = (*args, host)
        return [float(r[0]) for r in self._read(sql + " ORDER BY claimed_at", args)]

    def audit_counts(self) -> dict[str, int]:
        """Audit entries by action (ran, dry-run, refused, succeeded, failed, ...), for metrics."""
        return {str(a): int(n) for a, n in self._read(
            "SELECT action, COUNT(*) FROM remediation_audit GROUP BY action")}

    def remediations_in_flight(self) -> int:
        rows = self._read(f"SELECT COUNT(*) FROM remediations WHERE state IN "
                          f"({','.join('?' * len(IN_FLIGHT))})", IN_FLIGHT)
        return int(rows[0][0])

    def breaker(self, job_id: str) -> tuple[int, float | None]:
        """(consecutive failures, when the breaker opened or None) for one job."""
        rows = self._read("SELECT failures, opened_at FROM remediation_breakers WHERE job_id = ?",
                          (job_id,))
        if not rows:
            return 0, None
        failures, opened = rows[0]
        return int(failures), (None if opened is None else float(opened))

    def set_breaker(self, job_id: str, failures: int, opened_at: float | None) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO remediation_breakers (job_id, failures, opened_at) VALUES (?, ?, ?) "
                "ON CONFLICT(job_id) DO UPDATE SET failures = excluded.failures, "
                "opened_at = excluded.opened_at", (job_id, failures, opened_at))

    def audit(self, entry: AuditEntry) -> None:
        with self._tx():
            self._db.execute(
                "INSERT INTO remediation_audit (at, eventid, host, rule, job_id, action, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", astuple(entry))

    def audit_trail(self, limit: int = 50, *, eventid: int | None = None) -> list[AuditEntry]:
        """The latest entries, newest first."""
        sql = "SELECT at, eventid, host, rule, job_id, action, detail FROM remediation_audit"
        args: tuple[object, ...] = ()
        if eventid is not None:
            sql += " WHERE eventid = ?"
            args = (eventid,)
        rows = self._read(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [AuditEntry(*r) for r in rows]

    def prune_remediation(self, older_than_days: int) -> int:
        """Forget finished remediations and audit entries older than N days (not the breakers)."""
        cutoff = time.time() - older_than_days * 86400
        with self._tx():
            cur = self._db.execute("DELETE FROM remediations WHERE state = 'done' AND "
                                   "COALESCE(ended_at, claimed_at) < ?", (cutoff,))
            self._db.execute("DELETE FROM remediation_audit WHERE at < ?", (cutoff,))
            return cur.rowcount


def _explain(path: Path, exc: sqlite3.DatabaseError) -> str:
    msg = str(exc)
    if "readonly" in msg or "read-only" in msg:
        hint = "the file or its directory is read-only for this user; fix permissions"
    elif "not a database" in msg or "malformed" in msg:
        hint = ("the file is corrupt; move it aside to start afresh (events already acknowledged "
                "are recognised by their [Hefestus] marker, so none is written twice)")
    elif "unable to open" in msg:
        hint = ("the file cannot be opened for writing; check the path, its permissions and that "
                "the filesystem is not read-only")
    elif "locked" in msg:
        hint = "another process holds the database; is a second Hefestus running?"
    else:
        hint = "the state store failed"
    return f"state store {path}: {msg}: {hint}"
