"""Self-healing state in the store: added by an additive migration, one row per event, kept
(on both backends)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from hefestus.state import SCHEMA_VERSION, AuditEntry, RemediationRecord, open_state


def record(eventid: int, **kw: object) -> RemediationRecord:
    base: dict[str, object] = dict(
        eventid=eventid, rule="restart", origin="rules/50-linux.toml:20", job_id="job-1",
        job_name="Restart", project="ops", host="web1", options=(("unit", "nginx.service"),),
        node_filter=None, timeout=300.0, recovery_window=60.0, state="queued", claimed_at=1000.0)
    base.update(kw)
    return RemediationRecord(**base)  # type: ignore[arg-type]


def test_a_v2_state_file_is_migrated_without_losing_anything(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE events (eventid INTEGER PRIMARY KEY, state TEXT NOT NULL, attempts INTEGER NOT NULL
            DEFAULT 0, domain TEXT, category TEXT, pattern_id TEXT, detail TEXT NOT NULL DEFAULT '',
            updated_at REAL NOT NULL);
        CREATE TABLE answers (fingerprint TEXT PRIMARY KEY, model TEXT NOT NULL, answer TEXT NOT NULL,
            created_at REAL NOT NULL, expires_at REAL NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '2'), ('cursor', '41');
        INSERT INTO events VALUES (40, 'done', 0, 'linux', 'oom', 'oom', '', 1.0);
    """)
    db.commit()
    db.close()
    st = open_state(path)
    s, r = st.ledger, st.remediations
    assert SCHEMA_VERSION == 5 and s.meta("schema_version") == "5"
    assert s.cursor == 41 and s.states([40])[40].state == "done"
    assert r.add_remediation(record(40))
    assert r.remediation(40) == record(40)


def test_one_row_per_event_and_what_the_limits_read(state_at: Path | str) -> None:
    st = open_state(state_at)
    s = st.remediations
    assert s.add_remediation(record(1))
    assert not s.add_remediation(record(1, host="other"))  # at most once per event
    assert s.remediation(1).host == "web1"  # type: ignore[union-attr]
    s.add_remediation(record(2, host="web2", claimed_at=2000.0, state="running", exec_id=7))
    s.add_remediation(record(3, claimed_at=3000.0, state="done", counted=False, result="rejected"))
    assert s.remediation_claims("job-1", 0) == [1000.0, 2000.0]  # the refused run does not count
    assert s.remediation_claims("job-1", 1500.0, "web2") == [2000.0]
    assert s.remediations_in_flight() == 2
    assert [r.eventid for r in s.remediations(["running"])] == [2]
    running = s.remediation(2)
    assert running is not None
    s.save_remediation(replace(running, state="done", outcome="x", outcome_state="pending"))
    assert [r.eventid for r in s.remediations(outcome_state="pending")] == [2]
    assert s.breaker("job-1") == (0, None)
    s.set_breaker("job-1", 3, 99.0)
    st.close()
    st = open_state(state_at)
    s = st.remediations  # all of it survives a restart
    assert s.breaker("job-1") == (3, 99.0) and s.remediation(2).state == "done"  # type: ignore[union-attr]
    for i in range(3):
        s.audit(AuditEntry(float(i), i, "web1", "restart", "job-1", "run", f"entry {i}"))
    assert [e.detail for e in s.audit_trail(2)] == ["entry 2", "entry 1"]
    assert [e.eventid for e in s.audit_trail(eventid=1)] == [1]
    assert s.prune_remediation(1) == 2  # the finished rows (2, 3); row 1 is still queued
    assert s.remediation(1) is not None and s.audit_trail() == []
    s.audit(AuditEntry(9.0, 9, "web1", "restart", "job-1", "run", "after the prune"))
    assert s.audit_counts() == {"run": 1} and s.update(1, state="done").state == "done"
    st.close()
