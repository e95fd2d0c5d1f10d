"""The self-healing safety layer and engine, against a real local Rundeck API server (FakeRundeck)
and an in-memory Zabbix (FakeZabbix): decisions, one run per event, limits, failures, outcomes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from hefestus.adapters.rundeck import RundeckClient
from hefestus.classify.patterns import Catalog, load_catalog
from hefestus.config import RemediationSettings, RundeckSettings
from hefestus.redact import Redactor
from hefestus.remediation.decision import Decision
from hefestus.remediation.engine import RUN_ATTEMPTS
from hefestus.remediation.remediator import Remediator, audit_lines
from hefestus.remediation.rules import load_remediation_rules
from hefestus.state import RemediationRecords, State, open_state
from hefestus.testing import FakeZabbix, problem
from hefestus.values import Classification, Outcome, Problem
from tests.support.helpers import FakeClock, eventually
from tests.support.paths import DATA
from tests.support.rundeck import FakeRundeck

TOKEN = "abcdef0123456789-fake-token"
RESTART = "3f2a9c1e-6b0d-4c55-9a57-2b8f0e6d1c44"
CLEAN = "7b1d0c2e-1111-4c55-9a57-2b8f0e6d1c45"
UNIT_FAILED = "systemd[1]: nginx.service: Failed with result 'exit-code'."
DISK_FULL = "write failed: No space left on device"

RULES = f"""
[[remediation]]
name = "restart-service"
domain = "linux"
category = "service-failed"
project = "ops"
job_id = "{RESTART}"
job_name = "Restart service"
options.unit = {{ value = "{{unit}}", allow = '^[A-Za-z0-9][A-Za-z0-9@_.-]*\\.service$' }}
options.host = {{ value = "{{host}}", allow = '^[A-Za-z0-9][A-Za-z0-9.-]*$' }}
{{restart_extra}}

