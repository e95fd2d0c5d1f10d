"""The PostgreSQL state backend against a real PostgreSQL 15: migrations, refusals, the pool
across a server restart, errors without the password, and the fence.

The repositories' behaviour on both backends is pinned by the tests parametrized with
``state_at`` (test_store, test_remediation_store, test_state_compat, test_unclassified);
these are what only PostgreSQL has.
"""

from __future__ import annotations

import threading
import traceback
from pathlib import Path

import psycopg
import pytest

from hefestus.config import load_settings
from hefestus.config.sections import StateSettings
from hefestus.errors import ConfigError, StateError, StateUnavailable
from hefestus.state import (
    SCHEMA_VERSION,
    AuditEntry,
    Connection,
    Ledger,
    Sighting,
    State,
    open_state,
)
from hefestus.state.postgres import PostgresDatabase, describe_url, translate
from hefestus.state.remediations import RemediationRecord
from hefestus.state.schema import TABLES
from tests.support.postgres import PASSWORD_ROLE, PostgresCluster
from tests.support.zabbix_config import write_config

SECRET = "pw-Zq8!tr0ub4dor"


def _sql(url: str, statement: str) -> list[tuple[object, ...]]:
    """One statement through a plain connection of its own, beside Hefestus's pool."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement)
        return [tuple(r) for r in cur.fetchall()] if cur.description else []


def _tables(url: str) -> list[str]:
    return [str(t) for (t,) in _sql(url, "SELECT table_name FROM information_schema.tables "
                                         "WHERE table_schema = 'public' ORDER BY 1")]


def test_translate_keeps_one_sql_text_for_both_dialects() -> None:
    """``?`` becomes ``%s``; a ``%`` or ``?`` inside a literal is text, and stays text."""
    assert translate("SELECT a FROM t WHERE b = ? AND c IN (?,?)") == (
        "SELECT a FROM t WHERE b = %s AND c IN (%s,%s)")
    assert translate("SELECT '100%', 'why?', 'it''s ?' || ? FROM t WHERE x LIKE 'a%'") == (
        "SELECT '100%%', 'why?', 'it''s ?' || %s FROM t WHERE x LIKE 'a%%'")


def test_literals_with_placeholder_characters_run(pg_url: str) -> None:
    st = open_state(pg_url)
    try:
        assert st.database.execute("SELECT '100%' || ?, 'why?', ?", ("x", 2)) == [("100%x", "why?", 2)]
        assert st.database.execute("SELECT '5%', 'a?'") == [("5%", "a?")]  # no arguments at all
        assert st.database.execute("UPDATE meta SET value = value WHERE key = 'nothing'") == []
    finally:
        st.close()


def test_migrations_create_every_table_once_and_are_idempotent(pg_url: str) -> None:
    for _ in range(2):
        open_state(pg_url).close()
    assert _tables(pg_url) == sorted(TABLES)
    assert _sql(pg_url, "SELECT key, value FROM meta") == [("schema_version", str(SCHEMA_VERSION))]
    columns = {str(k): str(v) for k, v in _sql(pg_url, "SELECT column_name, data_type FROM information_schema.columns "
                                "WHERE table_name = 'lease'")}
    assert columns == {"name": "text", "holder": "text", "epoch": "bigint",
                       "acquired_at": "double precision", "renewed_at": "double precision",
                       "expires_at": "double precision"}


def test_instances_starting_at_once_migrate_once(pg_url: str) -> None:
    """The advisory lock serialises the migrating transactions: none fails on a half-made schema."""
    start = threading.Barrier(4)
    opened: list[State] = []
    errors: list[BaseException] = []

    def one() -> None:
        start.wait()
        try:
            opened.append(open_state(pg_url))
        except BaseException as exc:  # reported below, with the others
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    try:
        assert errors == [] and len(opened) == 4
        opened[0].ledger.advance_cursor(5)
        assert [s.ledger.cursor for s in opened] == [5, 5, 5, 5]  # one database, shared
    finally:
        for s in opened:
            s.close()
    assert _tables(pg_url) == sorted(TABLES)


def test_a_newer_schema_is_refused_and_left_untouched(pg_url: str) -> None:
    open_state(pg_url).close()
    _sql(pg_url, f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    with pytest.raises(StateError, match=rf"newer Hefestus \(schema {SCHEMA_VERSION + 1}\)") as err:
        open_state(pg_url)
    assert not isinstance(err.value, StateUnavailable)
    assert _sql(pg_url, "SELECT value FROM meta WHERE key = 'schema_version'") == [(str(SCHEMA_VERSION + 1),)]


@pytest.mark.parametrize("tables", [
    "CREATE TABLE orders (id int)",
    "CREATE TABLE meta (name text, data bytea)",  # a meta table of another program
    "CREATE TABLE meta (key text PRIMARY KEY, value text NOT NULL); INSERT INTO meta VALUES ('a', 'b')",
])
def test_someone_elses_database_is_refused_and_left_untouched(pg_url: str, tables: str) -> None:
    _sql(pg_url, tables)
    before = _tables(pg_url)
    with pytest.raises(StateError, match="not a Hefestus state database .* left untouched"):
        open_state(pg_url)
    assert _tables(pg_url) == before


def test_a_meta_value_that_is_not_a_number_is_refused(pg_url: str) -> None:
    open_state(pg_url).close()
    _sql(pg_url, "INSERT INTO meta VALUES ('cursor', 'abc')")
    with pytest.raises(StateError, match="meta 'cursor' is 'abc', not a whole number"):
        open_state(pg_url)


def test_a_server_restart_costs_one_transaction_at_most(pg_cluster: PostgresCluster, pg_url: str) -> None:
    """A restart between transactions is invisible (the pool checks connections before lending
    them); the transaction the server dies under raises StateUnavailable, is rolled back, and
    the next one works once the server is back."""
    db = PostgresDatabase(pg_url, wait=3.0)
    ledger = Ledger(db)
    try:
        ledger.advance_cursor(1)
        old = pg_cluster.pid
        pg_cluster.restart()
        assert pg_cluster.pid != old
        ledger.advance_cursor(2)  # transparently on a new connection
        assert ledger.cursor == 2
        try:
            with pytest.raises(StateUnavailable, match="unreachable, restarting or busy"):
                with db.transaction() as conn:
                    conn.execute("UPDATE meta SET value = '3' WHERE key = 'cursor'")
                    pg_cluster.stop()
                    conn.execute("UPDATE meta SET value = '4' WHERE key = 'cursor'")
            with pytest.raises(StateUnavailable):  # down: no connection within `wait`
                ledger.advance_cursor(5)
        finally:
            pg_cluster.start()
        assert ledger.cursor == 2  # neither write was committed
        ledger.advance_cursor(6)
        assert ledger.cursor == 6
    finally:
        db.close()


def test_the_password_never_shows(pg_cluster: PostgresCluster) -> None:
    """Not in describe(), not in an error's message, not in its traceback."""
    pg_cluster.admin(f"DROP ROLE IF EXISTS {PASSWORD_ROLE}")  # a rerun in one session
    pg_cluster.admin(f"CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{SECRET}'")
    pg_cluster.admin(f"CREATE DATABASE pw_owned OWNER {PASSWORD_ROLE}")
    good = pg_cluster.url("pw_owned", user=PASSWORD_ROLE, password=SECRET)
    st = open_state(good)  # the owner may create its tables (PostgreSQL 15: not in public otherwise)
    try:
        st.ledger.advance_cursor(1)
        assert st.database.describe() == f"postgresql://{PASSWORD_ROLE}@127.0.0.1:{pg_cluster.port}/pw_owned"
    finally:
        st.close()
    refused_port = f"postgresql://{PASSWORD_ROLE}:{SECRET}@127.0.0.1:1/pw_owned"
    for url, kind in [(pg_cluster.url("pw_owned", user=PASSWORD_ROLE, password=SECRET + "x"), StateError),
                      (refused_port, StateUnavailable),
                      (pg_cluster.url("no_such_db", user=PASSWORD_ROLE, password=SECRET), StateError)]:
        with pytest.raises(StateError) as err:
            open_state(url)
        assert type(err.value) is kind, err.value
        text = "".join(traceback.format_exception(err.value))
        assert SECRET not in text and PASSWORD_ROLE in str(err.value)
    assert describe_url(f"postgres://u:{SECRET}@h:5/d?sslmode=require&password={SECRET}") == (
        "postgresql://u@h:5/d?sslmode=require")


