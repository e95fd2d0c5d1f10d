"""The state schema: one text, written in SQLite's types, and its PostgreSQL migrations.

One schema version numbers both dialects: version N has the same tables, columns
and CHECK constraints in either, so ``hefestus state migrate`` can copy one into
the other row by row. The text below is the schema at :data:`SCHEMA_VERSION`;
:func:`postgresql` derives PostgreSQL's from it (64-bit integers, double
precision, a sequence for the audit ids) so the two cannot drift apart.

SQLite history: 2 answers (model answer cache); 3 remediations, breakers, audit;
4 unclassified (event kinds no pattern matched); 5 lease (the leader lease of
several instances). Every SQLite migration so far only adds tables, so the
upgrade from any older file is this script (all ``IF NOT EXISTS``) followed by
bumping ``schema_version``; one that changes a table must be written out step by
step.

PostgreSQL arrived at schema 5, so :data:`POSTGRESQL_MIGRATIONS` starts there;
later versions append a script each, applied in order, once (see
:mod:`.postgres`).
"""

from __future__ import annotations

import re

SCHEMA_VERSION = 5

SCHEMA = """
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
CREATE TABLE IF NOT EXISTS lease (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    epoch       INTEGER NOT NULL,
    acquired_at REAL NOT NULL,
    renewed_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);
"""

#: Every table, in the order ``hefestus state migrate`` copies them.
TABLES = ("meta", "events", "answers", "remediations", "remediation_breakers",
          "remediation_audit", "unclassified", "lease")

_POSTGRESQL_TYPES = (
    # Zabbix event ids and Rundeck execution ids are 64-bit; an INTEGER column in SQLite is too.
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b"), "BIGSERIAL PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
)


def postgresql(script: str) -> str:
    """``script`` (SQLite types) with PostgreSQL's types; the rest is common SQL."""
    for pattern, replacement in _POSTGRESQL_TYPES:
        script = pattern.sub(replacement, script)
    return script


def statements(script: str) -> list[str]:
    """The statements of a script (no ``;`` inside the schema's literals)."""
    return [s.strip() for s in script.split(";") if s.strip()]


#: schema version -> the script that brings a PostgreSQL database from the one before to it.
POSTGRESQL_MIGRATIONS: dict[int, str] = {5: postgresql(SCHEMA)}
