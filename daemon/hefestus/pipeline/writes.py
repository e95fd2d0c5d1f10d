"""The write stage: ``event.acknowledge`` batched per identical message, a few calls in flight,
so Zabbix stores one group's message while the cycle prepares the next (and another's).

Only the call itself leaves the cycle's thread. The ledger's "pending" row is written
before a call is handed over; its "done" row, the after-write handlers and the logs run
back on the cycle's thread once the call returned, in the order the writes were handed
over. Exactly-once rests on the same three things as before (the cursor, the overlap
window, the marker check), and the state store is only ever touched by one thread. The
writes of a cycle are for disjoint events, so the order Zabbix applies them in does not
matter. A refused batch is retried one event at a time, here and now.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from hefestus.errors import ZabbixRejected, ZabbixUnavailable
from hefestus.pipeline.plan import CycleReport, Planned
from hefestus.pipeline.ports import Acknowledger, AfterWrite, Remediation
from hefestus.state.ledger import Ledger

log = structlog.get_logger("hefestus.pipeline.cycle")

#: ``event.acknowledge`` calls in flight at once. Each is one short PHP request and one
#: database transaction on the Zabbix side; a few at once keep its frontend and database
#: busy without queueing long behind each other (measured in bench/RESULTS.md).
IN_FLIGHT = 4


@dataclass(frozen=True, slots=True)
class Settled:
    """One finished write: what was written, onto which events, and how it ended."""

    message: str
    plans: list[Planned]
    error: Exception | None


class Writer:
    def __init__(self, zabbix: Acknowledger, ledger: Ledger, *, action: int, max_attempts: int,
                 remediation: Remediation | None = None, after_write: Sequence[AfterWrite] = (),
                 in_flight: int = IN_FLIGHT) -> None:
        self._zbx = zabbix
        self._ledger = ledger
        self._action = action
        self._max_attempts = max_attempts
        self._remediation = remediation
        #: Run, in this order, with the plans whose message Zabbix just stored.
        self._after_write = tuple(after_write)
        self._in_flight = in_flight
        self._pool: ThreadPoolExecutor | None = None  # made at the first write, kept for the next
        self._queue: deque[tuple[str, list[Planned], Future[None]]] = deque()
        #: Events this process recorded ``pending`` and has not yet seen written: any other
        #: pending row was left by another process, maybe a leader that may still send it.
        self.mine: set[int] = set()

    def submit(self, message: str, plans: list[Planned]) -> None:
        """Record the events as pending, then start writing ``message`` onto them."""
        self._pending(plans)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._in_flight, thread_name_prefix="zabbix-write")
        future = self._pool.submit(self._zbx.acknowledge, [p.problem.eventid for p in plans], message,
                                   action=self._action)
        self._queue.append((message, plans, future))

    def _pending(self, plans: list[Planned]) -> None:
        """The intent, recorded (fenced) before the call: ``pending``, and this process's own."""
        self._ledger.record((p.problem.eventid, "pending", *_cls(p), "writing") for p in plans)
        self.mine.update(p.problem.eventid for p in plans)

    def settle(self, report: CycleReport, *, wait: bool) -> set[int]:
        """Finish the writes Zabbix answered (every one with ``wait``), oldest first; the ids
        that reached a final state. Zabbix gone: the writes still in flight are finished, then
        ZabbixUnavailable is raised (pending rows are retried; the marker check prevents doubles)."""
        final: set[int] = set()
        for s in self._settled(wait=wait):
            if isinstance(s.error, ZabbixUnavailable):
                self.drain(report)
                raise s.error
            final.update(self._written(s, report))
        return final

    def drain(self, report: CycleReport) -> None:
        """Every write still in flight, finished (the cycle ends early)."""
        for s in self._settled(wait=True):
            if not isinstance(s.error, ZabbixUnavailable):
                self._written(s, report)

    def _settled(self, *, wait: bool) -> Iterator[Settled]:
        while self._queue and (wait or self._queue[0][2].done()):
            message, plans, future = self._queue.popleft()
            error = future.exception()
            if error is not None and not isinstance(error, Exception):
                raise error  # KeyboardInterrupt and the like: not a write's outcome
            yield Settled(message, plans, error)

    def _write(self, message: str, plans: list[Planned], report: CycleReport) -> set[int]:
        """Acknowledge ``plans`` with one call, here and now (the one-by-one retries)."""
        self._pending(plans)
        try:
            self._zbx.acknowledge([p.problem.eventid for p in plans], message, action=self._action)
        except ZabbixRejected as exc:
            return self._written(Settled(message, plans, exc), report)
        return self._written(Settled(message, plans, None), report)

    def _written(self, s: Settled, report: CycleReport) -> set[int]:
        """After Zabbix answered a write: done, or on refusal isolate the bad event(s)."""
        message, plans, exc = s.message, s.plans, s.error
        report.api_writes += 1
        if isinstance(exc, ZabbixRejected):
            return self._refused(message, plans, exc, report)
        if exc is not None:
            raise exc
        self._ledger.record((p.problem.eventid, "done", *_cls(p), "") for p in plans)
        self.mine.difference_update(p.problem.eventid for p in plans)
        for handler in self._after_write:
            try:
                handler(plans)
            except Exception as err:  # noqa: BLE001 - the acknowledgement is written; say so, go on
                log.error("after-write handler failed", handler=handler.name, error=str(err),
                          events=len(plans))
        for p in plans:
            c = p.classification
            report.acknowledged += 1
            if c is None:  # a symptom's pointer
                log.info("event acknowledged", eventid=p.problem.eventid, host=p.problem.host,
                         symptom_of=p.problem.cause_eventid, batch=len(plans))
                continue
            log.info("event acknowledged", eventid=p.problem.eventid, host=p.problem.host,
                     domain=c.domain, category=c.category or "unclassified", pattern=c.pattern_id,
                     source=p.suggestion.source if p.suggestion else c.source, batch=len(plans))
        return {p.problem.eventid for p in plans}

    def _refused(self, message: str, plans: list[Planned], exc: ZabbixRejected, report: CycleReport) -> set[int]:
        if len(plans) > 1:
            log.warning("batched acknowledge refused; retrying one by one", count=len(plans), error=str(exc))
            done: set[int] = set()
            for p in plans:
                done |= self._write(message, [p], report)
            return done
        p = plans[0]
        gave_up = self._ledger.record_failure(p.problem.eventid, str(exc), give_up_after=self._max_attempts)
        log.error("zabbix refused the acknowledgement", eventid=p.problem.eventid,
                  host=p.problem.host, error=str(exc), gave_up=gave_up)
        if not gave_up:
            return set()
        self.mine.discard(p.problem.eventid)
        report.failed += 1
        if p.decision is not None and self._remediation is not None:
            self._remediation.release(p.problem.eventid, str(exc))
        return {p.problem.eventid}


def _cls(p: Planned) -> tuple[str | None, str | None, str | None]:
    c = p.classification
    return (c.domain, c.category, c.pattern_id) if c else (None, None, None)
