"""The model answer cache: one answer per event fingerprint, kept for a while.

Why: an alert storm is many events with the same fingerprint, and asking the
model once per event would cost minutes of GPU for the same answer. Why in the
state file rather than in memory: a restarted daemon (deploy, crash) in the
middle of a storm would otherwise ask again for every fingerprint it had
already answered.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from hefestus.state.db import Connection, Database


class AnswerCache:
    """``answers`` table: fingerprint -> (model, answer JSON) until it expires."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def cached_answers(self, fingerprints: Iterable[str]) -> dict[str, tuple[str, str]]:
        """fingerprint -> (model, answer JSON) for the answers that have not expired."""
        fps = list(dict.fromkeys(fingerprints))
        out: dict[str, tuple[str, str]] = {}
        now = time.time()
        for chunk in range(0, len(fps), 500):  # below SQLite's bound-parameter limit (PostgreSQL's is 65535)
            part = fps[chunk : chunk + 500]
            marks = ",".join("?" * len(part))
            for fp, model, answer in self._db.execute(
                    f"SELECT fingerprint, model, answer FROM answers "
                    f"WHERE fingerprint IN ({marks}) AND expires_at > ?", (*part, now)):
                out[fp] = (model, answer)
        return out

    def cache_answer(self, fingerprint: str, model: str, answer: str, *, ttl: float) -> None:
        """Keep ``answer`` for ``ttl`` seconds, replacing any earlier one for the fingerprint."""
        now = time.time()
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO answers (fingerprint, model, answer, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT(fingerprint) DO UPDATE SET model = excluded.model, "
                "answer = excluded.answer, created_at = excluded.created_at, "
                "expires_at = excluded.expires_at", (fingerprint, model, answer, now, now + ttl))

    def prune(self) -> int:
        """Forget expired answers; the number forgotten.

        :meth:`hefestus.state.ledger.Ledger.prune` already does this as part of the
        periodic ledger prune (as the single store did); this is for callers that
        want it on its own.
        """
        with self._db.transaction() as conn:
            return delete_expired(conn, time.time())


def delete_expired(conn: Connection, now: float) -> int:
    """Delete answers expired before ``now``, inside the caller's transaction."""
    return conn.execute("DELETE FROM answers WHERE expires_at < ?", (now,)).rowcount
