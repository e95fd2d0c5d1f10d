"""The values one poll cycle produces: a plan per event, and the cycle's report."""

from __future__ import annotations

from dataclasses import dataclass, field

from hefestus.remediation.decision import Decision
from hefestus.values import Classification, Problem, Suggestion


@dataclass(frozen=True, slots=True)
class Planned:
    """What Hefestus decided for one event (``message`` is None when skipped)."""

    problem: Problem
    classification: Classification | None
    message: str | None
    skip_reason: str = ""
    suggestion: Suggestion | None = None
    #: The self-healing decision, when a rule maps the event's pattern category.
    decision: Decision | None = None


@dataclass(slots=True)
class CycleReport:
    fetched: int = 0
    acknowledged: int = 0
    skipped: int = 0
    already_marked: int = 0
    failed: int = 0
    api_writes: int = 0
    deferred: int = 0
    planned: list[Planned] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in ("fetched", "acknowledged", "skipped", "already_marked",
                                              "failed", "api_writes", "deferred")}
