"""The leader lease and its fence, on both state backends (SQLite and a real PostgreSQL 15).

Time passing is the database's own clock; a test that needs a lease to run out moves
the lease's deadline into the past (what waiting ``lease_ttl`` seconds would do) instead
of sleeping. The process's local deadline runs on an injected clock.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hefestus.app.leader import Leadership
from hefestus.cli import main
from hefestus.errors import StateError
from hefestus.state import State, open_state
from hefestus.state.lease import Lease, LeaseLost
from tests.support.helpers import FakeClock, eventually
from tests.support.zabbix_config import write_config

TTL = 10.0


@pytest.fixture
def states(state_at: Path | str) -> Iterator[list[State]]:
    """Two instances' views of one state store."""
    opened = [open_state(state_at), open_state(state_at)]
    yield opened
    for s in opened:
        s.close()


def expire(state: State) -> None:
    """What lease_ttl seconds without a renewal do to the lease row."""
    with state.database.transaction() as conn:
        conn.execute("UPDATE lease SET expires_at = expires_at - 1000, renewed_at = renewed_at - 1000")


def leadership(state: State, name: str, clock: FakeClock) -> Leadership:
    lead = Leadership(Lease(state.database, name, TTL), heartbeat=2, clock=clock)
    state.database.fence = lead.fence
    return lead


def test_one_holder_at_a_time_and_a_takeover_bumps_the_epoch(states: list[State]) -> None:
    a, b = (Lease(s.database, n, TTL) for s, n in zip(states, ("node-a", "node-b"), strict=True))
    first = a.claim(None)
    assert first is not None and (first.holder, first.epoch) == ("node-a", 1) and first.live
    assert b.claim(None) is None, "a live lease is not taken"
    renewed = a.claim(1)
    assert renewed is not None and renewed.epoch == 1 and renewed.acquired_at == first.acquired_at
    expire(states[0])
    late = a.claim(1)  # expired, but nobody took over: the holder's late renewal keeps its epoch
    assert late is not None and late.epoch == 1 and late.live
    assert b.claim(None) is None


def test_a_restarted_instance_with_the_same_name_waits_for_its_old_lease(states: list[State]) -> None:
    """`[state] instance` survives a restart: the name alone must not hand the new process the
    lease its killed predecessor still holds (the predecessor's threads may not all be gone)."""
    old = Lease(states[0].database, "node-a", TTL)
    assert old.claim(None) is not None
    restarted = Lease(states[1].database, "node-a", TTL)
    assert restarted.claim(None) is None
    expire(states[0])
    row = restarted.claim(None)
    assert row is not None and row.epoch == 2, "a new process is a new epoch, even under the same name"
    assert old.claim(1) is None


def test_a_takeover_after_expiry_fences_the_old_leader(states: list[State]) -> None:
    a, b = (Lease(s.database, n, TTL) for s, n in zip(states, ("node-a", "node-b"), strict=True))
    assert a.claim(None) is not None
    expire(states[0])
    taken = b.claim(None)
    assert taken is not None and (taken.holder, taken.epoch) == ("node-b", 2)
    assert a.claim(1) is None, "the old leader's renewal must fail once another holds the lease"
    with states[0].database.transaction() as conn, pytest.raises(LeaseLost, match="held by node-b"):
        a.fence(conn, 1)
    with states[1].database.transaction() as conn:
        b.fence(conn, 2)  # the holder passes
    status = a.status()
    assert status is not None and status.holder == "node-b" and status.age < 5


def test_a_fenced_write_by_a_deposed_leader_writes_nothing(states: list[State]) -> None:
    clock_a, clock_b = FakeClock(), FakeClock()
    lead_a, lead_b = leadership(states[0], "node-a", clock_a), leadership(states[1], "node-b", clock_b)
    assert lead_a.tick() == "promoted" and lead_a.is_leader
    assert lead_b.tick() is None and not lead_b.is_leader
    states[0].ledger.record([(101, "pending", "linux", "oom", "p1", "writing")])  # allowed: leader
    # node-a is paused past its lease; node-b takes over
    expire(states[0])
    assert lead_b.tick() == "promoted" and lead_b.epoch == 2
    with pytest.raises(LeaseLost):  # node-a wakes, still believing it leads: the fence refuses
        states[0].ledger.record([(102, "pending", "linux", "oom", "p1", "writing")])
    assert set(states[1].ledger.states([101, 102])) == {101}
    assert lead_a.tick() == "lost" and not lead_a.is_leader and lead_a.stats.losses == 1
    assert lead_a.tick() is None, "lost is final for the process"
    states[1].ledger.record([(102, "pending", "linux", "oom", "p1", "writing")])  # the new leader may
    assert set(states[1].ledger.states([101, 102])) == {101, 102}


def test_the_local_deadline_stops_a_leader_that_could_not_renew(states: list[State]) -> None:
    """A leader whose own clock says its lease ran out acts no more, whatever the database says."""
    clock = FakeClock()
    lead = leadership(states[0], "node-a", clock)
    assert lead.tick() == "promoted"
    clock.advance(TTL + 0.1)
    assert not lead.is_leader
    with pytest.raises(LeaseLost, match="not the leader"):
        states[0].ledger.advance_cursor(5)
    assert lead.tick() is None and lead.is_leader, "nobody took over: a late renewal keeps the epoch"
    assert lead.epoch == 1 and lead.stats.renewals == 1
    states[0].ledger.advance_cursor(5)
    assert states[0].ledger.cursor == 5


def test_release_hands_over_at_the_next_heartbeat(states: list[State]) -> None:
    lead_a = leadership(states[0], "node-a", FakeClock())
    lead_b = leadership(states[1], "node-b", FakeClock())
    assert lead_a.tick() == "promoted"
    assert lead_b.tick() is None
    assert "standby (node-b); leader node-a, epoch 1" in lead_b.describe()
    lead_a.release()
    assert lead_b.tick() == "promoted" and lead_b.epoch == 2
    assert lead_b.describe().startswith("leader (node-b); leader this instance, epoch 2")


