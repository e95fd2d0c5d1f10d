"""Running a claimed remediation: Rundeck once, followed to the end, told in Zabbix.

Each step is persisted before the next is taken, so a crash at any point
leaves a row that says what is safe to do on restart (:meth:`Engine.resume`):

    queued    claimed, never sent          -> may be run (if the problem is still open)
    starting  the run call may have left   -> never re-run: "unknown whether it started"
    running   Rundeck gave an execution id -> polled to the end, never started again
    retry     a transient refusal (Rundeck down, 503, 409) before anything started
              -> tried again at next_at while the problem is open, RUN_ATTEMPTS in all
    verifying succeeded; the problem must recover within the rule's window
    done

Runs and follow-ups are carried out by :mod:`hefestus.remediation.workers`.
Rundeck errors are classified by the adapter: ``maybe_started`` means never
again, ``transient`` means later, anything else is reported and dropped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Unpack

import structlog

from hefestus.config import RemediationSettings
from hefestus.errors import (
    RundeckError,
    RundeckUnavailable,
    ZabbixRejected,
    ZabbixUnavailable,
)
from hefestus.remediation.messages import (
    finished_head,
    finished_text,
    lost_track_text,
    not_run_text,
    not_started_text,
    still_open_text,
    unknown_text,
)
from hefestus.remediation.outcomes import OutcomeReporter
from hefestus.remediation.policy import Policy
from hefestus.remediation.ports import Execution, JobRunner, RecoveryZabbix
from hefestus.remediation.workers import Workers
from hefestus.state.lease import LeaseLost
from hefestus.state.remediations import (
    AuditEntry,
    RecordChanges,
    RemediationRecord,
    RemediationRecords,
)
from hefestus.values import Outcome

log = structlog.get_logger("hefestus.remediation")

#: Run calls per event when Rundeck refuses transiently (never when the job may have started).
RUN_ATTEMPTS = 3


def label(rec: RemediationRecord) -> str:
    return f"Rundeck job '{rec.job_name}' ({rec.project})"


class Engine:
    def __init__(self, settings: RemediationSettings, runner: JobRunner | None, zabbix: RecoveryZabbix,
                 records: RemediationRecords, policy: Policy, *, redact: Callable[[str], str],
                 clock: Callable[[], float], on_outcome: Callable[[Outcome], None] | None,
                 ack_action: int, max_length: int) -> None:
        self._s = settings
        self._runner = runner
        self._zbx = zabbix
        self._records = records
        self._policy = policy
        self._redact = redact
        self._clock = clock
        self._max_length = max_length
        self._rows = threading.RLock()  # read-modify-write of one row at a time
        self._work = Workers(settings.max_concurrent)
        self._stopping = self._work.stopping
        self._report = OutcomeReporter(zabbix, records, self._work, update=self._update, audit=self.audit,
                                       on_outcome=on_outcome, ack_action=ack_action,
                                       retry_after=settings.poll_max)

    # -- plumbing ---------------------------------------------------------------------

    def audit(self, rec: RemediationRecord | None, action: str, detail: str, *, eventid: int = 0,
              host: str = "", rule: str = "", job_id: str = "") -> None:
        if rec is not None:
            eventid, host, rule, job_id = rec.eventid, rec.host, rec.rule, rec.job_id
        self._records.audit(AuditEntry(self._clock(), eventid, host, rule, job_id, action,
                                     self._redact(detail)))

    def _update(self, eventid: int, **changes: Unpack[RecordChanges]) -> RemediationRecord:
        with self._rows:
            return self._records.update(eventid, **changes)

    def submit_run(self, eventid: int) -> None:
        self._work.run(partial(self._run, eventid))

    def submit_write(self, eventid: int) -> None:
        self._work.side(partial(self._report.write, eventid))

    def _later(self, delay: float, step: Callable[[int], None], eventid: int) -> None:
        self._work.later(delay, partial(step, eventid))

    def wait_idle(self, timeout: float) -> bool:
        return self._work.wait_idle(timeout)

    def stop(self, timeout: float) -> None:
        self._work.stop(timeout)

    # -- one run ----------------------------------------------------------------------

    def _run(self, eventid: int) -> None:
        with self._rows:  # queued -> starting exactly once, however often it was submitted
            rec = self._records.remediation(eventid)
            if rec is None or rec.state != "queued" or self._stopping.is_set():
                return
            if self._runner is not None:
                # The intent, persisted before the call: from here on the job may be running.
                rec = self._update(eventid, state="starting", ran_at=self._clock(),
                                   attempts=rec.attempts + 1)
        if self._runner is None:
            self._finish(rec, "refused", not_run_text(label(rec), "no [rundeck] is configured",
                                                      redact=self._redact, limit=self._max_length),
                         counted=False)
            return
        try:
            ex = self._runner.run_job(rec.job_id, dict(rec.options), node_filter=rec.node_filter)
        except RundeckError as exc:
            self._run_failed(rec, exc)
            return
        except LeaseLost:
            raise  # nothing was sent: the row stays "starting" for the new leader (never re-run)
        except Exception as exc:  # noqa: BLE001 - a bug or an untranslated error: the call may have left
            log.exception("remediation: run call failed unexpectedly", eventid=eventid)
            self._run_failed(rec, RundeckError(f"unexpected {type(exc).__name__} while asking Rundeck",
                                               maybe_started=True))
            return
        rec = self._update(eventid, state="running", exec_id=ex.id, permalink=ex.permalink)
        self.audit(rec, "started", f"execution {ex.id} {ex.permalink}".strip())
        log.info("remediation started", eventid=eventid, job=rec.job_id, execution=ex.id)
        self._follow(rec, ex, just_started=True)

    def _run_failed(self, rec: RemediationRecord, exc: RundeckError) -> None:
        text = str(exc)
        if exc.maybe_started:
            self._breaker(rec, success=False)
            self._finish(rec, "unknown", unknown_text(label(rec), text, rec.job_id, redact=self._redact,
                                                      limit=self._max_length), detail=text)
        elif exc.transient and rec.attempts < RUN_ATTEMPTS:
            delay = min(self._s.poll_max * 2 ** (rec.attempts - 1), 3600.0)
            rec = self._update(rec.eventid, state="retry", next_at=self._clock() + delay, detail=text)
            self.audit(rec, "retry", f"attempt {rec.attempts} of {RUN_ATTEMPTS} not started, again in "
                                     f"{delay:g} s: {text}")
            log.warning("remediation not started; will retry", eventid=rec.eventid, error=text,
                        delay=delay)
            self._later(delay, self._retry, rec.eventid)
        else:
            self._breaker(rec, success=False)
            self._finish(rec, "error" if exc.transient else "rejected", not_started_text(
                label(rec), text, rec.origin, attempts=rec.attempts if exc.transient else 0,
                redact=self._redact, limit=self._max_length), counted=False, detail=text)

    def _retry(self, eventid: int) -> None:
        """A queued (resumed) or retry row: run it if the problem is still open and policy allows."""
        rec = self._records.remediation(eventid)
        if rec is None or rec.state not in ("retry", "queued"):
            return
        try:
            resolved = self._zbx.problem_resolved(eventid)
        except ZabbixUnavailable as exc:
            log.warning("remediation: cannot tell whether the problem is open; later", error=str(exc))
            self._later(self._s.poll_max, self._retry, eventid)
            return
        except ZabbixRejected as exc:
            self._finish(rec, "dropped", "", counted=False, detail=str(exc))
            return
        if resolved:
            self._finish(rec, "dropped", not_run_text(
                label(rec), "the problem recovered before the job could be run",
                redact=self._redact, limit=self._max_length), counted=False)
            return
        refusal = self._policy.breaker_open(rec.job_id, label(rec))
        if refusal is not None:
            self._finish(rec, "refused", not_run_text(label(rec), refusal.text, redact=self._redact,
                                                      limit=self._max_length), counted=False)
            return
        others = self._records.remediations_in_flight() - (rec.state == "queued")  # not itself
        if others >= self._s.max_concurrent:
            self._later(self._s.poll_max, self._retry, eventid)  # waiting for a free slot is no attempt
            return
        self._update(eventid, state="queued")
        self.submit_run(eventid)

    def _follow(self, rec: RemediationRecord, ex: Execution, *, just_started: bool) -> None:
        """Poll until final or the rule's timeout (then abort); never starts anything."""
        assert self._runner is not None
        started = rec.ran_at if rec.ran_at is not None else self._clock()
        deadline = time.monotonic() + max(0.0, started + rec.timeout - self._clock())
        t0 = time.monotonic()
        delay, polls, abort_status = self._s.poll_min, 0, ""
        while not ex.final:
            left = deadline - time.monotonic()
            if left <= 0:
                abort_status = self._abort(rec, ex)
                ex = self._settle(ex)
                break
            if self._stopping.wait(min(delay, left)):
                return  # stays "running": the next start follows it
            delay = min(delay * 2, self._s.poll_max)
            polls += 1
            try:
                ex = self._runner.execution(ex.id, just_started=just_started and polls <= 3)
            except RundeckUnavailable as exc:
                log.warning("remediation: cannot poll the execution; trying again", error=str(exc),
                            execution=ex.id)
            except RundeckError as exc:
                self._breaker(rec, success=False)
                self._finish(rec, "unknown", lost_track_text(
                    label(rec), ex.id, str(exc), rec.permalink, redact=self._redact,
                    limit=self._max_length), detail=str(exc))
                return
        seconds = (ex.date_ended_ms - ex.date_started_ms) / 1000 if (
            ex.date_ended_ms and ex.date_started_ms) else time.monotonic() - t0
        self._finished(rec, ex, seconds, abort_status)

    def _abort(self, rec: RemediationRecord, ex: Execution) -> str:
        assert self._runner is not None
        try:
            status = self._runner.abort(ex.id)
        except RundeckError as exc:
            status = f"abort failed: {exc}"
        self.audit(rec, "abort", f"execution {ex.id} past {rec.timeout:g} s: {status}")
        return status

    def _settle(self, ex: Execution) -> Execution:
        """After an abort: a few quick polls for the final status."""
        assert self._runner is not None
        for _ in range(3):
            try:
                ex = self._runner.execution(ex.id)
            except RundeckError:
                break
            if ex.final or self._stopping.wait(self._s.poll_min):
                break
        return ex

    def _finished(self, rec: RemediationRecord, ex: Execution, seconds: float, abort_status: str) -> None:
        succeeded = ex.succeeded and not abort_status
        result = ex.status if not abort_status else "timedout"
        failures, opened = self._breaker(rec, success=succeeded)
        tail: list[str] = []
        note = ""
        if self._s.output_lines and self._runner is not None:
            try:
                tail = self._runner.output_tail(ex.id, self._s.output_lines)
            except RundeckError as exc:
                note = f"(output not available: {exc})"
        verify = succeeded and rec.recovery_window > 0
        head = finished_head(label(rec), ex, seconds, abort_status, rec.timeout)
        text = finished_text(
            head, options=rec.options, permalink=ex.permalink or rec.permalink, succeeded=succeeded,
            verify_window=rec.recovery_window if verify else 0.0,
            breaker_note=self._policy.breaker_note(failures, opened, label(rec)), note=note, tail=tail,
            redact=self._redact, limit=self._max_length)
        if verify:
            rec = self._update(rec.eventid, state="verifying", result=result, ended_at=self._clock(),
                               next_at=self._clock() + rec.recovery_window, outcome=text,
                               outcome_state="pending")
            self.audit(rec, result, head)
            self._report.write(rec.eventid)
            self._report.notify(rec, text)
            self._later(min(self._s.poll_max, rec.recovery_window), self._verify, rec.eventid)
        else:
            self._finish(rec, result, text, detail=head)

    def _breaker(self, rec: RemediationRecord, *, success: bool) -> tuple[int, float | None]:
        failures, opened = self._policy.record(rec.job_id, success=success)
        if opened is not None and not success and failures == self._s.breaker_failures:
            log.error("remediation circuit breaker open", job=rec.job_id, failures=failures)
        return failures, opened

    def _finish(self, rec: RemediationRecord, result: str, text: str, *, counted: bool | None = None,
                detail: str = "") -> None:
        """Final state; the message (if any) is persisted, then written, then announced."""
        changes: RecordChanges = {"state": "done", "result": result, "ended_at": self._clock(),
                                  "next_at": None, "detail": detail or rec.detail}
        if counted is not None:
            changes["counted"] = counted
        if text:
            changes["outcome"], changes["outcome_state"] = text, "pending"
        rec = self._update(rec.eventid, **changes)
        self.audit(rec, result, detail or text.partition("\n")[0].removeprefix("[Hefestus] ").strip())
        log.info("remediation done", eventid=rec.eventid, job=rec.job_id, result=result)
        if text:
            self._report.write(rec.eventid)
        self._report.notify(rec, text)

    # -- closed loop ------------------------------------------------------------------

    def _verify(self, eventid: int) -> None:
        rec = self._records.remediation(eventid)
        if rec is None or rec.state != "verifying":
            return
        try:
            resolved: bool | None = self._zbx.problem_resolved(eventid)
        except ZabbixUnavailable:
            resolved = None
        except ZabbixRejected as exc:
            self._finish(rec, rec.result, "", detail=f"recovery not checked: {exc}")
            return
        now = self._clock()
        if resolved:
            rec = self._update(eventid, state="done", result="recovered", next_at=None)
            self.audit(rec, "recovered", f"the problem recovered after {label(rec)}")
            self._report.notify(rec, "")
        elif now >= (rec.next_at or now):
            if resolved is None:
                log.warning("remediation: zabbix unavailable at the end of the recovery window",
                            eventid=eventid)
                self._later(self._s.poll_max, self._verify, eventid)
                return
            cooldown = self._cooldown_until(rec)
            self._finish(rec, "still-open", still_open_text(
                label(rec), rec.exec_id, rec.recovery_window, cooldown, redact=self._redact,
                limit=self._max_length))
        else:
            self._later(min(self._s.poll_max, (rec.next_at or now) - now), self._verify, eventid)

    def _cooldown_until(self, rec: RemediationRecord) -> float | None:
        claims = self._records.remediation_claims(rec.job_id, 0, rec.host)
        if not claims:
            return None
        until = claims[-1] + self._s.cooldown
        return until if until > self._clock() else None

    # -- start-up ---------------------------------------------------------------------

    def resume(self) -> dict[str, int]:
        """Pick up what the last run left; never sends a run call that may have been sent."""
        counts: dict[str, int] = {}
        for rec in self._records.remediations(outcome_state="pending"):
            self._work.side(partial(self._report.write, rec.eventid))
            counts["rewrite"] = counts.get("rewrite", 0) + 1
        for rec in self._records.remediations(["queued", "starting", "running", "retry", "verifying"]):
            counts[rec.state] = counts.get(rec.state, 0) + 1
            if rec.state == "starting":
                self._finish(rec, "unknown", unknown_text(
                    label(rec), "Hefestus stopped while asking Rundeck to run it", rec.job_id,
                    redact=self._redact, limit=self._max_length))
            elif rec.state == "running":
                self._work.run(partial(self._resume_running, rec.eventid))
            elif rec.state in ("queued", "retry"):
                self._later(max(0.0, (rec.next_at or 0) - self._clock()), self._retry, rec.eventid)
            else:
                self._later(0, self._verify, rec.eventid)
        if counts:
            log.info("remediation resumed", **counts)
        return counts

    def _resume_running(self, eventid: int) -> None:
        rec = self._records.remediation(eventid)
        if rec is None or rec.state != "running" or rec.exec_id is None:
            return
        if self._runner is None:
            self._finish(rec, "unknown", lost_track_text(
                label(rec), rec.exec_id, "no [rundeck] is configured any more", rec.permalink,
                redact=self._redact, limit=self._max_length))
            return
        try:
            ex = self._runner.execution(rec.exec_id)
        except RundeckUnavailable:
            self._work.later(self._s.poll_max, partial(self._resume_running, eventid), run_pool=True)
            return
        except RundeckError as exc:
            self._finish(rec, "unknown", lost_track_text(
                label(rec), rec.exec_id, str(exc), rec.permalink, redact=self._redact,
                limit=self._max_length), detail=str(exc))
            return
        self.audit(rec, "resumed", f"following execution {ex.id} ({ex.status}) after a restart")
        self._follow(rec, ex, just_started=False)

