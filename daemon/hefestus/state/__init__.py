"""Hefestus's durable state: four repositories over one backend, SQLite or PostgreSQL.

SQLite (the default, ``[state] path``, :mod:`.sqlite`): one file, transactional,
and with ``synchronous=FULL`` in WAL mode a committed write survives a crash or
power cut. PostgreSQL (``[state] url``, :mod:`.postgres`): the same tables in a
database several instances share, one of them active (the leader). Every state
change is its own transaction, and the write to Zabbix is bracketed by them:

1. ``pending``   recorded *before* ``event.acknowledge`` is called;
2. ``done``      recorded after Zabbix confirmed.

A crash between 1 and 2 leaves a pending row; on restart the event is fetched
again and its acknowledgements are searched for Hefestus's marker, so the
message is never written twice. With several instances, the transactions that
record such an intent are *fenced* (see :mod:`.db`): a leader that lost its
lease cannot record one.

A state store that cannot be opened, is corrupt, is read-only, holds someone
else's tables or was written by a newer Hefestus raises
:class:`~hefestus.errors.StateError` and is left untouched: silently starting
afresh would re-handle (or skip) events, and running against a schema this code
does not know could misread it, so the operator must decide. A PostgreSQL
server that is down or restarting raises
:class:`~hefestus.errors.StateUnavailable`: try again later.

The store holds four kinds of state, each with its own repository:

* :class:`Ledger` (:mod:`.ledger`): the poll cursor and the ledger of handled
  events, described above;
* :class:`AnswerCache` (:mod:`.answers`): model answers by event fingerprint,
  so an alert storm costs one model call per kind of event, even across a restart;
* :class:`RemediationRecords` (:mod:`.remediations`): self-healing's safety
  state (schema 3): one row per event (its primary key is the "at most once per
  event" rule), written *before* Rundeck is asked to run anything; the per-job
  circuit breakers; and an append-only audit trail of every decision;
* :class:`UnclassifiedKinds` (:mod:`.unclassified`): the event kinds no pattern
  matched (schema 4), by fingerprint, for ``hefestus unclassified``.

Schema 5 adds the ``lease`` table the leader election keeps its lease in. The
repositories share one backend and its lock (:mod:`.db`), so a consumer is handed
just the repository it needs and the store is opened once, by :func:`open_state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hefestus.config.sections import POSTGRESQL_SCHEMES, StateSettings
from hefestus.errors import StateError
from hefestus.state.answers import AnswerCache
from hefestus.state.db import Connection, Database, Fence
from hefestus.state.ledger import FINAL_STATES, EventState, Ledger, LedgerEntry
from hefestus.state.remediations import (
    AuditEntry,
    OutcomeState,
    RemediationRecord,
    RemediationRecords,
    RunState,
)
from hefestus.state.schema import SCHEMA_VERSION
from hefestus.state.sqlite import SqliteDatabase
from hefestus.state.unclassified import Sighting, UnclassifiedKind, UnclassifiedKinds

__all__ = [
    "FINAL_STATES",
    "SCHEMA_VERSION",
    "AnswerCache",
    "AuditEntry",
    "Connection",
    "Database",
    "EventState",
    "Fence",
    "Ledger",
    "LedgerEntry",
    "OutcomeState",
    "RemediationRecord",
    "RemediationRecords",
    "RunState",
    "Sighting",
    "State",
    "UnclassifiedKind",
    "UnclassifiedKinds",
    "open_state",
]


@dataclass(frozen=True, slots=True)
class State:
    """The opened state store: its repositories, and :meth:`close` for the backend."""

    ledger: Ledger
    answers: AnswerCache
    remediations: RemediationRecords
    database: Database
    unclassified: UnclassifiedKinds

    def close(self) -> None:
        """Close the backend's connection(s); the repositories are unusable afterwards."""
        self.database.close()


def open_state(where: Path | str | StateSettings) -> State:
    """Open (creating or upgrading) the state; :class:`~hefestus.errors.StateError` if unusable.

    ``where``: a SQLite file's path; a ``postgresql://`` URL; or the ``[state]`` settings,
    whose ``url``, when set, wins over its ``path`` (a relative path is taken as it is:
    resolve it against the configuration's folder first, as ``Settings.state_path`` does).
    """
    if isinstance(where, StateSettings):
        where = where.url.get_secret_value() if where.url is not None else where.path
    db: Database
    if isinstance(where, str) and where.startswith(POSTGRESQL_SCHEMES):
        from hefestus.state.postgres import PostgresDatabase  # psycopg only when it is used

        db = PostgresDatabase(where)
    elif isinstance(where, str) and "://" in where:
        raise StateError(f"state store: {where.split('://')[0]}:// is not a state URL; "
                         "use postgresql://user@host:port/dbname or a file path")
    else:
        db = SqliteDatabase(Path(where))
    return State(ledger=Ledger(db), answers=AnswerCache(db), remediations=RemediationRecords(db),
                 database=db, unclassified=UnclassifiedKinds(db))
