"""Self-healing: a pattern category mapped to a Rundeck job, run at most once, safely.

    decide(problem, classification) -> Decision | None       pure, fast; nothing runs
    claim(decision) -> Decision                                persist a run (limits again)
        the first acknowledgement shows decision.summary
    execute(decision)                                          after that acknowledgement
        audit; for a run: worker: run once -> follow -> outcome message
        -> closed loop: did the problem recover within the rule's window?

What keeps it safe, in the order :meth:`Remediator.decide` checks it:

* only a *pattern's* category can map to a job (:class:`~hefestus.values.Classification`
  with a pattern id): the language model advises, its output never selects or starts
  anything, and :meth:`decide` never sees it;
* the global mode: ``off`` (decide nothing), ``dry-run`` (report what would run) or
  ``on``; a rule can also be ``dry_run = true`` on its own;
* every option value, rendered from the event, must fully match its allow-list;
* at most one remediation per event (the state store's primary key); the per-job
  circuit breaker, cooldown per job and host, runs per job per hour, and a global cap
  on runs in flight (:mod:`hefestus.remediation.policy`), checked again, atomically
  with the claim, when the run is queued.

How a run is carried out, and why it never runs twice, is in
:mod:`hefestus.remediation.engine`; rules are read by :mod:`hefestus.remediation.rules`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import structlog

from hefestus.config import RemediationSettings
from hefestus.pipeline.render import ZABBIX_MESSAGE_LIMIT
from hefestus.remediation.engine import Engine
from hefestus.remediation.messages import (
    CheckLine,
    check_jobs,
    format_audit,
    not_run_text,
    options_text,
)
from hefestus.remediation.policy import Policy
from hefestus.remediation.ports import JobRunner, Outcome, RecoveryZabbix
from hefestus.remediation.rules import RemediationRule, RemediationRules, load_remediation_rules
from hefestus.state.store import RemediationRecord, Store
from hefestus.values import Classification, Problem

__all__ = ["CheckLine", "Decision", "JobRunner", "Outcome", "RecoveryZabbix", "RemediationRules",
           "Remediator", "audit_lines", "check_jobs", "load_remediation_rules"]

log = structlog.get_logger("hefestus.remediation.remediator")

Action = Literal["run", "dry-run", "refused", "already"]
_SUMMARY = 400


def _identity(text: str) -> str:
    return text


@dataclass(frozen=True, slots=True)
class Decision:
    """What would happen for one event, and why. ``summary`` is one redacted line for Zabbix.

    ``reason`` is a code: "" for run/dry-run/already; otherwise off, not-allowed,
    no-rundeck, placeholder, breaker, cooldown, rate-limit or concurrency.
    """

    action: Action
    reason: str
    summary: str
    eventid: int
    host: str
    rule: RemediationRule
    options: tuple[tuple[str, str], ...] = ()
    node_filter: str | None = None
    #: The refusal in words (redacted), as the audit keeps it.
    detail: str = ""
    #: Already in the audit trail and the store (set by :meth:`Remediator.claim`).
    recorded: bool = False


class Remediator:
    def __init__(self, settings: RemediationSettings, rules: Callable[[], RemediationRules],
                 runner: JobRunner | None, zabbix: RecoveryZabbix, store: Store, *,
                 redact: Callable[[str], str] = _identity, clock: Callable[[], float] = time.time,
                 on_outcome: Callable[[Outcome], None] | None = None, ack_action: int = 4,
                 max_length: int = ZABBIX_MESSAGE_LIMIT) -> None:
        self._s = settings
        self._rules = rules  # a callable: a reload (SIGHUP) is picked up at the next decision
        self._runner = runner
        self._store = store
        self._redact = redact
        self._clock = clock
        self._max_length = min(max_length, ZABBIX_MESSAGE_LIMIT)
        self._policy = Policy(settings, store, clock)
        self._claim = threading.Lock()
        self._engine = Engine(settings, runner, zabbix, store, self._policy, redact=redact,
                              clock=clock, on_outcome=on_outcome, ack_action=ack_action,
                              max_length=self._max_length)

    @property
    def mode(self) -> str:
        return self._s.mode

    # -- deciding ---------------------------------------------------------------------

    def decide(self, problem: Problem, classification: Classification) -> Decision | None:
        """None when no rule maps the event's pattern category; otherwise what would happen."""
        rule = self._rules().find(problem, classification)
        if rule is None:
            return None
        host = problem.host

        def refused(reason: str, detail: str, summary: str | None = None) -> Decision:
            detail = self._redact(detail)
            return Decision("refused", reason, self._line(summary or f"Self-healing refused: {detail}"),
                            problem.eventid, host, rule, detail=detail)

        existing = self._store.remediation(problem.eventid)
        if existing is not None and existing.state == "queued":  # claimed, not run yet: still a run
            return Decision("run", "", self._line(
                f"Self-healing: running {rule.label}"
                f"{' with ' + options_text(existing.options) if existing.options else ''} — outcome "
                "will follow"), problem.eventid, host, rule, existing.options, existing.node_filter)
        if existing is not None:
            return Decision("already", "", self._line(f"Self-healing: {rule.label} already handled "
                                                      f"for this event ({_progress(existing)})"),
                            problem.eventid, host, rule, existing.options, existing.node_filter)
        if self._s.mode == "off":
            return refused("off", "remediation.mode is \"off\"",
                           f"Self-healing is off (remediation.mode = \"off\"); rule '{rule.name}' "
                           f"maps this event to {rule.label}")
        options, node_filter, why = rule.render(problem, classification)
        if why:
            return refused("not-allowed", why)
        shown = f" with {options_text(options)}" if options else ""
        dry = self._s.mode == "dry-run" or rule.dry_run
        if dry:
            notes = []
            if rule.dry_run and self._s.mode != "dry-run":
                notes.append("the rule says dry_run = true")
            if rule.placeholder:
                notes.append(f"its job id is a placeholder: set the real one in {rule.origin}")
            limit = self._policy.refusal(rule, host)
            if limit is not None:
                notes.append(f"would be refused now: {limit.text}")
            note = f" ({'; '.join(notes)})" if notes else ""
            return Decision("dry-run", "", self._line(f"Self-healing (dry-run): would run {rule.label}"
                                                      f"{shown}{note}"),
                            problem.eventid, host, rule, options, node_filter)
        if self._runner is None:
            return refused("no-rundeck", f"{rule.label} is mapped but no [rundeck] is configured")
        if rule.placeholder:
            return refused("placeholder", f"{rule.label} has a placeholder job id: set the real one "
                                          f"in {rule.origin}")
        limit = self._policy.refusal(rule, host)
        if limit is not None:
            return refused(limit.code, limit.text)
        return Decision("run", "", self._line(f"Self-healing: running {rule.label}{shown} — outcome "
                                              "will follow"),
                        problem.eventid, host, rule, options, node_filter)

    def _line(self, text: str) -> str:
        text = " ".join(self._redact(text).split())
        return text if len(text) <= _SUMMARY else text[: _SUMMARY - 1] + "…"

    # -- acting -----------------------------------------------------------------------

    def claim(self, decision: Decision) -> Decision:
        """Persist a run decision *before* the first message is written; returns what now holds.

        The limits are checked again, atomically with the claim (one cycle may hold two
        events of the same job and host): a refusal comes back as a refused decision, whose
        summary the first message shows instead. Once claimed, a crash before
        :meth:`execute` loses nothing: :meth:`resume` runs the claim if the problem is still
        open. Other decisions are returned unchanged.
        """
        if decision.action != "run":
            return decision
        claimed, _ = self._claim_run(decision, tell=False)
        return claimed

    def execute(self, decision: Decision) -> None:
        """Audit the decision; for a run, claim it (unless :meth:`claim` did) and hand it to a
        worker. Never blocks on Rundeck.

        Call it for every decision, after the first acknowledgement was written. Calling it
        again for the same event (or after a restart) runs nothing more: one run per event.
        """
        rule = decision.rule
        if decision.action == "already" or decision.recorded:
            return
        if decision.action != "run":
            what = (decision.summary if decision.action == "dry-run"
                    else f"{decision.reason}: {decision.detail}")
            self._engine.audit(None, decision.action, what, eventid=decision.eventid,
                               host=decision.host, rule=rule.name, job_id=rule.job_id)
            return
        claimed, refused_now = self._claim_run(decision, tell=True)
        if refused_now:  # the first message said "running": the second one says why not
            self._engine.submit_write(decision.eventid)
        elif claimed.action == "run":
            self._engine.submit_run(decision.eventid)

    def _claim_run(self, decision: Decision, *, tell: bool) -> tuple[Decision, bool]:
        """(the decision as it stands, whether it was refused just now)."""
        rule = decision.rule
        with self._claim:
            existing = self._store.remediation(decision.eventid)
            if existing is not None:  # claimed earlier (by claim(), or before a restart)
                if existing.state == "queued":
                    return decision, False
                return replace(decision, action="already", recorded=True), False
            limit = self._policy.refusal(rule, decision.host)
            rec = RemediationRecord(
                eventid=decision.eventid, rule=rule.name, origin=rule.origin, job_id=rule.job_id,
                job_name=rule.job_name, project=rule.project, host=decision.host,
                options=decision.options, node_filter=decision.node_filter,
                timeout=rule.timeout or self._s.timeout,
                recovery_window=(self._s.recovery_window if rule.recovery_window is None
                                 else rule.recovery_window),
                state="queued", claimed_at=self._clock())
            if limit is not None:  # kept, so the event is never tried again
                rec = replace(rec, state="done", result="refused", counted=False, ended_at=rec.claimed_at,
                              detail=limit.text)
                if tell:
                    rec = replace(rec, outcome_state="pending", outcome=not_run_text(
                        rule.label, limit.text, redact=self._redact, limit=self._max_length))
            self._store.add_remediation(rec)
        if limit is not None:
            self._engine.audit(rec, "refused", f"{limit.code} (when claimed): {limit.text}")
            log.info("remediation refused when claimed", eventid=decision.eventid, reason=limit.code)
            detail = self._redact(limit.text)
            return replace(decision, action="refused", reason=limit.code, detail=detail, recorded=True,
                           summary=self._line(f"Self-healing refused: {detail}")), True
        self._engine.audit(rec, "run", f"queued {rule.label}"
                           f"{' with ' + options_text(decision.options) if decision.options else ''}")
        return decision, False

    def release(self, eventid: int, why: str) -> bool:
        """Give up a claim that will never be executed (the first message could not be written
        and the event was given up). True when there was such a claim."""
        with self._claim:
            rec = self._store.remediation(eventid)
            if rec is None or rec.state != "queued":
                return False
            rec = replace(rec, state="done", result="dropped", counted=False, ended_at=self._clock(),
                          detail=why)
            self._store.save_remediation(rec)
        self._engine.audit(rec, "dropped", why)
        return True

    def resume(self) -> dict[str, int]:
        """At start-up, before the first cycle: follow runs in flight, never start them again."""
        return self._engine.resume()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking work; runs being followed stay "running" and are resumed at the next start."""
        self._engine.stop(timeout)

    def prune(self, older_than_days: int) -> int:
        return self._store.prune_remediation(older_than_days)


def _progress(rec: RemediationRecord) -> str:
    if rec.exec_id is not None:
        return f"execution {rec.exec_id}: {rec.result or rec.state}"
    return rec.result or rec.state


def audit_lines(store: Store, limit: int = 20, *, eventid: int | None = None) -> list[str]:
    """The latest ``limit`` audit entries, oldest first, for `hefestus remediation`."""
    return format_audit(reversed(store.audit_trail(limit, eventid=eventid)))
