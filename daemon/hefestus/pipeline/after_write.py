"""The handlers that run once Zabbix stored a batch's message, as the composition root
(:func:`hefestus.app.build.build`) lists them:

1. :class:`HandOffRemediation`: a claimed run goes to the remediation engine's workers
   (the message says "running ..."; the outcome is a second message);
2. :class:`Announce`: Slack and Teams, per the ``[[notify]]`` rules.

Each must not block: the work behind it has its own queue and threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import structlog

from hefestus.pipeline.plan import Planned
from hefestus.pipeline.ports import Remediation
from hefestus.values import Problem, Suggestion

log = structlog.get_logger("hefestus.pipeline")


class HandOffRemediation:
    name = "remediation"

    def __init__(self, remediation: Remediation) -> None:
        self._remediation = remediation

    def __call__(self, written: Sequence[Planned]) -> None:
        for p in written:
            if p.decision is None:
                continue
            try:
                self._remediation.execute(p.decision)
            except Exception as exc:  # noqa: BLE001 - the message is written; a claim resumes at start
                log.error("remediation hand-off failed", eventid=p.problem.eventid, error=str(exc))


class Announcing(Protocol):
    """:class:`hefestus.notify.announcer.Announcer`."""

    def acknowledged(self, problem: Problem, suggestion: Suggestion) -> list[str]: ...


class Announce:
    name = "notifications"

    def __init__(self, announcer: Announcing) -> None:
        self._announcer = announcer

    def __call__(self, written: Sequence[Planned]) -> None:
        for p in written:
            if p.suggestion is not None:
                self._announcer.acknowledged(p.problem, p.suggestion)
