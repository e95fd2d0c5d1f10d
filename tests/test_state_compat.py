"""State files written before the store was split into repositories keep working.

``tests/data/state-v3.db`` was written by the single ``Store`` class (``hefestus.state.store``, before the split)
(schema 3), closed so its WAL was checkpointed into the file, and checked in:
meta (cursor 100, floor, backlog bounds), ledger rows 101-104 in each state, a
live and an expired model answer, remediation rows 101 and 105-108 in every
run state plus 102 finished, two breakers and four audit entries. A daemon
upgraded in place must read all of it back, and keep writing to it.

The same contents copied into PostgreSQL by ``hefestus state migrate``'s
:func:`~hefestus.state.transfer.copy_state` must read back, and take new writes,
exactly the same (``v3_state``: once per backend).
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from hefestus.errors import StateError
from hefestus.state import (
    SCHEMA_VERSION,
    AuditEntry,
    RemediationRecord,
    Sighting,
    State,
    open_state,
)
from hefestus.state.transfer import copy_state

FIXTURE = Path(__file__).parent / "data" / "state-v3.db"
ANSWER = '{"cause": "disk full", "fix": "rotate logs"}'


@pytest.fixture
def v3(tmp_path: Path) -> Path:
    """A copy: opening the fixture itself would rewrite it (WAL files, schema upkeep)."""
    path = tmp_path / "state.db"
    shutil.copyfile(FIXTURE, path)
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def v3_state(request: pytest.FixtureRequest, v3: Path) -> Path | str:
    """The fixture's contents, in a SQLite file or copied into an empty PostgreSQL database."""
    if request.param == "sqlite":
        return v3
    url = str(request.getfixturevalue("pg_url"))
    source, target = open_state(v3), open_state(url)
    try:
        copy_state(source.database, target.database)
    finally:
        source.close()
        target.close()
    return url


def _schema(path: Path) -> list[tuple[str, str, str | None]]:
    db = sqlite3.connect(path)
    try:
        return [(str(t), str(n), s) for t, n, s in db.execute(
            "SELECT type, name, sql FROM sqlite_master ORDER BY type, name")]
    finally:
        db.close()


def _rec(eventid: int, **kw: object) -> RemediationRecord:
    base: dict[str, object] = dict(
        rule="restart-nginx", origin="rules/50-linux.toml:20", job_id="job-1",
        job_name="Restart nginx", project="ops", options=(("unit", "nginx.service"),),
        node_filter=None, timeout=300.0, recovery_window=60.0)
    base.update(kw)
    return RemediationRecord(eventid=eventid, **base)  # type: ignore[arg-type]


def test_the_schema_is_the_one_a_new_file_gets(v3: Path, tmp_path: Path) -> None:
    """Same tables, indexes and CHECK constraints, so nothing needs migrating."""
    open_state(tmp_path / "new.db").close()
    open_state(v3).close()
    assert _schema(v3) == _schema(tmp_path / "new.db")


def test_every_value_reads_back(v3_state: Path | str) -> None:
    st = open_state(v3_state)
    try:
        _assert_fixture_contents(st)
    finally:
        st.close()