[[remediation]]
name = "clean-disk"
domain = "linux"
category = "disk-full"
project = "ops"
job_id = "{CLEAN}"
job_name = "Clean disk"
options.host = {{ value = "{{host}}", allow = '^[A-Za-z0-9][A-Za-z0-9.-]*$' }}
"""


#: How often eventually() looks here: the fakes are local and answer in milliseconds.
POLL = 0.02


@dataclass
class Lab:
    tmp: Path
    fake: FakeRundeck
    zbx: FakeZabbix
    catalog: Catalog
    clock: FakeClock
    outcomes: list[Outcome] = field(default_factory=list)
    made: list[Remediator] = field(default_factory=list)
    stores: list[State] = field(default_factory=list)

    def remediator(self, *, mode: str = "on", runner: Any = "client", rules_extra: str = "",
                   store: RemediationRecords | None = None, **settings: Any) -> Remediator:
        (self.tmp / "rules").mkdir(exist_ok=True)
        (self.tmp / "rules" / "10-r.toml").write_text(RULES.replace("{restart_extra}", rules_extra))
        rules = load_remediation_rules(self.tmp / "rules", catalog=self.catalog)
        s = RemediationSettings(**{"mode": mode, "poll_min": 0.01, "poll_max": 0.05,
                                   "recovery_window": 0, **settings})
        if store is None:
            state = open_state(self.tmp / "state.db")
            self.stores.append(state)
            store = state.remediations
        if runner == "client":
            runner = self.client()
        r = Remediator(s, lambda: rules, runner, self.zbx, store, redact=Redactor(), clock=self.clock,
                       on_outcome=self.outcomes.append)
        self.made.append(r)
        return r

    def client(self, **kw: Any) -> RundeckClient:
        settings = RundeckSettings(**{"url": self.fake.url, "token": TOKEN, "timeout": 1, "retries": 1,
                                      **kw})
        return RundeckClient(settings, sleep=lambda _: None)

    def event(self, eventid: int, text: str = UNIT_FAILED, host: str = "web1", **kw: Any
              ) -> tuple[Problem, Classification]:
        p = problem(eventid, f"Problem on {host}", host=host, text=text, **kw)
        self.zbx.add(p)
        return p, self.catalog.classify(p.error_text, "linux")

    def messages(self, eventid: int) -> list[str]:
        return list(self.zbx.acks.get(eventid, []))

    def outcome(self, eventid: int, n: int = 1, timeout: float = 10.0) -> str:
        return str(eventually(lambda: len(self.messages(eventid)) >= n and self.messages(eventid)[n - 1],
                              timeout, f"message {n} on event {eventid}", POLL))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    with FakeRundeck(token=TOKEN, hang_seconds=1.5) as fake:
        fake.add_job(RESTART, "restart-service", required_options=("unit",),
                     output=("stopping nginx", "starting nginx", "nginx is active"))
        fake.add_job(CLEAN, "clean-disk", output=("freed 3 GB",))
        lab = Lab(tmp_path, fake, FakeZabbix(), load_catalog(DATA / "patterns"), FakeClock(1_800_000_000.0))
        yield lab
        for r in lab.made:
            r.stop(2)
        for s in lab.stores:
            s.close()


def run_and_finish(lab: Lab, r: Remediator, eventid: int, **kw: Any) -> str:
    p, c = lab.event(eventid, **kw)
    d = r.decide(p, c)
    assert d is not None and d.action == "run", d
    r.execute(d)
    return lab.outcome(eventid)


# -- deciding ---------------------------------------------------------------------------

def test_no_rule_no_decision(lab: Lab) -> None:
    """Unmapped categories and unclassified events get no decision (and no line in the message)."""
    r = lab.remediator()
    p, _ = lab.event(1, text="something nobody knows")
    assert r.decide(p, lab.catalog.classify(p.error_text, "linux")) is None
    p, _ = lab.event(2, text="sorry, too many clients already")
    assert r.decide(p, lab.catalog.classify(p.error_text, "database")) is None


def test_only_a_pattern_category_triggers_a_job(lab: Lab) -> None:
    """A classification without a pattern id (what a model could claim) never maps to a job."""
    r = lab.remediator()
    p, c = lab.event(1)
    from dataclasses import replace

    assert r.decide(p, replace(c, pattern_id=None)) is None
    assert r.decide(p, c) is not None


def test_run_decision_and_outcome(lab: Lab) -> None:
    r = lab.remediator()
    p, c = lab.event(1)
    d = r.decide(p, c)
    assert d is not None and (d.action, d.reason) == ("run", None)
    assert d.summary == ("Self-healing: running Rundeck job 'Restart service' (ops) with "
                         "unit=nginx.service, host=web1 — outcome will follow")
    r.execute(d)
    text = lab.outcome(1)
    assert text.startswith("[Hefestus] self-healing: Rundeck job 'Restart service' (ops) succeeded in ")
    assert "(execution 101)" in text and f"{lab.fake.url}/project/ops/execution/show/101" in text
    assert text.endswith("Last output lines:\n  stopping nginx\n  starting nginx\n  nginx is active")
    (run,) = lab.fake.calls("run")
    assert run.body == {"options": {"unit": "nginx.service", "host": "web1"}}
    assert [o.result for o in eventually(lambda: lab.outcomes, 10, "an outcome", POLL)] == ["succeeded"]


def test_injection_attempt_is_refused_and_nothing_runs(lab: Lab) -> None:
    r = lab.remediator()
    p, c = lab.event(1, host="web1; rm -rf /")
    d = r.decide(p, c)
    assert d is not None and (d.action, d.reason) == ("refused", "not-allowed")
    assert d.summary == ("Self-healing refused: option 'host' value 'web1; rm -rf /' does not match "
                         "^[A-Za-z0-9][A-Za-z0-9.-]*$")
    r.execute(d)
    assert r.wait_idle(5)
    assert lab.fake.calls("run") == [] and lab.messages(1) == []
    assert "refused" in audit_lines(r._records)[-1] and "not-allowed" in audit_lines(r._records)[-1]


def test_dry_run_decides_and_runs_nothing(lab: Lab) -> None:
    r = lab.remediator(mode="dry-run")
    p, c = lab.event(1)
    d = r.decide(p, c)
    assert d is not None and d.action == "dry-run"
    assert d.summary == ("Self-healing (dry-run): would run Rundeck job 'Restart service' (ops) with "
                         "unit=nginx.service, host=web1")
    r.execute(d)
    r.execute(d)
    assert r.wait_idle(5)
    assert lab.fake.requests == [] and lab.messages(1) == []
    assert [ln.split()[6] for ln in audit_lines(r._records)] == ["dry-run", "dry-run"]


def test_a_rule_can_stay_in_dry_run_and_placeholders_never_run(lab: Lab) -> None:
    r = lab.remediator(rules_extra="dry_run = true")
    d = r.decide(*lab.event(1))
    assert d is not None and d.action == "dry-run" and "(the rule says dry_run = true)" in d.summary
    (lab.tmp / "rules" / "10-r.toml").write_text(
        RULES.replace(RESTART, "00000000-0000-0000-0000-000000000001").replace("{restart_extra}", ""))
    rules = load_remediation_rules(lab.tmp / "rules", catalog=lab.catalog)
    r._rules = lambda: rules
    d = r.decide(*lab.event(2))
    assert d is not None and (d.action, d.reason) == ("refused", "placeholder")
    assert "placeholder job id: set the real one in" in d.summary


def test_mode_off_and_no_rundeck_are_refusals(lab: Lab) -> None:
    d = lab.remediator(mode="off").decide(*lab.event(1))
    assert d is not None and (d.action, d.reason) == ("refused", "off")
    assert d.summary.startswith('Self-healing is off (remediation.mode = "off"); rule \'restart-service\'')
    d = lab.remediator(runner=None).decide(*lab.event(2))
    assert d is not None and (d.action, d.reason) == ("refused", "no-rundeck")
    assert lab.remediator(mode="dry-run", runner=None).decide(*lab.event(3)).action == "dry-run"  # type: ignore[union-attr]


# -- once per event ---------------------------------------------------------------------

def test_one_run_per_event_even_when_executed_twice(lab: Lab) -> None:
    r = lab.remediator()
    p, c = lab.event(1)
    d = r.decide(p, c)
    assert d is not None
    r.execute(d)
    r.execute(d)
    lab.outcome(1)
    again = r.decide(p, c)
    assert again is not None and again.action == "already"
    assert "already handled for this event (execution 101: succeeded)" in again.summary
    r.execute(again)
    assert r.wait_idle(5)
    assert len(lab.fake.calls("run")) == 1 and len(lab.messages(1)) == 1


def test_after_a_crash_the_execution_in_flight_is_followed_not_rerun(lab: Lab) -> None:
    lab.fake.jobs[RESTART].polls_to_finish = 10**6
    first = lab.remediator()
    p, c = lab.event(1)
    first.execute(first.decide(p, c))  # type: ignore[arg-type]
    eventually(lambda: (rec := first._records.remediation(1)) and rec.state == "running", 10, "running", POLL)
    first.stop(0)  # the "crash": the row stays "running"
    state = open_state(lab.tmp / "state.db")
    lab.stores.append(state)
    store = state.remediations
    second = lab.remediator(store=store)
    assert second.decide(p, c).action == "already"  # type: ignore[union-attr]
    assert second.resume() == {"running": 1}
    eventually(lambda: lab.fake.executions[101].polls > 2, 10, "polls after resume", POLL)
    lab.fake.finish(101)
    assert "succeeded" in lab.outcome(1)
    assert len(lab.fake.calls("run")) == 1
    assert any("resumed" in ln for ln in audit_lines(store))


def test_an_intent_without_an_answer_is_reported_never_rerun(lab: Lab) -> None:
    """Crash between "starting" (persisted) and Rundeck's answer: unknown whether it started."""
    r = lab.remediator()
    p, c = lab.event(1)
    d = r.decide(p, c)
    assert d is not None
    r.stop(0)  # nothing will be run by this one
    r.execute(d)
    from dataclasses import replace

    rec = r._records.remediation(1)
    assert rec is not None and rec.state == "queued"
    r._records.save_remediation(replace(rec, state="starting", ran_at=lab.clock()))
    second = lab.remediator(store=r._records)
    assert second.resume() == {"starting": 1}
    text = lab.outcome(1)
    assert text.startswith("[Hefestus] self-healing: unknown whether Rundeck job 'Restart service' (ops) "
                           "started") and "Not re-run" in text
    assert lab.fake.calls("run") == []


