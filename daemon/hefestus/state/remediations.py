"""Self-healing's safety state: one row per event, the per-job breakers, the audit trail.

Kept in the state file (schema 3), not in memory, because every limit it backs
must survive a restart: the ``remediations`` primary key is the "at most once
per event" rule, and the row is written *before* Rundeck is asked to run
anything, so a crash after the run call cannot lead to a second run; the
cooldown and hourly limits are read from the rows' ``claimed_at``; a breaker
that opened stays open; and the audit trail is what operators read to learn
why a job ran, or did not.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import astuple, dataclass, fields, replace
from typing import Any, Literal, TypeAlias, TypedDict, Unpack

from hefestus.state.db import Database

#: How far one event's remediation got; the values of the ``remediations.state`` CHECK.
RunState: TypeAlias = Literal["queued", "starting", "running", "retry", "verifying", "done"]

#: Whether the outcome message reached Zabbix; the values of the ``outcome_state`` CHECK.
OutcomeState: TypeAlias = Literal["none", "pending", "written", "failed"]


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
    state: RunState
    #: how it ended (recovered, refused, dropped, ...); no CHECK constraint, so a plain str
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
    outcome_state: OutcomeState = "none"


class RecordChanges(TypedDict, total=False):
    """What the remediation engine changes on a row as a run moves on (see :meth:`update`)."""

    state: RunState
    result: str
    counted: bool
    attempts: int
    exec_id: int | None
    permalink: str
    detail: str
    ran_at: float | None
    ended_at: float | None
    next_at: float | None
    outcome: str
    outcome_state: OutcomeState


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One line of the append-only audit trail: a decision about one event's remediation."""

    at: float
    eventid: int
    host: str
    rule: str
    job_id: str
    #: ran, dry-run, refused, started, retry, succeeded, failed, ..., recovered, still-open
    action: str
    detail: str


# The table's columns are the record's fields, in order: reading a row is zip(), writing astuple().
_COLUMNS = tuple(f.name for f in fields(RemediationRecord))
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM remediations"
#: Runs that may be executing on a node right now: the concurrency limit counts these.
IN_FLIGHT: tuple[RunState, ...] = ("queued", "starting", "running")


def _record(row: tuple[Any, ...]) -> RemediationRecord:
    values = dict(zip(_COLUMNS, row, strict=True))
    values["options"] = tuple((str(k), str(v)) for k, v in json.loads(str(values["options"])))
    values["counted"] = bool(values["counted"])
    return RemediationRecord(**values)


def _row(rec: RemediationRecord) -> tuple[object, ...]:
    values = list(astuple(rec))
    values[_COLUMNS.index("options")] = json.dumps([list(o) for o in rec.options])
    values[_COLUMNS.index("counted")] = int(rec.counted)
    return tuple(values)


