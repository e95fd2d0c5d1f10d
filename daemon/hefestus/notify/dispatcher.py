"""Chat notifications (Slack, Teams): a dispatcher that never blocks the pipeline.

A notification is a courtesy copy of what Hefestus already wrote into Zabbix,
so it must never cost the acknowledgement path anything: :meth:`Dispatcher.send`
only redacts and enqueues, and one small worker thread per notifier posts,
retries and gives up in the background. A webhook that hangs, answers 500 or
was deleted shows up in the counters (:meth:`Dispatcher.stats`) and the log,
never as an exception or a delay in the pipeline.

What leaves goes through the redactor first (then adapters cut and escape:
cutting before redacting could leave half a token that no detector matches).

The adapters (``adapters/slack.py``, ``adapters/teams.py``) own the wire and
translate every failure into :class:`NotifyError`, which says whether trying
again may help (``transient``) and why, in words a metric label can carry
(``reason``). Only transient failures are retried, with exponential backoff
that honours ``Retry-After``, within a bounded number of attempts and time.

This module imports no HTTP client. What a notification carries, and the helpers
the adapters share, are in :mod:`hefestus.notify.message`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

log = structlog.get_logger("hefestus.notify.dispatcher")


from hefestus.errors import NotifyError
from hefestus.notify.message import Notification, Notifier

# -- the dispatcher -----------------------------------------------------------------

@dataclass(frozen=True)
class NotifierStats:
    """Counters for one notifier since start, for metrics and ``hefestus status``."""

    sent: int = 0
    failed: int = 0
    #: Never attempted: pushed out of a full queue, or still queued at shutdown.
    dropped: int = 0
    #: Attempts beyond the first (each one followed a transient failure).
    retries: int = 0
    #: Waiting right now.
    queued: int = 0
    failed_by_reason: Mapping[str, int] = field(default_factory=dict)


class _Aborted(Exception):
    """Raised out of a backoff sleep when the dispatcher shuts down."""


class _Lane:
    """One notifier, its queue, its worker thread and its counters."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self.items: deque[Notification] = deque()
        self.busy = False
        self.thread: threading.Thread | None = None
        self.sent = self.failed = self.dropped = self.retries = 0
        self.reasons: Counter[str] = Counter()


def _is_transient(exc: BaseException) -> bool:
    return isinstance(exc, NotifyError) and exc.transient