def test_a_queued_run_is_run_after_restart_only_while_the_problem_is_open(lab: Lab) -> None:
    r = lab.remediator()
    r.stop(0)
    for eventid in (1, 2):
        r.execute(r.decide(*lab.event(eventid, host=f"web{eventid}")))  # type: ignore[arg-type]
    lab.zbx.resolve(2)
    second = lab.remediator(store=r._records)
    assert second.resume() == {"queued": 2}
    assert "succeeded" in lab.outcome(1)
    assert "the problem recovered before the job could be run" in lab.outcome(2)
    assert [c.body["options"]["host"] for c in lab.fake.calls("run")] == ["web1"]


# -- limits -----------------------------------------------------------------------------

def test_cooldown_per_job_and_host(lab: Lab) -> None:
    r = lab.remediator(cooldown=600)
    run_and_finish(lab, r, 1, host="web1")
    d = r.decide(*lab.event(2, host="web1"))
    assert d is not None and (d.action, d.reason) == ("refused", "cooldown")
    assert "already ran for web1 at" in d.summary and "cooldown 600 s" in d.summary
    run_and_finish(lab, r, 3, host="web2")  # another host: fine
    lab.clock.now += 601
    run_and_finish(lab, r, 4, host="web1")
    assert len(lab.fake.calls("run")) == 3


