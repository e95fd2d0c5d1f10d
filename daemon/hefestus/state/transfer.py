"""``hefestus state migrate``: every row of one state store into another, empty one.

Why a copy and not a fresh start: the ledger and the remediation claims are what
keep messages exactly once and jobs at most once; a new PostgreSQL state without
them would look back over events the SQLite one already handled (the Zabbix
marker check would still catch the messages, but nothing would stop a second
remediation run). Both stores are at :data:`~.schema.SCHEMA_VERSION` once opened,
so the rows copy column for column, audit ids included.

It runs as one transaction on each side: the source's (SQLite's ``BEGIN
IMMEDIATE``) keeps a daemon that was left running from writing mid-copy, and the
target's commits all the rows or none. A target that already holds state (any row
besides its ``meta``) is refused: merging two ledgers is not something to do by
accident. The lease is not copied: it belongs to the instances now running.
"""

from __future__ import annotations

from hefestus.errors import StateError
from hefestus.state.db import Connection, Database
from hefestus.state.schema import TABLES

#: The lease is not copied: it belongs to the instances running on the target.
_COPIED = tuple(t for t in TABLES if t != "lease")


def copy_state(source: Database, target: Database) -> dict[str, int]:
    """Copy every table of ``source`` into the empty ``target``; rows copied per table."""
    counts: dict[str, int] = {}
    with source.transaction() as src, target.transaction() as dst:
        held = {t: _count(dst, t) for t in _COPIED if t != "meta"}
        if any(held.values()):
            found = ", ".join(f"{n} {t}" for t, n in held.items() if n)
            raise StateError(f"state store {target.describe()} already holds state ({found}): "
                             "migrate only into a freshly created database")
        for table in _COPIED:
            cur = src.execute(f"SELECT * FROM {table}")
            columns = [str(d[0]) for d in cur.description]
            rows = [tuple(r) for r in cur.fetchall()]
            if table == "meta":  # the schema version stays the target's own (the same number)
                rows = [r for r in rows if r[0] != "schema_version"]
                dst.execute("DELETE FROM meta WHERE key != 'schema_version'")
            if rows:
                marks = ", ".join("?" * len(columns))
                dst.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
            counts[table] = len(rows)
        if target.dialect == "postgresql":
            # The copied audit ids were given explicitly: the next one must come after them.
            dst.execute("SELECT setval(pg_get_serial_sequence('remediation_audit', 'id'), "
                        "COALESCE(MAX(id), 0) + 1, false) FROM remediation_audit")
    return counts


def _count(conn: Connection, table: str) -> int:
    return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
