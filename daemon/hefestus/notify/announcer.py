"""Who hears about what: ``[[notify]]`` rules, and events turned into notifications.

Notifications are routed by rules in ``rules/*.toml``, next to the routing
and remediation rules ops already edit::

    [[notify]]
    name = "high-and-above"
    to = ["slack", "teams"]        # notifiers; ones without a webhook URL are ignored
    domains = ["kubernetes"]       # empty or absent: every domain
    min_severity = "high"
    on = ["acknowledged", "remediation"]   # the first message, and/or remediation outcomes

Every matching rule adds its targets, so one event is sent once to each
notifier at most. Matching is pure; sending goes through
:class:`hefestus.notify.dispatcher.Dispatcher`, which never blocks the caller.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Protocol

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from hefestus import tomlfile
from hefestus.classify.routing import parse_severity
from hefestus.errors import ConfigError
from hefestus.notify.dispatcher import Notification, zabbix_event_url
from hefestus.values import Problem, Severity, Suggestion

Moment = Literal["acknowledged", "remediation"]
NOTIFIERS = ("slack", "teams")


class NotifySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$", max_length=100)]
    to: Annotated[list[Literal["slack", "teams"]], Field(min_length=1)]
    domains: list[str] = []
    min_severity: Severity = Severity.NOT_CLASSIFIED
    on: Annotated[list[Moment], Field(min_length=1)] = ["acknowledged", "remediation"]

    _severity = field_validator("min_severity", mode="before")(classmethod(
        lambda cls, v: parse_severity(v)))


@dataclass(frozen=True, slots=True)
class NotifyRule:
    name: str
    to: tuple[str, ...]
    domains: frozenset[str]
    min_severity: Severity
    on: frozenset[str]
    origin: str

    def targets(self, domain: str, severity: Severity, moment: str) -> tuple[str, ...]:
        if moment not in self.on or severity < self.min_severity:
            return ()
        if self.domains and domain not in self.domains:
            return ()
        return self.to


@dataclass(frozen=True, slots=True)
class NotifyRules:
    rules: tuple[NotifyRule, ...] = ()

    def targets(self, domain: str, severity: Severity, moment: str) -> list[str]:
        out: dict[str, None] = {}
        for rule in self.rules:
            out.update(dict.fromkeys(rule.targets(domain, severity, moment)))
        return list(out)


def load_notify_rules(directory: Path, *, domains: Iterable[str]) -> NotifyRules:
    """The ``[[notify]]`` tables of ``directory/*.toml``, validated with file and line."""
    known = set(domains)
    rules: list[NotifyRule] = []
    for path in sorted(directory.glob("*.toml")):
        data, text = tomlfile.load(path)
        raw = data.get("notify", [])
        if not isinstance(raw, list):
            raise ConfigError("notify must be an array of tables: write [[notify]]", path=str(path),
                              line=tomlfile.locate(text, ("notify",)))
        for i, item in enumerate(raw):
            try:
                spec = NotifySpec.model_validate(item)
            except pydantic.ValidationError as exc:
                raise tomlfile.validation_error(exc, path=path, text=text, prefix=("notify", i)) from None
            line = tomlfile.locate(text, ("notify", i))
            unknown = [d for d in spec.domains if d not in known]
            if unknown:
                raise ConfigError(f"notify {spec.name!r}: unknown domain {unknown[0]!r} "
                                  f"(dictionaries: {', '.join(sorted(known))})", path=str(path), line=line)
            rules.append(NotifyRule(spec.name, tuple(dict.fromkeys(spec.to)), frozenset(spec.domains),
                                    spec.min_severity, frozenset(spec.on), f"{path}:{line}"))
    return NotifyRules(tuple(rules))


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
                         cause=s.cause, steps=s.steps, source=s.source, confidence=s.confidence,
                         note=s.note, remediation=remediation, event_url=self._url(problem),
                         clock=problem.clock)
        self._sender.send(n, to=to)
        return to