def test_runs_per_hour_per_job(lab: Lab) -> None:
    r = lab.remediator(cooldown=0, rules_extra="max_runs_per_hour = 2")
    run_and_finish(lab, r, 1, host="a")
    lab.clock.now += 10
    run_and_finish(lab, r, 2, host="b")
    d = r.decide(*lab.event(3, host="c"))
    assert d is not None and d.reason == "rate-limit" and "ran 2 time(s) in the last hour" in d.summary
    assert r.decide(*lab.event(4, host="c", text=DISK_FULL)).action == "run"  # type: ignore[union-attr]
    lab.clock.now += 3591
    assert r.decide(*lab.event(5, host="c")).action == "run"  # type: ignore[union-attr]


def test_limits_are_checked_again_when_the_run_is_claimed(lab: Lab) -> None:
    """Two events of one cycle, same job and host: both decided "run", only the first runs."""
    r = lab.remediator()
    d1, d2 = r.decide(*lab.event(1)), r.decide(*lab.event(2))
    assert d1 is not None and d2 is not None and d1.action == d2.action == "run"
    r.execute(d1)
    r.execute(d2)
    assert "was not run after all: Rundeck job 'Restart service' (ops) already ran for web1" in \
        lab.outcome(2)
    lab.outcome(1)
    assert len(lab.fake.calls("run")) == 1
    assert r.decide(*lab.event(2)).action == "already"  # type: ignore[union-attr]


