"""Cause and symptom events (Zabbix 6.4+): the analysis goes to causes; a symptom gets one
line naming its cause, or nothing, as ``[intake] symptoms`` says, and never a remediation."""

from __future__ import annotations

from pathlib import Path

import pytest

from hefestus.classify.knowledge import Knowledge
from hefestus.config import AcknowledgeSettings, IntakeSettings
from hefestus.pipeline.cycle import Pipeline, has_marker
from hefestus.pipeline.render import MARKER, pointer
from hefestus.remediation.decision import Decision
from hefestus.state import open_state
from hefestus.testing import FakeZabbix, problem
from hefestus.values import Classification, Problem

DISK = "kernel: write error: No space left on device"
UNIT = "systemd[1]: nginx.service: Failed with result 'exit-code'."


class Remediations:
    """Records which events the pipeline asked to plan a remediation for."""

    def __init__(self) -> None:
        self.planned: list[int] = []

    def plan(self, problem: Problem, classification: Classification, *, persist: bool = True) -> Decision | None:
        self.planned.append(problem.eventid)
        return None

    def execute(self, decision: Decision) -> None:
        raise AssertionError("nothing was decided")

    def release(self, eventid: int, why: str) -> bool:
        return False


def make(zbx: FakeZabbix, state: Path, knowledge: Knowledge, remediation: Remediations | None = None,
         **intake: object) -> Pipeline:
    return Pipeline(zbx, open_state(state).ledger, lambda: knowledge, intake=IntakeSettings(**intake),  # type: ignore[arg-type]
                    ack=AcknowledgeSettings(), remediation=remediation)


@pytest.fixture
def zbx() -> FakeZabbix:
    z = FakeZabbix()
    z.latest = 100  # first start "now": the cursor starts here
    return z


def started(zbx: FakeZabbix, tmp_path: Path, knowledge: Knowledge, **intake: object) -> tuple[Pipeline, Remediations]:
    remediation = Remediations()
    pipe = make(zbx, tmp_path / "s.db", knowledge, remediation, **intake)
    assert pipe.run_once().fetched == 0
    zbx.add(problem(101, "Disk full on web-1", text=DISK, host="web-1"),
            problem(102, "nginx down on web-1", text=UNIT, host="web-1"))
    zbx.rank(102, 101)
    return pipe, remediation


def test_point_the_cause_gets_the_analysis_and_the_symptom_one_line(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    pipe, remediation = started(zbx, tmp_path, test_knowledge)
    report = pipe.run_once()
    assert report.acknowledged == 2
    assert zbx.acks[101][0].startswith(f"{MARKER} linux / disk-full")
    assert zbx.acks[102] == [f"{MARKER} symptom of event 101 (web-1: Disk full on web-1): see its Hefestus message"]
    assert remediation.planned == [101]  # never for the symptom
    state = pipe._ledger.states([102])[102]
    assert (state.state, state.domain) == ("done", None)
    # The pointer is Hefestus's marker: exactly once, after a restart and with a lost ledger too.
    assert pipe.run_once().acknowledged == 0
    (tmp_path / "s.db").unlink()
    lost = make(zbx, tmp_path / "s.db", test_knowledge, first_start="backlog")
    assert lost.run_once().acknowledged == 0
    assert {e: len(m) for e, m in zbx.acks.items()} == {101: 1, 102: 1}


def test_skip_writes_nothing_and_says_why_in_the_ledger(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    pipe, remediation = started(zbx, tmp_path, test_knowledge, symptoms="skip")
    report = pipe.run_once()
    assert (report.acknowledged, report.skipped) == (1, 1)
    assert set(zbx.acks) == {101} and remediation.planned == [101]
    state = pipe._ledger.states([102])[102]
    assert state.state == "skipped" and "symptom of event 101" in state.detail
    pipe.run_once()
    assert 102 not in zbx.acks


def test_analyse_treats_a_symptom_like_a_cause_but_never_heals_it(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    pipe, remediation = started(zbx, tmp_path, test_knowledge, symptoms="analyse")
    assert pipe.run_once().acknowledged == 2
    assert zbx.acks[102][0].startswith(f"{MARKER} linux / service-failed")
    assert remediation.planned == [101]


def test_ranked_as_symptom_after_hefestus_wrote_is_left_alone(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    pipe = make(zbx, tmp_path / "s.db", test_knowledge, overlap_ids=10)
    pipe.run_once()
    zbx.add(problem(101, "Disk full", text=DISK), problem(102, "nginx down", text=UNIT))
    assert pipe.run_once().acknowledged == 2
    zbx.rank(102, 101)  # the operator ranks it only now
    assert pipe.run_once().acknowledged == 0
    (tmp_path / "s.db").unlink()  # even with the ledger lost: its marker is there
    assert make(zbx, tmp_path / "s.db", test_knowledge, first_start="backlog").run_once().acknowledged == 0
    assert len(zbx.acks[102]) == 1 and zbx.acks[102][0].startswith(f"{MARKER} linux / service-failed")


def test_a_cause_that_cannot_be_read_still_gets_a_pointer(
        zbx: FakeZabbix, tmp_path: Path, test_knowledge: Knowledge) -> None:
    pipe = make(zbx, tmp_path / "s.db", test_knowledge)
    pipe.run_once()
    zbx.add(problem(102, "nginx down", text=UNIT))
    zbx.rank(102, 55)  # a cause on a host Hefestus may not read
    pipe.run_once()
    assert zbx.acks[102] == [f"{MARKER} symptom of event 55: see its Hefestus message"]


def test_the_pointer_fits_and_is_a_marker() -> None:
    p = problem(102, "x", cause_eventid=101, cause_host="db-1", cause_name="Error " + "y" * 5000)
    text = pointer(p, limit=200)
    assert len(text) <= 200 and text.endswith(": see its Hefestus message") and text.startswith(MARKER)
    assert "\n" not in pointer(problem(2, "x", cause_eventid=1, cause_host="h", cause_name="a\nb\x1b[31m"))
    assert problem(1, "x").symptom is False and p.symptom is True
    assert not has_marker(p)
