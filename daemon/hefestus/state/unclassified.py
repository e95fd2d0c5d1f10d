"""The event kinds no pattern matched (schema 4): what the dictionaries should learn next.

One row per kind of event, keyed by the fingerprint of its masked text (see
:func:`hefestus.analysis.teach.sighting`), so an alert storm of one unknown
message is one row with a count, not thousands. Each row keeps the routed
domain, the first :data:`MAX_HOSTS` hosts, when the kind was first and last
seen, and one sample text, already redacted by the caller and cut to
:data:`SAMPLE_LIMIT` characters: the file stays bounded whatever arrives, and
no secret reaches it. ``hefestus unclassified`` lists the rows; rows not seen
for the ledger's retention are pruned with it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass

from hefestus.state.db import Database

#: Hosts kept per kind: enough to tell "one box" from "everywhere".
MAX_HOSTS = 20
#: Characters of sample text kept per kind.
SAMPLE_LIMIT = 2000


@dataclass(frozen=True, slots=True)
class Sighting:
    """One unclassified event, as it is recorded: ``sample`` must already be redacted."""

    fingerprint: str
    domain: str
    hosts: tuple[str, ...]
    sample: str
    at: float


@dataclass(frozen=True, slots=True)
class UnclassifiedKind:
    """One ``unclassified`` row."""

    fingerprint: str
    domain: str
    count: int
    hosts: tuple[str, ...]
    sample: str
    first_seen: float
    last_seen: float


class UnclassifiedKinds:
    """``unclassified`` table: fingerprint -> count, hosts, first/last seen, sample, domain."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, sightings: Iterable[Sighting]) -> None:
        """Count the sightings, in one transaction (the first sample of a kind is kept)."""
        todo = list(sightings)
        if not todo:
            return
        with self._db.transaction() as conn:
            for s in todo:
                row = conn.execute("SELECT hosts, first_seen, last_seen FROM unclassified "
                                   "WHERE fingerprint = ?", (s.fingerprint,)).fetchone()
                if row is None:
                    hosts = list(dict.fromkeys(s.hosts))[:MAX_HOSTS]
                    conn.execute(
                        "INSERT INTO unclassified (fingerprint, domain, count, hosts, sample, first_seen, "
                        "last_seen) VALUES (?, ?, 1, ?, ?, ?, ?)",
                        (s.fingerprint, s.domain, json.dumps(hosts), s.sample[:SAMPLE_LIMIT], s.at, s.at))
                    continue
                hosts = list(dict.fromkeys([*_hosts(row[0]), *s.hosts]))[:MAX_HOSTS]
                conn.execute(  # min/max in Python: SQLite's MIN(a, b) is PostgreSQL's LEAST(a, b)
                    "UPDATE unclassified SET count = count + 1, hosts = ?, first_seen = ?, last_seen = ? "
                    "WHERE fingerprint = ?",
                    (json.dumps(hosts), min(row[1], s.at), max(row[2], s.at), s.fingerprint))

    def kinds(self, *, since: float | None = None, limit: int = 50) -> list[UnclassifiedKind]:
        """Kinds last seen at or after ``since`` (all when None), most frequent first."""
        rows = self._db.execute(
            "SELECT fingerprint, domain, count, hosts, sample, first_seen, last_seen FROM unclassified "
            "WHERE last_seen >= ? ORDER BY count DESC, last_seen DESC, fingerprint LIMIT ?",
            (since if since is not None else float("-inf"), limit))
        return [UnclassifiedKind(fp, domain, count, _hosts(hosts), sample, first, last)
                for fp, domain, count, hosts, sample, first, last in rows]

    def prune(self, older_than_days: int) -> int:
        """Forget kinds not seen for N days; the number forgotten."""
        cutoff = time.time() - older_than_days * 86400
        with self._db.transaction() as conn:
            return conn.execute("DELETE FROM unclassified WHERE last_seen < ?", (cutoff,)).rowcount


def _hosts(stored: str) -> tuple[str, ...]:
    try:
        value = json.loads(stored)
    except ValueError:
        return ()
    return tuple(str(h) for h in value) if isinstance(value, list) else ()