def test_claim_before_the_first_message_tells_the_truth_in_it(lab: Lab) -> None:
    """claim() persists the run before the first message: a refusal found then is what the first
    message says, and nothing is written twice."""
    r = lab.remediator()
    d1, d2 = r.decide(*lab.event(1)), r.decide(*lab.event(2))
    assert d1 is not None and d2 is not None
    c1, c2 = r.claim(d1), r.claim(d2)
    assert c1 == replace(d1, claimed=True) and (c2.action, c2.reason) == ("refused", "cooldown")
    assert c2.summary.startswith("Self-healing refused: Rundeck job 'Restart service' (ops) already ran "
                                 "for web1 at")
    assert r.claim(d1) == c1 and r.decide(*lab.event(1)).action == "run"  # type: ignore[union-attr]
    r.execute(c2)
    r.execute(c1)
    r.execute(d1)
    lab.outcome(1)
    assert r.wait_idle(5)
    assert lab.messages(2) == [] and len(lab.fake.calls("run")) == 1
    assert [ln.split()[6] for ln in audit_lines(r._records)] == ["run", "refused", "started", "succeeded"]


def test_a_claim_lost_in_a_crash_before_execute_still_runs_once(lab: Lab) -> None:
    r = lab.remediator()
    r.claim(r.decide(*lab.event(1)))  # type: ignore[arg-type]
    r.stop(0)  # crash: execute() never called
    second = lab.remediator(store=r._records)
    assert second.resume() == {"queued": 1}
    assert "succeeded" in lab.outcome(1)
    d = second.decide(*lab.event(1))
    assert d is not None and d.action == "already"
    second.execute(d)
    assert second.wait_idle(5)
    assert len(lab.fake.calls("run")) == 1


def test_a_claim_can_be_released(lab: Lab) -> None:
    r = lab.remediator()
    r.claim(r.decide(*lab.event(1)))  # type: ignore[arg-type]
    assert r._records.remediations_in_flight() == 1
    assert r.release(1, "zabbix refused the first message") is True
    assert r._records.remediations_in_flight() == 0 and r.release(1, "again") is False
    assert r.decide(*lab.event(2)).action == "run"  # type: ignore[union-attr]  # no cooldown from it


def test_breaker_opens_after_n_failures_and_closes_after_reset(lab: Lab) -> None:
    lab.fake.jobs[RESTART].outcome = "failed"
    r = lab.remediator(cooldown=0, breaker_failures=2, breaker_reset=300)
    assert "ended 'failed'" in run_and_finish(lab, r, 1, host="a")
    second = run_and_finish(lab, r, 2, host="b")
    assert "2 consecutive failed run(s): the circuit breaker of Rundeck job 'Restart service' (ops) is " \
           "open; no runs until" in second
    d = r.decide(*lab.event(3, host="c"))
    assert d is not None and d.reason == "breaker"
    assert d.summary.startswith("Self-healing refused: circuit breaker open for Rundeck job 'Restart "
                                "service' (ops) after 2 consecutive failed run(s), until")
    assert r.decide(*lab.event(4, host="c", text=DISK_FULL)).action == "run"  # type: ignore[union-attr]
    lab.clock.now += 301
    lab.fake.jobs[RESTART].outcome = "succeeded"
    assert "succeeded" in run_and_finish(lab, r, 5, host="c")
    assert r._records.breaker(RESTART) == (0, None)


def test_concurrency_cap(lab: Lab) -> None:
    lab.fake.jobs[RESTART].polls_to_finish = 10**6
    r = lab.remediator(max_concurrent=1)
    r.execute(r.decide(*lab.event(1)))  # type: ignore[arg-type]
    eventually(lambda: lab.fake.calls("run"), 10, "first run", POLL)
    d = r.decide(*lab.event(2, host="web9", text=DISK_FULL))
    assert d is not None and d.reason == "concurrency"
    assert "1 self-healing job(s) already in flight (remediation.max_concurrent = 1)" in d.summary
    lab.fake.finish(101)
    lab.outcome(1)
    assert r.decide(*lab.event(3, host="web9", text=DISK_FULL)).action == "run"  # type: ignore[union-attr]