class RemediationRecords:
    """``remediations``, ``remediation_breakers`` and ``remediation_audit``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # -- one row per event ----------------------------------------------------------------

    def remediation(self, eventid: int) -> RemediationRecord | None:
        rows = self._db.execute(f"{_SELECT} WHERE eventid = ?", (eventid,))
        return _record(rows[0]) if rows else None

    def remediations(self, states: Iterable[RunState] = (), *,
                     outcome_state: OutcomeState | None = None) -> list[RemediationRecord]:
        """Rows in any of ``states`` (all when empty) and/or with that outcome state, oldest first."""
        where: list[str] = []
        args: list[object] = []
        wanted = list(states)
        if wanted:
            where.append(f"state IN ({','.join('?' * len(wanted))})")
            args.extend(wanted)
        if outcome_state is not None:
            where.append("outcome_state = ?")
            args.append(outcome_state)
        sql = _SELECT
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_record(r) for r in self._db.execute(sql + " ORDER BY eventid", args)]

    def add_remediation(self, rec: RemediationRecord) -> bool:
        """Insert the row unless the event already has one; True when inserted.

        ``ON CONFLICT DO NOTHING`` on the primary key makes the claim atomic: of two
        attempts for one event, exactly one gets True, even from two instances. Fenced (see
        :mod:`.db`): the row is the intent to run the job.
        """
        marks = ",".join("?" * len(_COLUMNS))
        with self._db.transaction(fenced=True) as conn:
            cur = conn.execute(
                f"INSERT INTO remediations ({', '.join(_COLUMNS)}) VALUES ({marks}) "
                "ON CONFLICT (eventid) DO NOTHING", _row(rec))
            return cur.rowcount == 1

    def update(self, eventid: int, **changes: Unpack[RecordChanges]) -> RemediationRecord:
        """Change some fields of the event's row (which must exist), in one transaction;
        returns the row as it now stands."""
        with self._db.hold():
            rec = self.remediation(eventid)
            if rec is None:
                raise KeyError(f"no remediation row for event {eventid}")
            rec = replace(rec, **changes)
            self.save_remediation(rec)
            return rec

    def save_remediation(self, rec: RemediationRecord) -> None:
        """Write the whole row (the event's row must exist); fenced, as :meth:`add_remediation`
        (:meth:`update` writes through here)."""
        cols = [c for c in _COLUMNS if c != "eventid"]
        row = _row(rec)
        with self._db.transaction(fenced=True) as conn:
            conn.execute(
                f"UPDATE remediations SET {', '.join(c + ' = ?' for c in cols)} WHERE eventid = ?",
                (*row[1:], rec.eventid))

    def remediation_claims(self, job_id: str, since: float, host: str | None = None) -> list[float]:
        """When counted runs of this job (on this host) were claimed, since ``since``, oldest first."""
        sql = "SELECT claimed_at FROM remediations WHERE job_id = ? AND counted = 1 AND claimed_at >= ?"
        args: tuple[object, ...] = (job_id, since)
        if host is not None:
            sql += " AND host = ?"
            args = (*args, host)
        return [float(r[0]) for r in self._db.execute(sql + " ORDER BY claimed_at", args)]

    def remediations_in_flight(self) -> int:
        """How many runs are queued, starting or running (the concurrency limit's count)."""
        rows = self._db.execute(f"SELECT COUNT(*) FROM remediations WHERE state IN "
                                f"({','.join('?' * len(IN_FLIGHT))})", IN_FLIGHT)
        return int(rows[0][0])

    # -- breakers -------------------------------------------------------------------------

    def breaker(self, job_id: str) -> tuple[int, float | None]:
        """(consecutive failures, when the breaker opened or None) for one job."""
        rows = self._db.execute(
            "SELECT failures, opened_at FROM remediation_breakers WHERE job_id = ?", (job_id,))
        if not rows:
            return 0, None
        failures, opened = rows[0]
        return int(failures), (None if opened is None else float(opened))

    def set_breaker(self, job_id: str, failures: int, opened_at: float | None) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO remediation_breakers (job_id, failures, opened_at) VALUES (?, ?, ?) "
                "ON CONFLICT(job_id) DO UPDATE SET failures = excluded.failures, "
                "opened_at = excluded.opened_at", (job_id, failures, opened_at))

    # -- audit trail ----------------------------------------------------------------------

    def audit(self, entry: AuditEntry) -> None:
        """Append one entry (never updated, only pruned by age)."""
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO remediation_audit (at, eventid, host, rule, job_id, action, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", astuple(entry))

    def audit_trail(self, limit: int = 50, *, eventid: int | None = None) -> list[AuditEntry]:
        """The latest entries, newest first."""
        sql = "SELECT at, eventid, host, rule, job_id, action, detail FROM remediation_audit"
        args: tuple[object, ...] = ()
        if eventid is not None:
            sql += " WHERE eventid = ?"
            args = (eventid,)
        rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
        return [AuditEntry(*r) for r in rows]

    def audit_counts(self) -> dict[str, int]:
        """Audit entries by action (ran, dry-run, refused, succeeded, failed, ...), for metrics."""
        return {str(a): int(n) for a, n in self._db.execute(
            "SELECT action, COUNT(*) FROM remediation_audit GROUP BY action")}

    # -- housekeeping ---------------------------------------------------------------------

    def prune_remediation(self, older_than_days: int) -> int:
        """Forget finished remediations and audit entries older than N days (not the breakers).

        Breakers are kept: one per job, so they cannot grow, and forgetting an open one
        would let a failing job run again.
        """
        cutoff = time.time() - older_than_days * 86400
        with self._db.transaction() as conn:
            cur = conn.execute("DELETE FROM remediations WHERE state = 'done' AND "
                               "COALESCE(ended_at, claimed_at) < ?", (cutoff,))
            conn.execute("DELETE FROM remediation_audit WHERE at < ?", (cutoff,))
            return cur.rowcount