def _assert_fixture_contents(st: State) -> None:
    ledger, answers, rem = st.ledger, st.answers, st.remediations
    assert ledger.meta("schema_version") == str(SCHEMA_VERSION) == "5"  # upgraded at open
    assert ledger.cursor == 100
    assert (ledger.meta("floor"), ledger.meta("backlog_until"), ledger.meta("backlog_since")) == (
        "90", "120", "80")
    assert ledger.meta("nothing") is None

    rows = ledger.states([101, 102, 103, 104, 999])
    assert sorted(rows) == [101, 102, 103, 104]
    assert [(e.state, e.attempts, e.domain, e.category, e.pattern_id, e.detail)
            for e in (rows[i] for i in (101, 102, 103, 104))] == [
        ("pending", 0, "linux", "disk-full", "disk-full", "writing"),
        ("done", 0, "linux", "oom", "oom-killer", ""),
        ("skipped", 0, None, None, None, "host not in scope"),
        ("failed", 1, None, None, None, "zabbix refused: no permissions"),
    ]
    assert all(e.updated_at > 0 for e in rows.values())
    assert [e.eventid for e in ledger.recent()] == [104, 103, 102, 101]
    assert [e.eventid for e in ledger.recent(10, "failed")] == [104]

    assert answers.cached_answers(["fp-disk", "fp-old", "fp-unknown"]) == {
        "fp-disk": ("qwen2.5:7b", ANSWER)}  # fp-old has expired

    assert rem.remediation(102) == RemediationRecord(
        eventid=102, rule="restart-nginx", origin="rules/50-linux.toml:20", job_id="job-1",
        job_name="Restart nginx", project="ops", host="web1",
        options=(("unit", "nginx.service"), ("signal", "HUP")), node_filter="web1", timeout=300.0,
        recovery_window=60.0, state="done", result="recovered", counted=True, attempts=1, exec_id=77,
        permalink="https://rundeck.example/execution/77", detail="exit 0", claimed_at=1000.0,
        ran_at=1001.0, ended_at=1010.0, next_at=None, outcome="Recovered after restart",
        outcome_state="written")
    assert rem.remediation(101) == _rec(
        101, rule="clean-tmp", origin="rules/50-linux.toml:40", job_id="job-2", job_name="Clean /tmp",
        host="web2", options=(), timeout=120.0, recovery_window=30.0, state="running", exec_id=78,
        claimed_at=2000.0, ran_at=2001.0)
    assert rem.remediation(105) == _rec(
        105, rule="clean-tmp", origin="rules/50-linux.toml:40", job_id="job-2", job_name="Clean /tmp",
        host="web3", options=(("path", "/tmp"),), timeout=120.0, recovery_window=30.0, state="retry",
        attempts=2, detail="rundeck unavailable", claimed_at=3000.0, next_at=3060.0)
    assert rem.remediation(106) == _rec(
        106, host="web1", state="done", result="refused", counted=False, claimed_at=4000.0,
        ended_at=4000.0, outcome="Not run: cooldown", outcome_state="pending")
    assert rem.remediation(107) == _rec(107, host="web4", state="queued", claimed_at=5000.0)
    assert rem.remediation(108) == _rec(
        108, host="web5", state="verifying", result="succeeded", attempts=1, exec_id=80,
        claimed_at=6000.0, ran_at=6001.0, ended_at=6005.0, outcome="Ran; waiting for recovery",
        outcome_state="failed")
    assert rem.remediation(999) is None
    assert [r.eventid for r in rem.remediations()] == [101, 102, 105, 106, 107, 108]
    assert [r.eventid for r in rem.remediations(["retry", "verifying"])] == [105, 108]
    assert [r.eventid for r in rem.remediations(outcome_state="pending")] == [106]
    assert [r.eventid for r in rem.remediations(["done"], outcome_state="written")] == [102]
    assert rem.remediations_in_flight() == 2  # 101 running, 107 queued
    assert rem.remediation_claims("job-1", 0) == [1000.0, 5000.0, 6000.0]  # 106 was not counted
    assert rem.remediation_claims("job-2", 0, "web3") == [3000.0]

    assert rem.breaker("job-2") == (3, 2500.0)
    assert rem.breaker("job-1") == (0, None)
    assert rem.breaker("job-unknown") == (0, None)

    assert rem.audit_trail() == [
        AuditEntry(4000.0, 106, "web1", "restart-nginx", "job-1", "refused", "cooldown"),
        AuditEntry(2000.0, 101, "web2", "clean-tmp", "job-2", "started", "exec 78"),
        AuditEntry(1010.0, 102, "web1", "restart-nginx", "job-1", "recovered", "problem closed"),
        AuditEntry(1000.0, 102, "web1", "restart-nginx", "job-1", "ran", "exec 77"),
    ]
    assert [e.action for e in rem.audit_trail(eventid=102)] == ["recovered", "ran"]
    assert rem.audit_counts() == {"ran": 1, "recovered": 1, "started": 1, "refused": 1}


def test_new_writes_work_and_survive_a_restart(v3_state: Path | str) -> None:
    st = open_state(v3_state)
    ledger, answers, rem = st.ledger, st.answers, st.remediations
    ledger.advance_cursor(104)
    ledger.set_meta(floor=100, backlog_until=0)
    ledger.record([(101, "done", None, None, None, ""), (109, "pending", "linux", "oom", "oom", "writing")])
    assert ledger.record_failure(110, "refused", give_up_after=3) is False
    answers.cache_answer("fp-new", "llama3", '{"cause": "new"}', ttl=3600)
    answers.cache_answer("fp-disk", "llama3", '{"cause": "replaced"}', ttl=3600)
    assert rem.add_remediation(_rec(109, host="web9", state="queued", claimed_at=7000.0))
    assert not rem.add_remediation(_rec(102, host="elsewhere", state="queued"))  # at most once
    running = rem.remediation(101)
    assert running is not None
    rem.save_remediation(replace(running, state="verifying", result="succeeded", ended_at=2100.0))
    rem.set_breaker("job-2", 0, None)
    rem.audit(AuditEntry(7000.0, 109, "web9", "restart-nginx", "job-1", "ran", "exec 81"))
    # A cutoff a day ahead makes every final row old enough: 101 (now done), 102, 103 and 104
    # go; pending 109 and 110 stay, and so would anything from 105 up (the overlap window).
    assert ledger.prune(-1, keep_above=105) == 4
    st.close()

    st = open_state(v3_state)
    ledger, answers, rem = st.ledger, st.answers, st.remediations
    assert ledger.cursor == 104 and ledger.meta("floor") == "100" and ledger.meta("backlog_until") == "0"
    assert ledger.meta("backlog_since") == "80"
    assert sorted(ledger.states(range(100, 112))) == [109, 110]
    assert ledger.states([109])[109].state == "pending"
    assert ledger.states([110])[110].attempts == 1
    assert answers.cached_answers(["fp-new", "fp-disk"]) == {
        "fp-new": ("llama3", '{"cause": "new"}'), "fp-disk": ("llama3", '{"cause": "replaced"}')}
    # The expired answer went with the ledger prune, as it did with the single store.
    assert st.database.execute("SELECT fingerprint FROM answers WHERE fingerprint = 'fp-old'") == []
    assert rem.remediation(109) == _rec(109, host="web9", state="queued", claimed_at=7000.0)
    assert rem.remediation(102) is not None and rem.remediation(102).host == "web1"  # type: ignore[union-attr]
    assert rem.remediation(101).state == "verifying"  # type: ignore[union-attr]
    assert rem.remediations_in_flight() == 2  # 107 queued, 109 queued
    assert rem.breaker("job-2") == (0, None)
    assert rem.audit_trail(1)[0].detail == "exec 81"
    assert rem.prune_remediation(0) == 2  # the finished rows 102 and 106
    assert rem.audit_trail() == []
    st.close()