# -- failures ---------------------------------------------------------------------------

FAILURES = [
    # fault on the run call, result, what the second message says, run calls
    ("not-found", "rejected", "Rundeck job 'Restart service' (ops) was refused: Rundeck refused job", 1),
    ("options-invalid", "rejected", "api.error.job.options-invalid", 1),
    ("disabled", "rejected", "Job execution is disabled (api.error.job.disabled)", 1),
    ("forbidden", "rejected", 'Not authorized for action "Run"', 1),
    ("redirect", "rejected", "redirected (HTTP 302)", 1),
    ("html-500", "unknown", "unknown whether Rundeck job 'Restart service' (ops) started", 1),
    ("unavailable", "unknown", "HTTP 503, empty body; the job may have started", 1),
    ("proxy-502", "unknown", "502 Bad Gateway", 1),
    ("hang", "unknown", "no answer from", 1),
    ("drop", "unknown", "dropped before an answer", 1),
    ("login-page", "unknown", "instead of a JSON object", 1),
]


@pytest.mark.parametrize(("fault", "result", "says", "calls"), FAILURES)
def test_each_failure_is_classified_and_reported(lab: Lab, fault: str, result: str, says: str,
                                                 calls: int) -> None:
    """Permanent: reported, not retried. May have started: reported, never re-run."""
    lab.fake.fault("run", fault)  # type: ignore[arg-type]
    r = lab.remediator()
    text = run_and_finish(lab, r, 1)
    assert says in text, text
    assert text.startswith("[Hefestus] self-healing: ") and len(text) <= 2048
    assert r.wait_idle(5)
    assert len(lab.fake.calls("run")) == calls
    rec = r._records.remediation(1)
    assert rec is not None and (rec.state, rec.result) == ("done", result)
    assert rec.counted is (result == "unknown")  # a run that may have happened counts towards limits
    assert r._records.breaker(RESTART)[0] == 1


def test_a_conflict_is_retried_after_backoff(lab: Lab) -> None:
    """409 (limit of running executions) never started anything: tried again, once it succeeds."""
    lab.fake.fault("run", "conflict")
    r = lab.remediator()
    assert "succeeded" in run_and_finish(lab, r, 1)
    assert len(lab.fake.calls("run")) == 2
    assert any(" retry " in ln and "Limit of running executions" in ln for ln in audit_lines(r._records))


def test_rundeck_down_is_retried_then_given_up(lab: Lab) -> None:
    r = lab.remediator()
    r._engine._runner = lab.client(url="http://127.0.0.1:9")  # nothing listens: never sent
    text = run_and_finish(lab, r, 1)
    assert f"not started after {RUN_ATTEMPTS} attempt(s): Rundeck unavailable" in text
    rec = r._records.remediation(1)
    assert rec is not None and (rec.result, rec.attempts, rec.counted) == ("error", RUN_ATTEMPTS, False)


def test_no_retry_once_the_problem_recovered(lab: Lab) -> None:
    lab.fake.fault("run", "conflict")
    r = lab.remediator(poll_max=0.3)
    p, c = lab.event(1)
    r.execute(r.decide(p, c))  # type: ignore[arg-type]
    eventually(lambda: lab.fake.calls("run"), 10, "first attempt", POLL)
    lab.zbx.resolve(1)
    assert "the problem recovered before the job could be run" in lab.outcome(1)
    assert len(lab.fake.calls("run")) == 1


def test_timeout_aborts_the_execution(lab: Lab) -> None:
    lab.fake.jobs[RESTART].polls_to_finish = 10**6
    r = lab.remediator(rules_extra="timeout = 1")
    text = run_and_finish(lab, r, 1)
    assert "did not finish within 1 s and was aborted (abort: aborted; execution 101, status aborted)" \
        in text
    assert lab.fake.executions[101].status == "aborted" and len(lab.fake.calls("abort")) == 1
    assert r._records.remediation(1).result == "timedout"  # type: ignore[union-attr]


