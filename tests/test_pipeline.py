"""Exactly-once handling, driven through the real pipeline with an in-memory Zabbix."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from hefestus.classify.knowledge import Knowledge
from hefestus.config import AcknowledgeSettings, IntakeSettings
from hefestus.errors import ZabbixUnavailable
from hefestus.pipeline.cycle import Pipeline
from hefestus.pipeline.render import MARKER
from hefestus.state import open_state
from hefestus.testing import FakeZabbix, problem

DISK = "kernel: write error: No space left on device"
UNIT = "systemd[1]: nginx.service: Failed with result 'exit-code'."


def make(zbx: FakeZabbix, state: Path, knowledge: Knowledge, **intake: object) -> Pipeline:
    return Pipeline(zbx, open_state(state).ledger, lambda: knowledge, intake=IntakeSettings(**intake),  # type: ignore[arg-type]
                    ack=AcknowledgeSettings())


@pytest.fixture
def zbx() -> FakeZabbix:
    z = FakeZabbix()
    z.latest = 100  # events before the first start exist but are not ours (first_start = "now")
    z.add(problem(90, "old", text=DISK))
    return z


def test_first_start_now_skips_history_then_handles_each_new_event_once(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    pipe = make(zbx, tmp_path / "s.db", test_knowledge)
    assert pipe.run_once().fetched == 0
    zbx.add(problem(101, "disk", text=DISK), problem(102, "unit", text=UNIT))
    r = pipe.run_once()
    assert (r.acknowledged, r.api_writes) == (2, 2)
    assert 90 not in zbx.acks
    assert zbx.acks[101][0].startswith(f"{MARKER} linux / disk-full")
    assert "1. systemctl status nginx.service" in zbx.acks[102][0]
    # again, and after a restart (new pipeline, same state file): nothing new
    assert pipe.run_once().acknowledged == 0
    assert make(zbx, tmp_path / "s.db", test_knowledge).run_once().acknowledged == 0
    assert {e: len(m) for e, m in zbx.acks.items()} == {101: 1, 102: 1}


def test_backlog_first_start_takes_unacknowledged_recent_problems(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    now = int(time.time())
    zbx.add(problem(95, "recent", text=DISK, clock=now - 600),
            problem(96, "seen by a person", text=DISK, clock=now - 500, acknowledged=True),
            problem(97, "too old", text=DISK, clock=now - 3 * 86400))
    zbx.visible[90] = problem(90, "old", text=DISK, clock=now - 2 * 86400)
    r = make(zbx, tmp_path / "s.db", test_knowledge, first_start="backlog", backlog_hours=24).run_once()
    assert set(zbx.acks) == {95}
    assert r.skipped == 2  # 96 acknowledged by a person before we started; 97 out of the window


def test_identical_messages_are_batched_into_one_call(zbx: FakeZabbix, tmp_path: Path,
                                                      test_knowledge: Knowledge) -> None:
    pipe = make(zbx, tmp_path / "s.db", test_knowledge)
    pipe.run_once()
    zbx.add(*(problem(101 + i, "disk", text=DISK) for i in range(50)), problem(200, "unit", text=UNIT))
    r = pipe.run_once()
    assert r.acknowledged == 51 and r.api_writes == 2
    writes = [args for name, args in zbx.calls if name == "acknowledge"]
    assert sorted(len(ids) for ids, _ in writes) == [1, 50]


def test_event_visible_late_behind_the_cursor_is_still_handled(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    pipe = make(zbx, tmp_path / "s.db", test_knowledge)
    pipe.run_once()
    zbx.add(problem(101, "a", text=DISK), problem(103, "c", text=DISK))
    pipe.run_once()
    assert pipe._ledger.cursor == 103
    zbx.add(problem(102, "b committed late", text=UNIT))  # a slower history syncer
    r = pipe.run_once()
    assert r.acknowledged == 1 and len(zbx.acks[102]) == 1
    assert all(len(m) == 1 for m in zbx.acks.values())


def test_outage_loses_nothing_and_cursor_waits(zbx: FakeZabbix, tmp_path: Path,
                                               test_knowledge: Knowledge) -> None:
    """Zabbix goes away while 102's message is written (101's may be in flight at the same
    time): the cycle stops, 101 is done, the cursor stays before the unfinished page, and the
    next cycle writes the rest exactly once."""
    pipe = make(zbx, tmp_path / "s.db", test_knowledge, page_size=2)
    pipe.run_once()
    # distinct words (not numbers: those are masked), so each event has its own message
    words = ("alpha", "bravo", "charlie", "delta", "echo")
    zbx.add(*(problem(101 + i, f"e{i}", text=f"{DISK} {w}") for i, w in enumerate(words)))
    real_ack = zbx.acknowledge
    outage = {"on": True}

    def flaky(ids, message, *, action):  # type: ignore[no-untyped-def]
        if outage["on"] and 102 in ids:
            raise ZabbixUnavailable("event.acknowledge: cannot connect (fake outage)")
        return real_ack(ids, message, action=action)

    zbx.acknowledge = flaky  # type: ignore[method-assign]
    with pytest.raises(ZabbixUnavailable):
        pipe.run_once()
    assert set(zbx.acks) == {101}
    assert pipe._ledger.cursor == 100  # not past the unfinished page
    assert pipe._ledger.states([101])[101].state == "done"
    outage["on"] = False
    pipe.run_once()
    assert sorted(zbx.acks) == [101, 102, 103, 104, 105]
    assert all(len(m) == 1 for m in zbx.acks.values())


def test_crash_between_zabbix_write_and_ledger_is_not_a_second_message(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    """A lost or stale state file: the marker already on the event is enough."""
    pipe = make(zbx, tmp_path / "s.db", test_knowledge)
    pipe.run_once()
    zbx.add(problem(101, "disk", text=DISK))
    pipe.run_once()
    (tmp_path / "s.db").unlink()
    fresh = make(zbx, tmp_path / "s.db", test_knowledge, first_start="backlog")
    r = fresh.run_once()
    assert r.already_marked == 1
    assert len(zbx.acks[101]) == 1


def test_refused_event_is_isolated_then_given_up(zbx: FakeZabbix, tmp_path: Path,
                                                 test_knowledge: Knowledge) -> None:
    pipe = make(zbx, tmp_path / "s.db", test_knowledge, max_attempts=2)
    pipe.run_once()
    zbx.add(*(problem(101 + i, "disk", text=DISK) for i in range(3)))
    zbx.refuse.add(102)
    r = pipe.run_once()
    assert sorted(zbx.acks) == [101, 103] and r.failed == 0
    assert pipe._ledger.cursor == 101  # 102 is not final yet
    r = pipe.run_once()
    assert r.failed == 1 and pipe._ledger.states([102])[102].state == "failed"
    assert pipe._ledger.cursor == 103
    assert all(len(m) == 1 for m in zbx.acks.values())


def test_resolved_and_unclassified_policies(zbx: FakeZabbix, tmp_path: Path,
                                            test_knowledge: Knowledge) -> None:
    pipe = make(zbx, tmp_path / "s.db", test_knowledge, include_resolved=False)
    pipe.run_once()
    zbx.add(problem(101, "gone", text=DISK, resolved=True), problem(102, "mystery", text="??"))
    r = pipe.run_once()
    assert r.skipped == 1 and set(zbx.acks) == {102}
    assert "/ unclassified — no pattern matched" in zbx.acks[102][0].splitlines()[0]


def test_dry_run_writes_nothing(zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    zbx.add(problem(101, "disk", text=DISK))
    r = make(zbx, tmp_path / "s.db", test_knowledge).run_once(dry_run=True)
    assert [p.problem.eventid for p in r.planned] == [90, 101]
    assert r.planned[1].message and r.planned[1].message.startswith(MARKER)
    assert zbx.acks == {} and open_state(tmp_path / "s.db").ledger.cursor is None


def test_rules_swapped_between_cycles_are_used(zbx: FakeZabbix, tmp_path: Path,
                                               test_knowledge: Knowledge) -> None:
    holder = {"k": test_knowledge}
    pipe = Pipeline(zbx, open_state(tmp_path / "s.db").ledger, lambda: holder["k"], intake=IntakeSettings(),
                    ack=AcknowledgeSettings(unclassified=False))
    pipe.run_once()
    zbx.add(problem(101, "mystery", text="??"))
    assert pipe.run_once().skipped == 1


def test_ledger_is_pruned_but_not_inside_the_overlap_window(zbx: FakeZabbix, tmp_path: Path,
                                                            test_knowledge: Knowledge) -> None:
    pipe = Pipeline(zbx, open_state(tmp_path / "s.db").ledger, lambda: test_knowledge,
                    intake=IntakeSettings(overlap_ids=3), ack=AcknowledgeSettings(), ledger_days=1)
    pipe.run_once()
    zbx.add(*(problem(101 + i, "disk", text=f"{DISK} {i}") for i in range(10)))
    pipe.run_once()
    pipe._ledger._db.execute("UPDATE events SET updated_at = 0")
    pipe._last_prune = 0.0
    pipe.run_once()
    assert sorted(pipe._ledger.states(range(101, 111))) == [108, 109, 110]
    assert pipe.run_once().acknowledged == 0  # pruned ids are below the window: never re-read
    assert all(len(m) == 1 for m in zbx.acks.values())


def test_an_idle_poll_is_one_zabbix_call(zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    """Once events were handled, the overlap window and what came after it are one ids-only
    listing: a poll that finds nothing new makes that one call and no other."""
    pipe = make(zbx, tmp_path / "s.db", test_knowledge)
    pipe.run_once()
    zbx.add(problem(101, "disk", text=DISK), problem(102, "unit", text=UNIT))
    assert pipe.run_once().acknowledged == 2
    zbx.calls.clear()
    assert pipe.run_once().fetched == 0
    assert [name for name, _ in zbx.calls] == ["event_ids"]
    zbx.add(problem(103, "disk", text=DISK))  # and a new event is seen by the next one
    assert pipe.run_once().acknowledged == 1 and len(zbx.acks[103]) == 1


def test_writes_of_different_messages_are_in_flight_together(zbx: FakeZabbix, tmp_path: Path,
                                                            test_knowledge: Knowledge) -> None:
    """Two messages of one cycle: each write waits until the other is in flight too (a barrier,
    10 s at most), so a cycle that wrote one at a time would fail here, not run slower."""
    import threading

    pipe = make(zbx, tmp_path / "s.db", test_knowledge)
    pipe.run_once()
    zbx.add(problem(101, "disk", text=DISK), problem(102, "unit", text=UNIT))
    both = threading.Barrier(2, timeout=10)
    real_ack = zbx.acknowledge

    def together(ids, message, *, action):  # type: ignore[no-untyped-def]
        both.wait()
        return real_ack(ids, message, action=action)

    zbx.acknowledge = together  # type: ignore[method-assign]
    r = pipe.run_once()
    assert (r.acknowledged, r.api_writes) == (2, 2)
    assert pipe._ledger.states([101, 102]) and {e: len(m) for e, m in zbx.acks.items()} == {101: 1, 102: 1}
    assert pipe._ledger.cursor == 102


def test_events_another_process_was_writing_wait_while_it_may_still_send(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    """A leader stopped between its checks and its call sends the write when it wakes; the new
    leader leaves that leader's pending events alone while it may still live, then the
    marker check finds its message (or writes, when the old process died without sending)."""
    state = tmp_path / "s.db"
    make(zbx, state, test_knowledge).run_once()  # the cursor starts at 100
    zbx.add(problem(101, "sent late", text=DISK), problem(102, "never sent", text=UNIT),
            problem(103, "new", text=DISK))
    open_state(state).ledger.record([(101, "pending", "linux", "disk-full", None, "writing"),
                                     (102, "pending", "linux", "service-failed", None, "writing")])
    alive = [True]
    pipe = Pipeline(zbx, open_state(state).ledger, lambda: test_knowledge, intake=IntakeSettings(),
                    ack=AcknowledgeSettings(), others_may_write=lambda: alive[0])
    r = pipe.run_once()
    assert set(zbx.acks) == {103}, "only the old leader's events wait; a new one is no one else's"
    assert r.deferred == 2 and pipe._ledger.cursor == 100
    zbx.acks[101] = [f"{MARKER} linux / disk-full (written by the woken leader)"]  # its late write lands
    assert pipe.run_once().acknowledged == 0  # still alive: still waiting
    alive[0] = False  # it exited
    r = pipe.run_once()
    assert (r.already_marked, r.acknowledged) == (1, 1)
    assert {e: len(m) for e, m in zbx.acks.items()} == {101: 1, 102: 1, 103: 1}
    assert pipe._ledger.cursor == 103


def test_own_pending_events_are_retried_even_while_another_process_lives(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    """Only the other process's pending rows wait: this process's own, left by a Zabbix outage,
    are retried at once (this process is not sending them any more)."""
    state = tmp_path / "s.db"
    pipe = Pipeline(zbx, open_state(state).ledger, lambda: test_knowledge, intake=IntakeSettings(),
                    ack=AcknowledgeSettings(), others_may_write=lambda: True)
    pipe.run_once()
    zbx.add(problem(101, "disk", text=DISK))
    real_ack = zbx.acknowledge

    def outage(ids, message, *, action):  # type: ignore[no-untyped-def]
        raise ZabbixUnavailable("event.acknowledge: cannot connect (fake outage)")

    zbx.acknowledge = outage  # type: ignore[method-assign]
    with pytest.raises(ZabbixUnavailable):
        pipe.run_once()
    assert pipe._ledger.states([101])[101].state == "pending"
    zbx.acknowledge = real_ack  # type: ignore[method-assign]
    assert pipe.run_once().acknowledged == 1 and len(zbx.acks[101]) == 1