def test_check_constraints_still_hold(v3_state: Path | str) -> None:
    st = open_state(v3_state)
    try:
        with pytest.raises(StateError, match="(?i)check constraint"):
            st.ledger.record([(200, "bogus", None, None, None, "")])  # type: ignore[list-item]
        queued = st.remediations.remediation(107)
        assert queued is not None
        with pytest.raises(StateError, match="(?i)check constraint"):
            st.remediations.save_remediation(replace(queued, state="exploded"))  # type: ignore[arg-type]
        # A claim that breaks a CHECK is an error, not a lost race: only the key conflict is ignored.
        with pytest.raises(StateError, match="(?i)check constraint"):
            st.remediations.add_remediation(_rec(201, host="h", state="exploded"))
        assert st.ledger.states([200]) == {} and st.remediations.remediation(201) is None
        assert st.remediations.remediation(107) == queued
    finally:
        st.close()


def test_a_v1_state_file_is_migrated_without_losing_anything(tmp_path: Path) -> None:
    """Schema 1 (cursor and ledger only, before the answer cache and self-healing)."""
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE events (
            eventid INTEGER PRIMARY KEY,
            state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0, domain TEXT, category TEXT, pattern_id TEXT,
            detail TEXT NOT NULL DEFAULT '', updated_at REAL NOT NULL);
        CREATE INDEX events_updated ON events (updated_at);
        INSERT INTO meta VALUES ('schema_version', '1'), ('cursor', '7');
        INSERT INTO events VALUES (6, 'skipped', 0, NULL, NULL, NULL, 'not mine', 1.0);
    """)
    db.commit()
    db.close()
    st = open_state(path)
    assert st.ledger.meta("schema_version") == str(SCHEMA_VERSION) and st.ledger.cursor == 7
    assert st.ledger.states([6])[6].detail == "not mine"
    st.answers.cache_answer("fp", "m", "{}", ttl=60)
    assert st.answers.cached_answers(["fp"]) == {"fp": ("m", "{}")}
    assert st.remediations.add_remediation(_rec(6, host="h", state="queued"))
    st.close()


@pytest.mark.parametrize("full", [True, False], ids=["v3-tables", "meta-only"])
def test_a_newer_schema_is_refused_and_left_untouched(v3: Path, full: bool) -> None:
    """An instance never runs against tables a newer Hefestus may have changed."""
    if not full:
        v3.unlink()
    db = sqlite3.connect(v3)
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    before = _schema(v3)
    with pytest.raises(StateError, match=rf"newer Hefestus \(schema {SCHEMA_VERSION + 1}\)") as err:
        open_state(v3)
    assert str(v3) in str(err.value)
    assert _schema(v3) == before  # not even the missing tables were created
    db = sqlite3.connect(v3)
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(SCHEMA_VERSION + 1),)
    finally:
        db.close()


def test_a_v3_file_gains_the_unclassified_table_and_keeps_everything(v3: Path) -> None:
    """Schema 4 adds the teach loop's table; the v3 file is upgraded in place at open."""
    db = sqlite3.connect(v3)
    try:
        assert "unclassified" not in {n for (n,) in db.execute("SELECT name FROM sqlite_master")}
    finally:
        db.close()
    st = open_state(v3)
    try:
        _assert_fixture_contents(st)
        assert st.unclassified.kinds() == []
        st.unclassified.record([Sighting("fp-1", "linux", ("web1",), "mystery error", 1000.0)])
    finally:
        st.close()
    st = open_state(v3)
    try:
        assert [(k.fingerprint, k.count, k.hosts) for k in st.unclassified.kinds()] == [("fp-1", 1, ("web1",))]
        assert st.ledger.meta("schema_version") == "5"
    finally:
        st.close()