def _rec(eventid: int) -> RemediationRecord:
    return RemediationRecord(eventid=eventid, rule="r", origin="o", job_id="j", job_name="J",
                             project="p", host="h", options=(), node_filter=None, timeout=1.0,
                             recovery_window=1.0, state="queued", claimed_at=1.0)


class LeaseLost(Exception):
    pass


def test_the_fence_runs_first_in_every_intent_and_can_abort_it(state_at: Path | str) -> None:
    """Each transaction that records an intent to write to Zabbix or run a job calls the fence
    first, on a connection of the repositories' convention; a fence that raises leaves nothing
    written. The others (answers, breakers, audit, unclassified) are not fenced."""
    st = open_state(state_at)
    db = st.database
    calls: list[str] = []
    lost = False

    def fence(conn: Connection) -> None:
        (value,) = conn.execute("SELECT ? || 'x'", ("fence",)).fetchone()
        if db.dialect == "postgresql":  # first: nothing was written yet in this transaction
            assert conn.execute("SELECT pg_current_xact_id_if_assigned()").fetchone() == (None,)
        calls.append(value)
        if lost:
            raise LeaseLost("epoch 7 is not ours any more")

    db.fence = fence
    try:
        st.ledger.record([(1, "pending", "linux", "x", "y", "")])
        st.ledger.advance_cursor(1)
        st.ledger.set_meta(floor=1)
        assert st.remediations.add_remediation(_rec(1))
        st.remediations.update(1, state="starting")
        assert calls == ["fencex"] * 5  # update() writes through save_remediation
        st.ledger.record_failure(2, "refused", give_up_after=3)
        st.answers.cache_answer("fp", "m", "{}", ttl=60)
        st.remediations.set_breaker("j", 1, None)
        st.remediations.audit(AuditEntry(1.0, 1, "h", "r", "j", "ran", ""))
        st.unclassified.record([Sighting("fp", "linux", ("h",), "x", 1.0)])
        st.ledger.prune(1, keep_above=None)
        assert len(calls) == 5

        lost = True
        with pytest.raises(LeaseLost):
            st.ledger.record([(3, "pending", None, None, None, "")])
        with pytest.raises(LeaseLost):
            st.ledger.advance_cursor(9)
        with pytest.raises(LeaseLost):
            st.remediations.add_remediation(_rec(3))
        with pytest.raises(LeaseLost):
            st.remediations.update(1, state="running")
        assert st.ledger.states([3]) == {} and st.ledger.cursor == 1
        assert st.remediations.remediation(3) is None
        assert st.remediations.remediation(1).state == "starting"  # type: ignore[union-attr]
        db.fence = None
        st.ledger.advance_cursor(9)
        assert st.ledger.cursor == 9
    finally:
        st.close()


