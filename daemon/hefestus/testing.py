"""Small fakes and builders for tests (ours and yours).

* :func:`problem` builds a :class:`~hefestus.values.Problem` with sane defaults.
* :class:`FakeZabbix` implements the pipeline's ports in memory, including
  Zabbix's quirks that matter for exactly-once: ids that become visible late,
  outages, messages that stick to events, each with its author (only
  Hefestus's own user's marker counts; anyone can type "[Hefestus]"), and the
  cause/symptom ranks of Zabbix 6.4+.

The lab for a real Zabbix, the fake servers and the other test helpers live in
``tests/support/``: they are not shipped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from hefestus.errors import ZabbixRejected, ZabbixUnavailable
from hefestus.values import Ack, EventFilter, ItemValue, Problem, Severity


def problem(eventid: int = 1, name: str = "Problem", *, text: str = "", host: str = "host-1",
            groups: Sequence[str] = ("Linux servers",), severity: Severity = Severity.AVERAGE,
            tags: Sequence[tuple[str, str]] = (), clock: int | None = None, **kw: Any) -> Problem:
    items = (ItemValue("log", "log", text),) if text else ()
    return Problem(eventid=eventid, clock=clock or int(time.time()), name=name, severity=severity,
                   hosts=(host,), host_groups=tuple(groups), tags=tuple(tags), items=items, **kw)


@dataclass
class FakeZabbix:
    """In-memory Zabbix: ``visible`` events are what event.get returns right now.

    ``acks`` holds what Hefestus (user ``userid``) wrote; ``comments`` what other users
    wrote, as (userid, message); ``hefestus_users`` are other Hefestus instances.
    """

    visible: dict[int, Problem] = field(default_factory=dict)
    acks: dict[int, list[str]] = field(default_factory=dict)
    comments: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    userid: str = "90"
    hefestus_users: frozenset[str] = frozenset()
    calls: list[tuple[str, Any]] = field(default_factory=list)
    down: bool = False
    refuse: set[int] = field(default_factory=set)
    latest: int = 0
    #: Zabbix 6.4+ ranks: symptom event id -> its cause's event id (see :meth:`rank`).
    causes: dict[int, int] = field(default_factory=dict)

    def add(self, *problems: Problem) -> None:
        for p in problems:
            self.visible[p.eventid] = p
            self.latest = max(self.latest, p.eventid)

    def _check(self, method: str, arg: Any = None) -> None:
        self.calls.append((method, arg))
        if self.down:
            raise ZabbixUnavailable(f"{method}: cannot connect (fake outage)")

    def comment(self, eventid: int, message: str, *, userid: str = "7") -> None:
        """Someone else (an operator, by default) writes a message on the event."""
        self.comments.setdefault(eventid, []).append((userid, message))

    def rank(self, symptom: int, cause: int | None) -> None:
        """An operator ranks ``symptom`` as a symptom of ``cause`` (event.acknowledge action
        256), or back to a cause (128) with ``cause=None``."""
        if cause is None:
            self.causes.pop(symptom, None)
        else:
            self.causes[symptom] = cause

    def _view(self, p: Problem) -> Problem:
        ours = {self.userid, *self.hefestus_users}
        written = [(self.userid, m) for m in self.acks.get(p.eventid, [])]
        cause = self.causes.get(p.eventid, 0)
        known = self.visible.get(cause)
        return replace(p, acks=tuple(Ack(u, m, u in ours) for u, m in self.comments.get(p.eventid, []) + written),
                       cause_eventid=cause, cause_host=known.host if known else "",
                       cause_name=known.name if known else "")

    def group_ids(self, names: Sequence[str]) -> tuple[str, ...]:
        self._check("group_ids", tuple(names))
        return tuple(names)

    def latest_event_id(self) -> int:
        self._check("latest_event_id")
        return self.latest

    def first_event_id_since(self, clock: int) -> int | None:
        self._check("first_event_id_since", clock)
        ids = [i for i, p in self.visible.items() if p.clock >= clock]
        return min(ids) if ids else None

    def event_ids(self, flt: EventFilter, *, eventid_from: int, eventid_till: int) -> list[int]:
        self._check("event_ids", (eventid_from, eventid_till))
        return sorted(i for i in self.visible if eventid_from <= i <= eventid_till)

    def events(self, flt: EventFilter, *, eventid_from: int | None = None,
               eventids: Sequence[int] | None = None, limit: int | None = None) -> list[Problem]:
        self._check("events", (eventid_from, tuple(eventids or ()), limit))
        ids = sorted(self.visible)
        if eventids is not None:
            ids = [i for i in ids if i in set(eventids)]
        if eventid_from is not None:
            ids = [i for i in ids if i >= eventid_from]
        ids = [i for i in ids if self.visible[i].severity >= flt.min_severity]
        return [self._view(self.visible[i]) for i in ids[:limit]]

    def resolve(self, *eventids: int) -> None:
        """The problems recover (Zabbix sets their r_eventid)."""
        for e in eventids:
            self.visible[e] = replace(self.visible[e], resolved=True)

    def problem_resolved(self, eventid: int) -> bool:
        self._check("problem_resolved", eventid)
        if eventid not in self.visible:
            raise ZabbixRejected(f"event.get: event {eventid} does not exist or is not readable")
        return self.visible[eventid].resolved

    def acknowledge(self, eventids: Sequence[int], message: str, *, action: int) -> None:
        self._check("acknowledge", (tuple(eventids), action))
        bad = [e for e in eventids if e in self.refuse or e not in self.visible]
        if bad:
            raise ZabbixRejected("No permissions to referred object or it does not exist!", code=-32500)
        if len(message) > 2048:
            raise ZabbixRejected('Invalid parameter "/1/message": value is too long.', code=-32602)
        for e in eventids:
            self.acks.setdefault(e, []).append(message)
