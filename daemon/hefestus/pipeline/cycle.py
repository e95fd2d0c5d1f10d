"""One poll cycle, as small typed stages composed in one place.

    fetch      event.get: ids past the cursor (and the overlap window behind it)
    triage     skip what must not be touched (marker, resolved, backlog); a symptom
               (Zabbix 6.4+) gets one line naming its cause, or nothing ([intake] symptoms)
    classify   routing rules, then the pattern dictionaries     (classify/)
    analyse    pattern suggestion, model answer per fingerprint  (analysis/)
    decide     self-healing: decided and claimed before a word is written  (remediation/)
    render     the message, redacted, within Zabbix's limit       (pipeline/render.py)
    write      event.acknowledge, batched by identical message, a few calls in flight while
               the next group is prepared (pipeline/writes.py); then the cursor moves
    after      the after-write handlers, in the order app/build.py lists them:
               HandOffRemediation (the Rundeck run, on the engine's workers),
               Announce (Slack, Teams)                             (pipeline/after_write.py)

Exactly-once, across restarts and crashes, rests on three things:
* the **cursor** only moves past an event once that event reached a final
  state in the ledger (done, skipped, failed), so a Zabbix outage mid-cycle
  leaves the rest for the next poll;
* the **overlap window**: ids behind the cursor are listed again each poll,
  because Zabbix's history syncers commit separately and a lower event id can
  become visible after a higher one was read;
* the **marker check**: before writing, the event's existing acknowledgements
  are searched for Hefestus's marker written by Hefestus's own Zabbix user, so
  a crash between Zabbix's write and ours, or a lost state file, never yields a
  second message (and another user's "[Hefestus] ..." comment silences nothing).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace

import structlog

from hefestus.analysis.fingerprint import mask_hosts, normalise
from hefestus.analysis.teach import sighting
from hefestus.classify.knowledge import Knowledge
from hefestus.config import AcknowledgeSettings, IntakeSettings
from hefestus.pipeline.plan import CycleReport, Planned
from hefestus.pipeline.ports import (
    LISTING_LIMIT,
    OPEN_END,
    AfterWrite,
    Analysis,
    Remediation,
    UnclassifiedLog,
    Zabbix,
)
from hefestus.pipeline.render import MARKER, cut, pointer, render
from hefestus.pipeline.writes import IN_FLIGHT, Writer
from hefestus.redact import unredacted
from hefestus.remediation.decision import Decision
from hefestus.state.ledger import FINAL_STATES, EventState, Ledger, LedgerEntry
from hefestus.values import Classification, EventFilter, Problem, Suggestion

log = structlog.get_logger("hefestus.pipeline.cycle")


class PatternsOnly:
    """The analysis stage with no model: each event gets its pattern suggestion."""

    def suggest_groups(self, items: Sequence[tuple[Problem, Classification]], *,
                       remember: bool = True) -> Iterator[list[tuple[int, Suggestion]]]:
        yield [(i, Suggestion.from_pattern(c)) for i, (_, c) in enumerate(items)]


def has_marker(problem: Problem) -> bool:
    """Whether Hefestus already wrote on this event: its marker, by its own Zabbix user."""
    return any(a.by_hefestus and a.message.startswith(MARKER) for a in problem.acks)


class Pipeline:
    def __init__(self, zabbix: Zabbix, ledger: Ledger, knowledge: Callable[[], Knowledge], *,
                 intake: IntakeSettings, ack: AcknowledgeSettings, ledger_days: int = 90,
                 clock: Callable[[], float] = time.time, analysis: Analysis | None = None,
                 redact: Callable[[str], str] = unredacted, remediation: Remediation | None = None,
                 after_write: Sequence[AfterWrite] = (), unclassified: UnclassifiedLog | None = None,
                 writes_in_flight: int = IN_FLIGHT, others_may_write: Callable[[], bool] | None = None) -> None:
        self._zbx = zabbix
        self._writes = Writer(zabbix, ledger, action=ack.action_bits, max_attempts=intake.max_attempts,
                              remediation=remediation, after_write=after_write, in_flight=writes_in_flight)
        self._ledger = ledger
        self._knowledge = knowledge  # a callable, so a reload is picked up at the next cycle
        self._intake = intake
        self._ack = ack
        self._filter: EventFilter | None = None  # built at the first cycle: it needs Zabbix
        self._clock = clock
        self._ledger_days = ledger_days
        self._last_prune = 0.0
        self._analysis = analysis or PatternsOnly()
        self._redact = redact
        self._remediation = remediation
        #: Event kinds no pattern matched, for `hefestus unclassified` (the teach loop).
        self._unclassified = unclassified
        #: Whether an earlier leader may still be alive, hence still send a write it had in
        #: flight (see hefestus.state.lease, presence); None: this process is the only one.
        self._others_may_write = others_may_write

    # -- stage 0: where to start ------------------------------------------------------

    def _start_cursor(self, *, persist: bool) -> int:
        cursor = self._ledger.cursor
        if cursor is not None:
            return cursor
        latest = self._zbx.latest_event_id()
        if self._intake.first_start == "now" and persist:
            cursor = latest
        else:  # backlog (a dry run always looks back, so it has something to show)
            since = int(self._clock() - self._intake.backlog_hours * 3600)
            first = self._zbx.first_event_id_since(since)
            cursor = latest if first is None else first - 1
        if persist:
            # floor: events at or below it predate Hefestus; the overlap never reaches under it.
            self._ledger.set_meta(cursor=cursor, floor=cursor, backlog_until=latest,
                                 backlog_since=int(self._clock() - self._intake.backlog_hours * 3600))
            log.info("first start", mode=self._intake.first_start, cursor=cursor)
        return cursor

    # -- the cycle --------------------------------------------------------------------

    def run_once(self, *, dry_run: bool = False) -> CycleReport:
        """Handle every new problem visible now. Raises ZabbixUnavailable if Zabbix is gone;
        whatever was not written stays behind the cursor for the next cycle."""
        report = CycleReport()
        if self._filter is None:
            intake = self._intake
            groupids = self._zbx.group_ids(intake.host_groups) if intake.host_groups else ()
            self._filter = EventFilter(min_severity=intake.min_severity, groupids=groupids,
                                       include_suppressed=intake.include_suppressed)
        flt = self._filter
        cursor = self._start_cursor(persist=not dry_run)
        backlog = (int(self._ledger.meta("backlog_until") or 0), int(self._ledger.meta("backlog_since") or 0))
        floor = int(self._ledger.meta("floor") or cursor)
        # Late arrivals behind the cursor first: they are the oldest. One listing (ids only)
        # covers the overlap window and whatever came after it: an idle poll is that one call.
        lowest = max(cursor - self._intake.overlap_ids + 1, floor + 1)
        if self._intake.overlap_ids and lowest <= cursor:
            ids = self._zbx.event_ids(flt, eventid_from=lowest, eventid_till=OPEN_END)
            known = self._ledger.states(i for i in ids if i <= cursor)
            late = [i for i in ids if i <= cursor and (i not in known or known[i].state not in FINAL_STATES)]
            if late:
                log.info("late events behind the cursor", count=len(late))
                self._handle(self._zbx.events(flt, eventids=late), report, dry_run, backlog)
            if (not ids or ids[-1] <= cursor) and len(ids) < LISTING_LIMIT:
                return self._idle(report, dry_run)
        while True:
            page = self._zbx.events(flt, eventid_from=cursor + 1, limit=self._intake.page_size)
            if not page:
                break
            done = self._handle(page, report, dry_run, backlog)
            if dry_run:
                cursor = page[-1].eventid
            else:
                new_cursor = _advance(cursor, [p.eventid for p in page], done)
                if new_cursor > cursor:
                    self._ledger.advance_cursor(new_cursor)
                if new_cursor < page[-1].eventid:
                    report.deferred += sum(1 for p in page if p.eventid not in done)
                    break
                cursor = new_cursor
            if len(page) < self._intake.page_size:
                break
        return self._idle(report, dry_run)

    def _idle(self, report: CycleReport, dry_run: bool) -> CycleReport:
        if not dry_run:
            self._prune()
        return report

    def _prune(self) -> None:
        """Forget old ledger rows, at most hourly; never those the overlap window re-reads."""
        now = self._clock()
        if now - self._last_prune < 3600:
            return
        self._last_prune = now
        cursor = self._ledger.cursor or 0
        removed = self._ledger.prune(self._ledger_days, keep_above=cursor - self._intake.overlap_ids + 1)
        if removed:
            log.info("ledger pruned", removed=removed, older_than_days=self._ledger_days)
        if self._unclassified is not None:
            try:
                self._unclassified.prune(self._ledger_days)
            except Exception as exc:  # noqa: BLE001 - bookkeeping for the teach loop only
                log.error("pruning unclassified kinds failed", error=str(exc))

    def _handle(self, problems: list[Problem], report: CycleReport, dry_run: bool,
                backlog: tuple[int, int]) -> set[int]:
        """Stages 1-4 for a batch; returns the ids that reached a final state."""
        report.fetched += len(problems)
        known = {} if dry_run else self._ledger.states(p.eventid for p in problems)
        final: set[int] = set()
        knowledge = self._knowledge()
        triaged: list[Planned] = []
        theirs = self._in_flight_elsewhere(known)
        for problem in problems:
            entry = known.get(problem.eventid)
            if entry is not None and entry.state in FINAL_STATES:
                final.add(problem.eventid)
                continue
            if problem.eventid in theirs:  # not final: the cursor waits, the next cycle looks again
                continue
            triaged.append(self._triage(problem, knowledge, backlog))
        # Written group by group as they are ready: a storm's known kinds are acknowledged in
        # seconds, and each model-answered kind as soon as its answer is in, never after the
        # slowest answer of the page. Zabbix stores one group while the next is prepared.
        try:
            for ready in self._analyse(triaged, remember=not dry_run):
                final.update(self._write_group(ready, report, dry_run))
                final.update(self._writes.settle(report, wait=False))
            final.update(self._writes.settle(report, wait=True))
        finally:  # after the writes (no event waits for it), even when Zabbix went away mid-batch
            self._writes.drain(report)
            if not dry_run:
                self._record_unclassified([p for p in triaged if p.problem.eventid not in known])
        return final

    def _in_flight_elsewhere(self, known: dict[int, LedgerEntry]) -> set[int]:
        """Events another process recorded as being written, while that process may still
        live: it may have checked its lease, then stopped (SIGSTOP, a paused VM) before its
        call left, and send it when it wakes. They wait until it is gone; then the marker
        check tells whether its message arrived."""
        theirs = {i for i, e in known.items() if e.state == "pending" and i not in self._writes.mine}
        if not theirs or self._others_may_write is None or not self._others_may_write():
            return set()
        log.warning("events left alone while the previous leader may still send their message",
                    events=sorted(theirs)[:20], count=len(theirs))
        return theirs

    def _record_unclassified(self, seen: list[Planned]) -> None:
        """Count the events (first seen in this batch) that no pattern matched; never raises."""
        if self._unclassified is None:
            return
        try:
            now = self._clock()
            self._unclassified.record([sighting(p.problem, p.classification, redact=self._redact, at=now)
                                       for p in seen if p.classification is not None
                                       and not p.classification.classified and not p.skip_reason])
        except Exception as exc:  # noqa: BLE001 - the event is handled either way
            log.error("recording unclassified events failed", error=str(exc), events=len(seen))

    def _write_group(self, ready: list[Planned], report: CycleReport, dry_run: bool) -> set[int]:
        final: set[int] = set()
        groups: dict[str, list[Planned]] = defaultdict(list)
        skipped: list[Planned] = []
        for plan in ready:
            report.planned.append(plan)
            if plan.message is None:
                skipped.append(plan)
            else:
                groups[plan.message].append(plan)
        if dry_run:
            return final
        self._record_skips(skipped, report)
        final.update(p.problem.eventid for p in skipped)
        for message, plans in groups.items():
            self._writes.submit(message, plans)
        return final

    # -- stage 1-3: triage, classify, render ------------------------------------------

    def _triage(self, problem: Problem, knowledge: Knowledge, backlog: tuple[int, int]) -> Planned:
        """Skip what must not be touched; classify the rest (a skip has a reason, no message)."""
        backlog_until, backlog_since = backlog
        if has_marker(problem):
            return Planned(problem, None, None, "already carries a Hefestus message")
        if problem.resolved and not self._intake.include_resolved:
            return Planned(problem, None, None, "resolved before Hefestus saw it")
        if problem.eventid <= backlog_until and problem.acknowledged:
            return Planned(problem, None, None, "acknowledged by a person before Hefestus started")
        if problem.eventid <= backlog_until and problem.clock < backlog_since:
            return Planned(problem, None, None, "older than the first-start backlog window")
        if problem.symptom and self._intake.symptoms == "skip":
            return Planned(problem, None, None, f"symptom of event {problem.cause_eventid} (symptoms = skip)")
        if problem.symptom and self._intake.symptoms == "point":  # one line, no analysis
            limit = self._ack.max_length
            return Planned(problem, None, cut(self._redact(pointer(problem, limit=limit)), limit))
        return Planned(problem, knowledge.classify(problem), None)

    def _analyse(self, triaged: list[Planned], *, remember: bool) -> Iterator[list[Planned]]:
        """Render the events in groups as the analysis stage gets them ready: skips first,
        with everything that needs no model answer, then each fingerprint's events as its
        answer arrives (storm dedup: one call per fingerprint)."""
        todo = [p for p in triaged if not p.skip_reason and p.classification is not None]
        first = [p for p in triaged if p.skip_reason or p.classification is None]
        items = [(p.problem, p.classification) for p in todo if p.classification is not None]
        groups = self._analysis.suggest_groups(items, remember=remember) if items else iter(())
        for group in groups:
            yield first + [self._finish(todo[i], s, remember=remember) for i, s in group]
            first = []
        if first:
            yield first

    def _finish(self, plan: Planned, s: Suggestion, *, remember: bool) -> Planned:
        c = plan.classification
        assert c is not None
        if not c.classified and not s.from_model and not self._ack.unclassified:
            return replace(plan, suggestion=s, skip_reason="unclassified and acknowledge.unclassified = false")
        decision = self._decide(plan.problem, c, remember=remember)
        return replace(plan, suggestion=s, decision=decision,
                       message=self._message(s, decision.summary if decision else "", plan.problem.hosts))

    def _decide(self, problem: Problem, c: Classification, *, remember: bool) -> Decision | None:
        """The self-healing decision, claimed (persisted) before the first message says it."""
        if self._remediation is None or problem.symptom:  # a symptom's cause is what to heal
            return None
        return self._remediation.plan(problem, c, persist=remember)

    def _message(self, s: Suggestion, remediation: str = "", hosts: Sequence[str] = ()) -> str:
        """Render, then redact; redaction can lengthen a text, so shrink until it fits.

        The matched excerpt is shown with its volatile parts masked (times, counters, ids,
        pod suffixes, the event's own host): events of one kind then share one message,
        written in one batched call; the event itself still shows the exact text.
        """
        limit = self._ack.max_length
        budget = limit

        def excerpt(text: str) -> str:
            return normalise(mask_hosts(text, hosts))

        for _ in range(4):
            text = self._redact(render(s, limit=budget, remediation=remediation, excerpt=excerpt))
            if len(text) <= limit:
                return text
            budget -= len(text) - limit
        return cut(text, limit)

    def _record_skips(self, skipped: list[Planned], report: CycleReport) -> None:
        if not skipped:
            return
        rows = []
        for p in skipped:
            marked = p.skip_reason.startswith("already carries")
            state: EventState = "done" if marked else "skipped"
            c = p.classification
            rows.append((p.problem.eventid, state, c.domain if c else None, c.category if c else None,
                         c.pattern_id if c else None, p.skip_reason))
            if marked:
                report.already_marked += 1
            else:
                report.skipped += 1
            log.info("event skipped", eventid=p.problem.eventid, host=p.problem.host, reason=p.skip_reason)
        self._ledger.record(rows)


def _advance(cursor: int, ids: list[int], done: set[int]) -> int:
    """Highest id of the (ascending) page such that it and everything before it is final."""
    for eventid in ids:
        if eventid not in done:
            return max(cursor, eventid - 1)
        cursor = max(cursor, eventid)
    return cursor