def test_settings_pick_the_backend(tmp_path: Path, pg_url: str) -> None:
    path = write_config(tmp_path)
    settings = load_settings(path, {"HEFESTUS_STATE_URL": pg_url})
    assert settings.state.url is not None and pg_url not in repr(settings.state)
    st = open_state(settings.state)
    try:
        assert st.database.dialect == "postgresql" and st.database.describe() == pg_url
    finally:
        st.close()
    st = open_state(StateSettings(path=tmp_path / "s.db"))
    try:
        assert st.database.dialect == "sqlite" and st.database.describe() == str(tmp_path / "s.db")
    finally:
        st.close()
    with pytest.raises(ConfigError, match=r"hefestus.toml.*state.url: must be a PostgreSQL URL"):
        load_settings(write_config(tmp_path, state={"url": f"mysql://u:{SECRET}@h/d"}), {})
    with pytest.raises(ConfigError, match="HEFESTUS_STATE_URL"):
        load_settings(path, {"HEFESTUS_STATE_URL": "sqlite:///x.db"})
    with pytest.raises(ConfigError, match="lease_heartbeat .* less than half of lease_ttl"):
        load_settings(write_config(tmp_path, state={"lease_ttl": 4, "lease_heartbeat": 2}), {})
    s = load_settings(write_config(tmp_path, state={"url": "postgres://h/d", "instance": "node-1",
                                                    "lease_ttl": 20, "lease_heartbeat": 5}), {}).state
    assert (s.instance, s.lease_ttl, s.lease_heartbeat) == ("node-1", 20.0, 5.0)
