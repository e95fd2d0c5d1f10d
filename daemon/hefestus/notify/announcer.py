"""Events whose message was written (and remediation outcomes) turned into notifications,
routed by the ``[[notify]]`` rules (:mod:`hefestus.notify.rules`).

Every matching rule adds its targets, so one event is sent once to each notifier at
most. Sending goes through :class:`hefestus.notify.dispatcher.Dispatcher`, which never
blocks the caller.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, Protocol

from hefestus.notify.message import Notification, zabbix_event_url
from hefestus.notify.rules import NotifyRules
from hefestus.values import Outcome, Problem, Suggestion

Moment = Literal["acknowledged", "remediation"]
class Sender(Protocol):
    def send(self, n: Notification, *, to: Iterable[str] | None = None) -> None: ...


class Announcer:
    """Turns written acknowledgements (and remediation outcomes) into notifications."""

    #: Events remembered for their remediation outcome (which arrives minutes later).
    REMEMBER = 10_000

    def __init__(self, sender: Sender, rules: Callable[[], NotifyRules], *, configured: Sequence[str],
                 frontend_url: str | None) -> None:
        self._sender = sender
        self._rules = rules
        self._configured = set(configured)
        self._frontend = frontend_url
        self._recent: OrderedDict[int, tuple[Problem, Suggestion]] = OrderedDict()
        self._lock = threading.Lock()

    def remember(self, problem: Problem, s: Suggestion) -> None:
        with self._lock:
            self._recent[problem.eventid] = (problem, s)
            self._recent.move_to_end(problem.eventid)
            while len(self._recent) > self.REMEMBER:
                self._recent.popitem(last=False)

    def acknowledged(self, problem: Problem, s: Suggestion) -> list[str]:
        """Hefestus's message is on the event: announce it, and remember the event for the
        remediation outcome that may follow."""
        self.remember(problem, s)
        return self.announce(problem, s)

    def remediation_outcome(self, o: Outcome) -> None:
        """The remediation engine's ``on_outcome``."""
        job = f"Rundeck job '{o.job_name}' ({o.project})" if o.job_name else f"rule {o.rule!r}"
        self.outcome(o.eventid, o.result, f"{job} {o.permalink}".strip())

    def outcome(self, eventid: int, result: str, line: str) -> list[str]:
        """A remediation ended: tell whoever [[notify]] says hears about "remediation"."""
        with self._lock:
            known = self._recent.get(eventid)
        if known is None:  # e.g. a run followed after a restart: nothing to route it by
            return []
        problem, s = known
        return self.announce(problem, s, moment="remediation", remediation=f"{result}: {line}")

    def _url(self, p: Problem) -> str | None:
        if not self._frontend or p.triggerid <= 0 or p.eventid <= 0:
            return None
        try:
            return zabbix_event_url(self._frontend, p.eventid, p.triggerid)
        except ValueError:
            return None

    def announce(self, problem: Problem, s: Suggestion, *, moment: str = "acknowledged",
                 remediation: str | None = None) -> list[str]:
        """Queue the notification for every matching target; returns the targets (for tests and logs)."""
        c = s.classification
        to = [t for t in self._rules().targets(c.domain, problem.severity, moment) if t in self._configured]
        if not to:
            return []
        n = Notification(eventid=problem.eventid, host=problem.host, problem=problem.name,
                         severity=problem.severity.label, domain=c.domain, category=c.category,
                         cause=s.cause, steps=s.steps, source=s.source, confidence=s.verified_confidence,
                         note=s.note, remediation=remediation, event_url=self._url(problem),
                         clock=problem.clock)
        self._sender.send(n, to=to)
        return to