class Dispatcher:
    """Sends notifications to several notifiers in the background.

    Each notifier has its own bounded queue and worker thread, so a Slack
    rate limit does not delay Teams. When a queue is full the *oldest*
    waiting notification is dropped (and counted): during a storm the newest
    problems are the ones worth reading.

    Retries: transient failures only, at most ``attempts`` attempts and never
    starting one after ``max_elapsed`` seconds; the wait doubles from
    ``backoff`` up to ``max_backoff``, or is what ``Retry-After`` asked for
    when that is longer (and the notification is given up when that would
    exceed ``max_elapsed``). ``sleep`` replaces the interruptible wait (tests).
    """

    def __init__(self, notifiers: Sequence[Notifier], *, redact: Callable[[str], str],
                 queue_size: int = 100, attempts: int = 4, backoff: float = 1.0,
                 max_backoff: float = 30.0, max_elapsed: float = 120.0,
                 sleep: Callable[[float], None] | None = None) -> None:
        if queue_size < 1 or attempts < 1 or backoff < 0 or max_backoff < 0 or max_elapsed <= 0:
            raise ValueError("queue_size and attempts must be >= 1, backoff >= 0, max_elapsed > 0")
        names = [n.name for n in notifiers]
        if len(set(names)) != len(names):
            raise ValueError(f"notifier names must be unique: {names}")
        self._lanes = {n.name: _Lane(n) for n in notifiers}
        self._redact = redact
        self._queue_size = queue_size
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._max_elapsed = max_elapsed
        self._sleep = sleep or self._interruptible_sleep
        self._cond = threading.Condition()
        self._closing = False
        self._abort = threading.Event()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._lanes)

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the caller's side: never blocks, never raises --------------------------------

    def send(self, n: Notification, *, to: Iterable[str] | None = None) -> None:
        """Queue ``n`` for every notifier (or those named in ``to``) and return at once."""
        try:
            self._enqueue(n, to)
        except Exception as exc:  # noqa: BLE001 - the acknowledgement path must go on
            log.error("notification not queued", eventid=n.eventid, error=type(exc).__name__)

    def _enqueue(self, n: Notification, to: Iterable[str] | None) -> None:
        wanted = list(self._lanes) if to is None else list(dict.fromkeys(to))
        unknown = [name for name in wanted if name not in self._lanes]
        if unknown:
            log.warning("no such notifier", notifiers=unknown, eventid=n.eventid)
        lanes = [self._lanes[name] for name in wanted if name in self._lanes]
        if not lanes:
            return
        clean = n.redacted(self._redact)  # before it is queued: nothing raw waits in memory
        pushed_out: list[tuple[str, int]] = []
        with self._cond:
            for lane in lanes:
                if self._closing:
                    lane.dropped += 1
                    pushed_out.append((lane.notifier.name, n.eventid))
                    continue
                if len(lane.items) >= self._queue_size:
                    old = lane.items.popleft()
                    lane.dropped += 1
                    pushed_out.append((lane.notifier.name, old.eventid))
                lane.items.append(clean)
                if lane.thread is None:
                    lane.thread = threading.Thread(target=self._work, args=(lane,), daemon=True,
                                                   name=f"hefestus-notify-{lane.notifier.name}")
                    lane.thread.start()
            self._cond.notify_all()
        for name, eventid in pushed_out:
            log.warning("notification dropped", notifier=name, eventid=eventid,
                        why="shutting down" if self._closing else "queue full")

    def stats(self) -> dict[str, NotifierStats]:
        with self._cond:
            return {name: NotifierStats(sent=lane.sent, failed=lane.failed, dropped=lane.dropped,
                                        retries=lane.retries, queued=len(lane.items),
                                        failed_by_reason=dict(lane.reasons))
                    for name, lane in self._lanes.items()}

    def flush(self, timeout: float) -> bool:
        """Wait until every queue is empty and nothing is being sent; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while any(lane.items or lane.busy for lane in self._lanes.values()):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 5.0) -> bool:
        """Stop taking notifications, give the queues ``timeout`` seconds to drain,
        then abandon the rest (counted as dropped). A request in flight still
        ends at its own HTTP timeout: the threads are daemons and never hold up exit."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        drained = self.flush(timeout)
        self._abort.set()
        with self._cond:
            for lane in self._lanes.values():
                lane.dropped += len(lane.items)
                lane.items.clear()
            self._cond.notify_all()
        for lane in self._lanes.values():
            if lane.thread is not None:
                lane.thread.join(timeout=0.5)
        return drained

    # -- the worker's side ------------------------------------------------------------

    def _interruptible_sleep(self, seconds: float) -> None:
        if self._abort.wait(seconds):
            raise _Aborted()

    def _work(self, lane: _Lane) -> None:
        while True:
            with self._cond:
                while not lane.items and not self._closing:
                    self._cond.wait()
                if self._abort.is_set() or not lane.items:
                    lane.dropped += len(lane.items)
                    lane.items.clear()
                    self._cond.notify_all()
                    return
                n = lane.items.popleft()
                lane.busy = True
            try:
                self._deliver(lane, n)
            finally:
                with self._cond:
                    lane.busy = False
                    self._cond.notify_all()

    def _wait(self, rs: RetryCallState) -> float:
        wait = min(self._backoff * 2.0 ** (rs.attempt_number - 1), self._max_backoff)
        exc = rs.outcome.exception() if rs.outcome is not None else None
        if isinstance(exc, NotifyError) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)  # sooner only earns another 429
        return wait

    def _deliver(self, lane: _Lane, n: Notification) -> None:
        name = lane.notifier.name

        def before_sleep(rs: RetryCallState) -> None:
            exc = rs.outcome.exception() if rs.outcome is not None else None
            with self._cond:
                lane.retries += 1
            log.info("notification failed, retrying", notifier=name, eventid=n.eventid,
                     attempt=rs.attempt_number, wait=round(rs.upcoming_sleep, 2),
                     error=self._redact(str(exc)))

        retrying = Retrying(
            retry=retry_if_exception(_is_transient),
            stop=stop_after_attempt(self._attempts) | stop_before_delay(self._max_elapsed),
            wait=self._wait, sleep=self._sleep, before_sleep=before_sleep, reraise=True)
        reason: str
        try:
            retrying(lane.notifier.send, n)
        except NotifyError as exc:
            reason, error = exc.reason, str(exc)
        except _Aborted:
            reason, error = "shutdown", "abandoned at shutdown while waiting to retry"
        except Exception as exc:  # noqa: BLE001 - a notifier bug must not kill its worker
            reason, error = "bug", f"{type(exc).__name__} in {name} notifier"
            log.error("notifier raised an unexpected exception", notifier=name,
                      eventid=n.eventid, error=type(exc).__name__)
        else:
            with self._cond:
                lane.sent += 1
            log.debug("notification sent", notifier=name, eventid=n.eventid)
            return
        with self._cond:
            lane.failed += 1
            lane.reasons[reason] += 1
        log.warning("notification not delivered", notifier=name, eventid=n.eventid,
                    reason=reason, error=self._redact(error))