def test_output_tail_is_redacted_and_fits_the_limit(lab: Lab) -> None:
    secret = "hunter2-very-secret"
    lab.fake.jobs[RESTART].output = tuple(f"line {i}: " + "x" * 300 for i in range(60)) + (
        f"connecting with password={secret}", "Authorization: Bearer abcdefghijklmnopqrstuvwxyz012345",
        "restarted")
    r = lab.remediator(output_lines=100)
    text = run_and_finish(lab, r, 1)
    assert secret not in text and "abcdefghijklmnopqrstuvwxyz012345" not in text
    assert "password=<redacted>" in text
    assert len(text) <= 2048 and text.startswith("[Hefestus] self-healing: ")
    assert text.endswith("  restarted")  # the newest lines are kept
    assert "line 0:" not in text


# -- closed loop ------------------------------------------------------------------------

def test_problem_still_open_after_the_window_is_reported(lab: Lab) -> None:
    r = lab.remediator(rules_extra="recovery_window = 0.3")
    first = run_and_finish(lab, r, 1)
    assert "Checking that the problem recovers within 0.3 s." in first
    lab.clock.now += 1  # the window (on the injected clock) is over
    still = lab.outcome(1, n=2)
    assert still.startswith("[Hefestus] self-healing: remediation ran but the problem is still open")
    assert "Not run again" in still
    eventually(lambda: len(lab.outcomes) == 2, 10, "second outcome", POLL)
    assert [o.result for o in lab.outcomes] == ["succeeded", "still-open"]
    assert len(lab.fake.calls("run")) == 1


def test_problem_that_recovered_stays_quiet(lab: Lab) -> None:
    r = lab.remediator(rules_extra="recovery_window = 1")
    run_and_finish(lab, r, 1)
    lab.zbx.resolve(1)
    eventually(lambda: r._records.remediation(1).result == "recovered", 10, "recovered", POLL)  # type: ignore[union-attr]
    assert r.wait_idle(5)
    assert len(lab.messages(1)) == 1
    assert "recovered" in audit_lines(r._records)[-1]


# -- the rest ---------------------------------------------------------------------------

def test_audit_keeps_every_decision_and_outcome(lab: Lab) -> None:
    r = lab.remediator()
    run_and_finish(lab, r, 1)
    r.execute(r.decide(*lab.event(2, host="web1;x")))  # type: ignore[arg-type]
    r2 = lab.remediator(mode="dry-run", store=r._records)
    r2.execute(r2.decide(*lab.event(3, host="web3")))  # type: ignore[arg-type]
    eventually(lambda: len(audit_lines(r._records)) >= 5, 10, "audit", POLL)
    actions = [(ln.split()[3], ln.split()[6]) for ln in audit_lines(r._records)]
    assert actions == [("1", "run"), ("1", "started"), ("1", "succeeded"), ("2", "refused"),
                       ("3", "dry-run")], audit_lines(r._records)
    assert "queued Rundeck job 'Restart service' (ops) with unit=nginx.service" in audit_lines(r._records)[0]


def test_stop_is_graceful_and_quick(lab: Lab) -> None:
    lab.fake.jobs[RESTART].polls_to_finish = 10**6
    r = lab.remediator()
    r.execute(r.decide(*lab.event(1)))  # type: ignore[arg-type]
    eventually(lambda: r._records.remediation(1).state == "running", 10, "running", POLL)  # type: ignore[union-attr]
    t0 = time.monotonic()
    r.stop(5)
    assert time.monotonic() - t0 < 2
    assert r._records.remediation(1).state == "running"  # type: ignore[union-attr]


def test_decision_is_a_plain_value(lab: Lab) -> None:
    d = lab.remediator().decide(*lab.event(1))
    assert isinstance(d, Decision) and d.options == (("unit", "nginx.service"), ("host", "web1"))
