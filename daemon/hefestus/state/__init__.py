"""Hefestus's durable state: one SQLite file, four repositories over one connection.

Why SQLite: one file, transactional, and with ``synchronous=FULL`` in WAL mode
a committed write survives a crash or power cut. Every state change is its own
transaction, and the write to Zabbix is bracketed by them:

1. ``pending``   recorded *before* ``event.acknowledge`` is called;
2. ``done``      recorded after Zabbix confirmed.

A crash between 1 and 2 leaves a pending row; on restart the event is fetched
again and its acknowledgements are searched for Hefestus's marker, so the
message is never written twice.

A state file that cannot be opened, is corrupt, is read-only or was written by
a newer Hefestus raises :class:`~hefestus.errors.StateError` and is left
untouched: silently starting afresh would re-handle (or skip) events, and
running against a schema this code does not know could misread it, so the
operator must decide.

The file holds four kinds of state, each with its own repository:

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

They share one connection and one lock (:mod:`.db`), so a consumer is handed
just the repository it needs and the file is opened once, by :func:`open_state`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hefestus.state.answers import AnswerCache
from hefestus.state.db import SCHEMA_VERSION, Database
from hefestus.state.ledger import FINAL_STATES, EventState, Ledger, LedgerEntry
from hefestus.state.remediations import (
    AuditEntry,
    OutcomeState,
    RemediationRecord,
    RemediationRecords,
    RunState,
)
from hefestus.state.unclassified import Sighting, UnclassifiedKind, UnclassifiedKinds

__all__ = [
    "FINAL_STATES",
    "SCHEMA_VERSION",
    "AnswerCache",
    "AuditEntry",
    "EventState",
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
    """The opened state file: its repositories, and :meth:`close` for the one connection."""

    ledger: Ledger
    answers: AnswerCache
    remediations: RemediationRecords
    database: Database
    unclassified: UnclassifiedKinds

    def close(self) -> None:
        """Close the shared connection; the repositories are unusable afterwards."""
        self.database.close()


def open_state(path: Path) -> State:
    """Open (creating or upgrading) the state file; :class:`~hefestus.errors.StateError` if unusable."""
    db = Database(path)
    return State(ledger=Ledger(db), answers=AnswerCache(db), remediations=RemediationRecords(db),
                 database=db, unclassified=UnclassifiedKinds(db))