def test_unfenced_writes_stay_open_to_a_standby(states: list[State]) -> None:
    """The API on a standby may still cache answers and count unclassified kinds."""
    lead_a = leadership(states[0], "node-a", FakeClock())
    lead_b = leadership(states[1], "node-b", FakeClock())
    assert lead_a.tick() == "promoted" and lead_b.tick() is None
    states[1].answers.cache_answer("fp", "m", '{"cause": "x"}', ttl=60)
    assert "fp" in states[0].answers.cached_answers(["fp"])


def test_state_and_check_name_the_leader(pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, state={"url": pg_url, "instance": "node-b"})
    state = open_state(pg_url)
    try:
        assert leadership(state, "node-a", FakeClock()).tick() == "promoted"
    finally:
        state.close()
    assert main(["--config", str(config), "state"]) == 0
    out = capsys.readouterr().out
    lines = out[out.index("backend:"):].splitlines()  # after the log line of the tick above
    assert lines[0] == f"backend: postgresql {pg_url}"
    assert lines[1].startswith("leader: leader node-a, epoch 1, lease renewed ") and "(live, +" in lines[1]


def test_a_leader_frozen_inside_a_fenced_transaction_does_not_lock_the_standbys_out(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGSTOP in the middle of a fenced write: its share lock on the lease would keep every
    standby out for as long as its connection lives. Once the lease has run out, the standby
    ends that session, takes over, and the frozen leader's transaction is gone."""
    import time

    import hefestus.state.lease as lease_module

    monkeypatch.setattr(lease_module, "STALE_TRANSACTION", 0.0)  # instead of waiting 2 s
    a, b = open_state(pg_url), open_state(pg_url)
    try:
        short = Lease(a.database, "node-a", 1.0)  # a one-second lease, to run out quickly
        assert short.claim(None) is not None
        a.database.fence = lambda conn: short.fence(conn, 1)
        frozen = a.database.transaction(fenced=True)
        conn = frozen.__enter__()  # the fence took its share lock; then the process froze
        conn.execute("INSERT INTO events (eventid, state, updated_at) VALUES (7, 'pending', 0)")
        time.sleep(1.2)  # the frozen leader's lease runs out (the database's clock)
        lead_b = leadership(b, "node-b", FakeClock())
        assert lead_b.tick() == "promoted" and lead_b.epoch == 2
        with pytest.raises(StateError, match="terminating connection due to administrator command"):
            frozen.__exit__(None, None, None)
        assert b.ledger.states([7]) == {}, "the frozen leader's intent never committed"
    finally:
        a.close()
        b.close()


def test_the_guard_stops_acting_a_margin_before_the_lease_runs_out(states: list[State]) -> None:
    """Leadership.guard runs right before a Zabbix write or a Rundeck run: by the process's own
    clock, with a margin, so a call sent now reaches Zabbix before a successor could look."""
    clock = FakeClock()
    lead = leadership(states[0], "node-a", clock)
    with pytest.raises(LeaseLost):
        lead.guard()  # a standby never acts
    assert lead.tick() == "promoted"
    lead.guard()
    clock.advance(TTL - 1.5)
    lead.guard()
    clock.advance(0.6)  # inside the last second of the lease: no new call leaves
    assert lead.is_leader
    with pytest.raises(LeaseLost, match="nothing was sent"):
        lead.guard()
    assert lead.tick() is None  # renewed: acting again
    lead.guard()


def test_a_successor_waits_while_an_earlier_leader_is_still_connected(states: list[State]) -> None:
    """Presence: the deposed leader's own session tells the successor it may still send a write
    it had checked before it stopped; once it is gone (here: it noticed and stood down), not."""
    postgres = states[0].database.dialect == "postgresql"
    lead_a = leadership(states[0], "node-a", FakeClock())
    lead_b = leadership(states[1], "node-b", FakeClock())
    assert lead_a.tick() == "promoted"
    lead_a.guard()  # present and leading: it may act
    assert lead_b.tick() is None
    expire(states[0])
    assert lead_b.tick() == "promoted"
    assert lead_b.predecessor_alive() is postgres  # SQLite is one instance: nobody to wait for
    assert lead_a.tick() == "lost"  # node-a learns it and stands down: its presence goes
    eventually(lambda: not lead_b.predecessor_alive(), 10, "the old leader's presence gone", 0.1)
    with pytest.raises(LeaseLost):
        lead_a.guard()


_PRESENT = """
import sys, time
from hefestus.state import open_state
from hefestus.state.lease import Lease
state = open_state(sys.argv[1])
presence = Lease(state.database, "frozen", 10).announce(int(sys.argv[2]))
print("present", flush=True)
time.sleep(600)
"""


def test_presence_outlives_a_stopped_process_and_not_a_dead_one(pg_url: str) -> None:
    """What the successor relies on: a SIGSTOPped leader keeps its session (it may wake and send),
    a killed one loses it at once (the kernel closes its socket)."""
    state = open_state(pg_url)
    try:
        lease = Lease(state.database, "successor", 10)
        proc = subprocess.Popen([sys.executable, "-c", _PRESENT, pg_url, "3"], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "present"
            assert lease.predecessors(4) == [3] and lease.predecessors(3) == []
            proc.send_signal(signal.SIGSTOP)
            time.sleep(1.0)
            assert lease.predecessors(4) == [3], "a stopped process may still send: it stays present"
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            eventually(lambda: lease.predecessors(4) == [], 10, "a killed leader's presence gone", 0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    finally:
        state.close()
