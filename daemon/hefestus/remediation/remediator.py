"""Self-healing: a pattern category mapped to a Rundeck job, run at most once, safely.

The pipeline drives one event through three steps, each once:

    plan(problem, classification) -> Decision | None    decide and claim, atomically:
        the limits are evaluated once, the run persisted before any message
        the first acknowledgement shows decision.summary
    execute(decision)                                    after that acknowledgement:
        audit; for a run: worker: run once -> follow -> outcome message
        -> closed loop: did the problem recover within the rule's window?

:meth:`Remediator.decide` and :meth:`Remediator.claim` are the two halves of
``plan`` for callers that decide early and claim later (a decision made outside
the claim lock may be stale, so ``claim`` evaluates the limits again).

What keeps it safe, in the order :meth:`Remediator.decide` checks it:

* only a *pattern's* category can map to a job (:class:`~hefestus.values.Classification`
  with a pattern id): the language model advises, its output never selects or starts
  anything, and :meth:`decide` never sees it;
* the global mode: ``off`` (decide nothing), ``dry-run`` (report what would run) or
  ``on``; a rule can also be ``dry_run = true`` on its own;
* every option value, rendered from the event, must fully match its allow-list;
* at most one remediation per event (the state store's primary key); the per-job
  circuit breaker, cooldown per job and host, runs per job per hour, and a global cap
  on runs in flight (:mod:`hefestus.remediation.policy`), evaluated atomically with
  the claim.

How a run is carried out, and why it never runs twice, is in
:mod:`hefestus.remediation.engine`; rules are read by :mod:`hefestus.remediation.rules`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

import structlog

from hefestus.config import RemediationSettings
from hefestus.pipeline.render import ZABBIX_MESSAGE_LIMIT, cut
from hefestus.redact import unredacted
from hefestus.remediation.checks import format_audit
from hefestus.remediation.decision import Decision
from hefestus.remediation.engine import Engine
from hefestus.remediation.messages import not_run_text, options_text
from hefestus.remediation.policy import Policy, Refusal
from hefestus.remediation.ports import JobRunner, RecoveryZabbix
from hefestus.remediation.rules import RemediationRule, RemediationRules
from hefestus.state.remediations import RemediationRecord, RemediationRecords
from hefestus.values import Classification, Outcome, Problem

log = structlog.get_logger("hefestus.remediation")

_SUMMARY = 400


class Remediator:
    def __init__(self, settings: RemediationSettings, rules: Callable[[], RemediationRules],
                 runner: JobRunner | None, zabbix: RecoveryZabbix, records: RemediationRecords, *,
                 redact: Callable[[str], str] = unredacted, clock: Callable[[], float] = time.time,
                 on_outcome: Callable[[Outcome], None] | None = None, ack_action: int = 4,
                 max_length: int = ZABBIX_MESSAGE_LIMIT) -> None:
        self._s = settings
        self._rules = rules  # a callable: a reload (SIGHUP) is picked up at the next decision
        self._runner = runner
        self._records = records
        self._redact = redact
        self._clock = clock
        self._max_length = min(max_length, ZABBIX_MESSAGE_LIMIT)
        self._policy = Policy(settings, records, clock)
        self._claim = threading.Lock()
        self._engine = Engine(settings, runner, zabbix, records, self._policy, redact=redact,
                              clock=clock, on_outcome=on_outcome, ack_action=ack_action,
                              max_length=self._max_length)

    @property
    def mode(self) -> str:
        return self._s.mode

    # -- the pipeline's step ----------------------------------------------------------

    def plan(self, problem: Problem, classification: Classification, *,
             persist: bool = True) -> Decision | None:
        """Decide and, for a run, claim in one step under the claim lock: the limits are
        evaluated once, and no other event of the cycle can slip in between.

        None when no rule maps the event, or when self-healing is off (the message then
        says nothing of it). ``persist=False`` (``run --dry-run``) stores nothing.
        """
        with self._claim:
            decision = self.decide(problem, classification)
            if decision is None or decision.reason == "off":
                return None
            if persist and decision.action == "run":
                return self._persist(decision, None, tell=False)[0]
            return decision

    # -- deciding ---------------------------------------------------------------------

    def decide(self, problem: Problem, classification: Classification) -> Decision | None:
        """None when no rule maps the event's pattern category; otherwise what would happen.
        Stores nothing."""
        rule = self._rules().find(problem, classification)
        if rule is None:
            return None
        eventid, host = problem.eventid, problem.host
        existing = self._records.remediation(eventid)
        if existing is not None and existing.state == "queued":  # claimed, not run yet: still a run
            return Decision("run", self._running(rule, existing.options), eventid, host, rule,
                            existing.options, existing.node_filter, claimed=True)
        if existing is not None:
            return Decision("already", self._line(f"Self-healing: {rule.label} already handled "
                                                  f"for this event ({_progress(existing)})"),
                            eventid, host, rule, existing.options, existing.node_filter, claimed=True)
        if self._s.mode == "off":
            return self._refused(eventid, host, rule, Refusal("off", "remediation.mode is \"off\""),
                                 f"Self-healing is off (remediation.mode = \"off\"); rule '{rule.name}' "
                                 f"maps this event to {rule.label}")
        options, node_filter, why = rule.render(problem, classification)
        if why:
            return self._refused(eventid, host, rule, Refusal("not-allowed", why))
        shown = _with(options)
        if self._s.mode == "dry-run" or rule.dry_run:
            notes = []
            if rule.dry_run and self._s.mode != "dry-run":
                notes.append("the rule says dry_run = true")
            if rule.placeholder:
                notes.append(f"its job id is a placeholder: set the real one in {rule.origin}")
            limit = self._policy.refusal(rule, host)
            if limit is not None:
                notes.append(f"would be refused now: {limit.text}")
            note = f" ({'; '.join(notes)})" if notes else ""
            return Decision("dry-run", self._line(f"Self-healing (dry-run): would run {rule.label}"
                                                  f"{shown}{note}"), eventid, host, rule, options, node_filter)
        if self._runner is None:
            return self._refused(eventid, host, rule, Refusal(
                "no-rundeck", f"{rule.label} is mapped but no [rundeck] is configured"))
        if rule.placeholder:
            return self._refused(eventid, host, rule, Refusal(
                "placeholder", f"{rule.label} has a placeholder job id: set the real one in {rule.origin}"))
        limit = self._policy.refusal(rule, host)
        if limit is not None:
            return self._refused(eventid, host, rule, limit)
        return Decision("run", self._running(rule, options), eventid, host, rule, options, node_filter)

    def _refused(self, eventid: int, host: str, rule: RemediationRule, why: Refusal,
                 summary: str | None = None) -> Decision:
        detail = self._redact(why.text)
        return Decision("refused", self._line(summary or f"Self-healing refused: {detail}"), eventid, host,
                        rule, reason=why.code, detail=detail)

    def _running(self, rule: RemediationRule, options: tuple[tuple[str, str], ...]) -> str:
        return self._line(f"Self-healing: running {rule.label}{_with(options)} — outcome will follow")

    def _line(self, text: str) -> str:
        return cut(" ".join(self._redact(text).split()), _SUMMARY)

    # -- claiming ---------------------------------------------------------------------

    def claim(self, decision: Decision) -> Decision:
        """Persist a run decision made earlier by :meth:`decide`, before the first message is
        written; returns what now holds. Other decisions are returned unchanged.

        The limits are evaluated again, atomically with the claim, because the decision may
        be stale: a refusal comes back as a refused decision, whose summary the first message
        shows instead. Once claimed, a crash before :meth:`execute` loses nothing:
        :meth:`resume` runs the claim if the problem is still open.
        """
        if decision.action != "run" or decision.claimed:
            return decision
        with self._claim:
            return self._claim_stale(decision, tell=False)[0]

    def _claim_stale(self, decision: Decision, *, tell: bool) -> tuple[Decision, bool]:
        """Under the claim lock: (the decision as it stands, whether it was refused just now)."""
        existing = self._records.remediation(decision.eventid)
        if existing is not None:  # claimed meanwhile (another cycle, or before a restart)
            if existing.state == "queued":
                return replace(decision, claimed=True), False
            return replace(decision, action="already", claimed=True), False
        return self._persist(decision, self._policy.refusal(decision.rule, decision.host), tell=tell)

    def _persist(self, decision: Decision, limit: Refusal | None, *, tell: bool) -> tuple[Decision, bool]:
        """Write the run's row (queued), or a refusal kept so the event is never tried again;
        ``tell``: the first message already said "running", so the refusal gets a message."""
        rule = decision.rule
        rec = RemediationRecord(
            eventid=decision.eventid, rule=rule.name, origin=rule.origin, job_id=rule.job_id,
            job_name=rule.job_name, project=rule.project, host=decision.host,
            options=decision.options, node_filter=decision.node_filter,
            timeout=rule.timeout or self._s.timeout,
            recovery_window=(self._s.recovery_window if rule.recovery_window is None
                             else rule.recovery_window),
            state="queued", claimed_at=self._clock())
        if limit is not None:
            rec = replace(rec, state="done", result="refused", counted=False, ended_at=rec.claimed_at,
                          detail=limit.text)
            if tell:
                rec = replace(rec, outcome_state="pending", outcome=not_run_text(
                    rule.label, limit.text, redact=self._redact, limit=self._max_length))
        self._records.add_remediation(rec)
        if limit is not None:
            self._engine.audit(rec, "refused", f"{limit.code} (when claimed): {limit.text}")
            log.info("remediation refused when claimed", eventid=decision.eventid, reason=limit.code)
            refused = self._refused(decision.eventid, decision.host, rule, limit)
            return replace(refused, claimed=True), True
        self._engine.audit(rec, "run", f"queued {rule.label}{_with(decision.options)}")
        return replace(decision, claimed=True), False

    # -- acting -----------------------------------------------------------------------

    def execute(self, decision: Decision) -> None:
        """After the first acknowledgement was written: audit the decision; hand a claimed run
        to a worker. Never blocks on Rundeck.

        A run nobody claimed yet (a caller that skipped :meth:`plan`/:meth:`claim`) is claimed
        here first; if the limits refuse it now, a second message says why not. Calling it
        again for the same event (or after a restart) runs nothing more: one run per event.
        """
        if decision.action == "already":
            return
        if decision.action != "run":
            if not decision.claimed:
                what = (decision.summary if decision.action == "dry-run"
                        else f"{decision.reason}: {decision.detail}")
                self._engine.audit(None, decision.action, what, eventid=decision.eventid,
                                   host=decision.host, rule=decision.rule.name, job_id=decision.rule.job_id)
            return
        if not decision.claimed:
            with self._claim:
                decision, refused_now = self._claim_stale(decision, tell=True)
            if refused_now:  # the first message said "running": the second one says why not
                self._engine.submit_write(decision.eventid)
                return
        if decision.action == "run":
            self._engine.submit_run(decision.eventid)

    def release(self, eventid: int, why: str) -> bool:
        """Give up a claim that will never be executed (the first message could not be written
        and the event was given up). True when there was such a claim."""
        with self._claim:
            rec = self._records.remediation(eventid)
            if rec is None or rec.state != "queued":
                return False
            rec = replace(rec, state="done", result="dropped", counted=False, ended_at=self._clock(),
                          detail=why)
            self._records.save_remediation(rec)
        self._engine.audit(rec, "dropped", why)
        return True

    def resume(self) -> dict[str, int]:
        """At start-up, before the first cycle: follow runs in flight, never start them again."""
        return self._engine.resume()

    def wait_idle(self, timeout: float) -> bool:
        """True once no run, write or follow-up is queued, running or due; False on timeout.
        The seam tests synchronise on (a follow-up scheduled for later is not due)."""
        return self._engine.wait_idle(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work; runs being followed stay "running" and are resumed at the next start."""
        self._engine.stop(timeout)

    def prune(self, older_than_days: int) -> int:
        return self._records.prune_remediation(older_than_days)


def _with(options: tuple[tuple[str, str], ...]) -> str:
    return f" with {options_text(options)}" if options else ""


def _progress(rec: RemediationRecord) -> str:
    if rec.exec_id is not None:
        return f"execution {rec.exec_id}: {rec.result or rec.state}"
    return rec.result or rec.state


def audit_lines(records: RemediationRecords, limit: int = 20, *, eventid: int | None = None) -> list[str]:
    """The latest ``limit`` audit entries, oldest first, for `hefestus remediation`."""
    return format_audit(reversed(records.audit_trail(limit, eventid=eventid)))
