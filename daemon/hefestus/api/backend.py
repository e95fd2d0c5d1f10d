"""What the HTTP API sees of the daemon: the live dictionaries, the analysis stage,
and the last known health of each dependency.

Probes call ``readiness`` every few seconds, so it answers from remembered
state: the outcome of the last Zabbix poll, and a model check cached for
:data:`MODEL_CHECK_TTL` seconds (it calls ``/api/tags``).

Every answer is redacted like everything else that leaves the process (the CLI,
Zabbix, chat): an error text posted by a CI job is as full of tokens as a log.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace

from hefestus.analysis.analyzer import Analyzer
from hefestus.classify.knowledge import Knowledge
from hefestus.values import ItemValue, Problem, Severity, Suggestion

MODEL_CHECK_TTL = 30.0


class HealthBoard:
    """component -> (ok, detail, when), written by whoever last talked to it."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._state: dict[str, tuple[bool, str, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def set(self, component: str, ok: bool, detail: str) -> None:
        with self._lock:
            self._state[component] = (ok, detail, self._clock())

    def get(self, component: str) -> tuple[bool, str, float] | None:
        with self._lock:
            return self._state.get(component)

    def snapshot(self) -> dict[str, tuple[bool, str]]:
        with self._lock:
            return {k: (ok, detail) for k, (ok, detail, _) in self._state.items()}


def problem_from_text(error_details: str, context: str = "") -> Problem:
    """A bare error text (CLI, API) as the pipeline's Problem: no host, no tags."""
    name = next((ln.strip() for ln in error_details.splitlines() if ln.strip()), "error")[:200]
    items = [ItemValue("error details", "api", error_details)]
    if context.strip():
        items.append(ItemValue("context", "api", context))
    return Problem(eventid=0, clock=int(time.time()), name=name, severity=Severity.NOT_CLASSIFIED,
                   items=tuple(items))


def redacted(s: Suggestion, redact: Callable[[str], str]) -> Suggestion:
    """``s`` with every text a reader gets (cause, steps, note, excerpt, captured values)
    passed through ``redact``: field by field, before anything serialises it."""
    c = s.classification
    clean = replace(c, matched_text=redact(c.matched_text), cause=redact(c.cause), note=redact(c.note),
                    solutions=tuple(redact(x) for x in c.solutions),
                    groups={k: redact(v) for k, v in c.groups.items()})
    return replace(s, classification=clean, cause=redact(s.cause), steps=tuple(redact(x) for x in s.steps),
                   note=redact(s.note))


class ApiBackend:
    """:class:`hefestus.api.app.ApiService` over the running daemon's parts."""

    def __init__(self, knowledge: Callable[[], Knowledge], analyzer: Analyzer, health: HealthBoard, *,
                 redact: Callable[[str], str],
                 model_check: Callable[[], tuple[bool, str]] | None = None,
                 wake: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._knowledge = knowledge
        self._redact = redact
        self._analyzer = analyzer
        self._health = health
        self._model_check = model_check
        self._wake = wake
        self._clock = clock

    def domains(self) -> dict[str, str]:
        catalog = self._knowledge().catalog
        return {d: catalog[d].description for d in catalog.domains}

    def analyze(self, domain: str, error_details: str, context: str) -> Suggestion:
        c = self._knowledge().analyze(error_details, domain)
        return redacted(self._analyzer.suggest([(problem_from_text(error_details, context), c)])[0], self._redact)

    def push(self, eventid: int) -> bool:
        if self._wake is None:
            return False
        self._wake()
        return True

    def readiness(self) -> dict[str, tuple[bool, str]]:
        if self._model_check is not None:
            last = self._health.get("model")
            if last is None or self._clock() - last[2] > MODEL_CHECK_TTL:
                ok, detail = self._model_check()
                self._health.set("model", ok, detail)
        state = self._health.snapshot()
        state.setdefault("zabbix", (False, "no poll yet"))
        return state
