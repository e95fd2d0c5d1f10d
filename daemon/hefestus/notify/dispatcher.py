"""Chat notifications (Slack, Teams): what is sent, and a dispatcher that never blocks.

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

This module imports no HTTP client; the helpers below (:func:`fit`,
:func:`scrub`, :func:`http_failure`, :func:`retry_after_seconds`) are shared
by the adapters so both cut, classify and hide the webhook URL the same way.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

import structlog
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
)

from hefestus.errors import HefestusError

log = structlog.get_logger("hefestus.notify.dispatcher")

Reason = Literal["rate-limited", "server-error", "client-error", "timeout", "connection",
                 "invalid-answer"]

#: What a cut text ends with, so a reader knows there was more.
ELLIPSIS = "…"
#: Stands in for the webhook URL (or any part of it) in messages and logs.
HIDDEN_URL = "<webhook-url>"


# -- what is sent -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Notification:
    """One analysed problem, as a chat message shows it.

    Built by the pipeline from the Problem and the Suggestion; adapters turn it
    into their service's payload and add nothing that is not in here.
    """

    eventid: int
    host: str
    problem: str
    #: Zabbix severity label: "disaster", "high", "average", "warning", "information",
    #: "not classified".
    severity: str
    domain: str
    category: str | None
    cause: str
    steps: tuple[str, ...]
    #: Where the answer came from: "pattern linux:disk-full", "model llama3.1:8b", ...
    source: str
    #: 0.0 to 1.0.
    confidence: float
    note: str = ""
    #: One line on what was done about it: "Rundeck job 'restart nginx' succeeded in 12 s".
    remediation: str | None = None
    #: Link to the event in the Zabbix UI (:func:`zabbix_event_url`).
    event_url: str | None = None
    #: Unix time of the problem event; 0 when unknown.
    clock: int = 0

    @property
    def title(self) -> str:
        """``High on web1: Nginx is down``: the one line a phone notification shows."""
        severity = (self.severity or "problem").strip().capitalize()
        if not self.host:
            return f"{severity}: {self.problem}"
        return f"{severity} on {self.host}: {self.problem}"

    def redacted(self, redact: Callable[[str], str]) -> Notification:
        """A copy with every text field passed through ``redact`` (the URL too:
        a frontend URL may carry ``user:password@``)."""
        return replace(
            self, host=redact(self.host), problem=redact(self.problem),
            severity=redact(self.severity), domain=redact(self.domain),
            category=None if self.category is None else redact(self.category),
            cause=redact(self.cause), steps=tuple(redact(s) for s in self.steps),
            source=redact(self.source), note=redact(self.note),
            remediation=None if self.remediation is None else redact(self.remediation),
            event_url=None if self.event_url is None else redact(self.event_url))


def zabbix_event_url(frontend_url: str, eventid: int, triggerid: int) -> str:
    """The event's page in the Zabbix frontend (6.0 through 7.x): ``tr_events.php``.

    It is the page Zabbix's own Slack/Teams media types link to
    (``{$ZABBIX.URL}/tr_events.php?triggerid={TRIGGER.ID}&eventid={EVENT.ID}``);
    it needs both ids, since it shows the event within its trigger's history.
    ``frontend_url`` is what users type to reach the UI (``https://zbx.example.com/zabbix``);
    a trailing ``/`` or ``/zabbix.php`` / ``/index.php`` is dropped.
    """
    base = frontend_url.strip()
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {base!r}")
    if parts.query or parts.fragment:
        raise ValueError("give the frontend's base URL, without ?query or #fragment")
    path = parts.path.rstrip("/")
    if path.endswith(".php"):
        path = path.rsplit("/", 1)[0]
    if int(eventid) <= 0 or int(triggerid) <= 0:
        raise ValueError("eventid and triggerid must be positive")
    query = urlencode({"triggerid": int(triggerid), "eventid": int(eventid)})
    return f"{parts.scheme}://{parts.netloc}{path}/tr_events.php?{query}"


# -- what goes wrong ----------------------------------------------------------------

class NotifyError(HefestusError):
    """A notifier could not deliver. Never carries the webhook URL.

    ``transient``: the same message may get through later (rate limit, 5xx,
    timeout); the dispatcher retries those only. ``reason`` is one of
    :data:`Reason`, for metrics. ``code`` is the service's own error word
    (Slack's ``channel_is_archived``), ``retry_after`` the seconds the service
    asked us to wait.
    """

    def __init__(self, message: str, *, transient: bool, reason: Reason, status: int | None = None,
                 code: str | None = None, retry_after: float | None = None) -> None:
        self.transient = transient
        self.reason = reason
        self.status = status
        self.code = code
        self.retry_after = retry_after
        super().__init__(message)


class Notifier(Protocol):
    """One chat destination. ``send`` posts one (already redacted) notification,
    once, and raises :class:`NotifyError` on any failure; retrying is not its job."""

    name: str

    def send(self, n: Notification) -> None: ...


# -- helpers shared by the adapters -------------------------------------------------

def text_length(text: str) -> int:
    """Length in UTF-16 code units, the way JavaScript (and so the services'
    limits, as far as we can tell) counts: an emoji counts two. Never under-counts."""
    return len(text.encode("utf-16-le")) // 2


def fit(text: str, limit: int, *, escape: Callable[[str], str] | None = None) -> str:
    """``escape(text)``, cut so it is at most ``limit`` long and ends with ``…`` when cut.

    The cut is made on the raw text before escaping, so an entity (``&amp;``)
    is never split in half.
    """
    esc = escape or (lambda s: s)
    out = esc(text)
    if text_length(out) <= limit:
        return out
    if limit <= len(ELLIPSIS):
        return ELLIPSIS[:max(limit, 0)]
    raw = text[:limit]  # escaping never shortens, so no more of the raw text can fit
    lo, hi = 0, len(raw)  # the longest prefix raw[:n] whose escaped form still fits
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_length(esc(raw[:mid].rstrip()) + ELLIPSIS) <= limit:
            lo = mid
        else:
            hi = mid - 1
    return esc(raw[:lo].rstrip()) + ELLIPSIS


def url_secrets(url: str) -> tuple[str, ...]:
    """The parts of a webhook URL that must not be shown: all of it, its path
    (the token lives there for Slack and Teams connectors) and its query values
    (``sig=`` for Power Automate), longest first."""
    parts = urlsplit(url)
    found = {url, parts.path if len(parts.path) > 1 else "", parts.query}
    found.update(v for _, v in parse_qsl(parts.query) if len(v) >= 8)
    return tuple(sorted((s for s in found if s), key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced by :data:`HIDDEN_URL`."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, HIDDEN_URL)
    return text


def scrub_exception(exc: BaseException, secrets: Sequence[str]) -> BaseException:
    """Hide the secrets in ``exc`` and the exceptions it chains, in place; returns ``exc``.

    HTTP clients put the URL in their messages (urllib3: ``Max retries exceeded
    with url: /services/T0/B0/XXXX``). We still chain the original
    (``raise NotifyError(...) from scrub_exception(exc, ...)``) for the
    traceback, but its text must not leak the webhook into a log.
    """
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        todo += [e.__cause__, e.__context__, *(a for a in e.args if isinstance(a, BaseException))]
        try:
            e.args = tuple(scrub(str(a), secrets) if not isinstance(a, (int, float)) else a
                           for a in e.args)
        except (TypeError, AttributeError):  # an exception type with read-only args
            continue
    return exc


def http_failure(status: int) -> tuple[bool, Reason]:
    """(transient, reason) for an HTTP status that is not a success."""
    if status == 429:
        return True, "rate-limited"
    if status == 408:
        return True, "timeout"
    if status >= 500:
        return True, "server-error"
    return False, "client-error"


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


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
