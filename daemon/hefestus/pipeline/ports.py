"""The small interfaces core code depends on; adapters and test fakes implement them.

Only :mod:`hefestus.app.build` wires real adapters in, so the pipeline can be driven
by :mod:`hefestus.testing` fakes or by the real Zabbix with no patching. The stages
after classification are ports too, so the cycle names every step it takes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from hefestus.pipeline.plan import Planned
from hefestus.remediation.decision import Decision
from hefestus.state.unclassified import Sighting
from hefestus.values import (
    Classification,
    EventFilter,
    ModelReply,
    ModelRequest,
    Problem,
    Suggestion,
)

#: ``event_ids(eventid_till=OPEN_END)``: no upper bound (Zabbix's largest id).
OPEN_END = 2**63 - 1
#: An open-ended ``event_ids`` listing may stop after this many ids (the lowest ones); the
#: cycle then pages through what is left instead of taking the listing as complete.
LISTING_LIMIT = 100_000


class EventSource(Protocol):
    def group_ids(self, names: Sequence[str]) -> tuple[str, ...]: ...

    def latest_event_id(self) -> int: ...

    def first_event_id_since(self, clock: int) -> int | None: ...

    def event_ids(self, flt: EventFilter, *, eventid_from: int, eventid_till: int) -> list[int]:
        """Ids only, ascending; ``eventid_till=OPEN_END`` lists up to LISTING_LIMIT ids."""
        ...

    def events(self, flt: EventFilter, *, eventid_from: int | None = None,
               eventids: Sequence[int] | None = None, limit: int | None = None) -> list[Problem]: ...


class Acknowledger(Protocol):
    def acknowledge(self, eventids: Sequence[int], message: str, *, action: int) -> None: ...


class Zabbix(EventSource, Acknowledger, Protocol):
    """What the pipeline needs from Zabbix: read problems, write messages."""


class LanguageModel(Protocol):
    """A model server: the Ollama adapter, or a fake in tests."""

    def chat(self, request: ModelRequest) -> ModelReply:
        """Raises ModelUnavailable, ModelNotFound or ModelError; never hangs past request.timeout."""
        ...

    def models(self) -> list[str]:
        """Names of the models the server has (raises ModelUnavailable when it is down)."""
        ...


class Analysis(Protocol):
    """The analysis stage (:class:`hefestus.analysis.analyzer.Analyzer`): suggestions in groups,
    each as soon as it is ready (one model call per fingerprint)."""

    def suggest_groups(self, items: Sequence[tuple[Problem, Classification]], *,
                       remember: bool = True) -> Iterator[list[tuple[int, Suggestion]]]: ...


class Remediation(Protocol):
    """The self-healing stage (:class:`hefestus.remediation.remediator.Remediator`)."""

    def plan(self, problem: Problem, classification: Classification, *,
             persist: bool = True) -> Decision | None:
        """Decide and claim (persisted before the first message says it); None: nothing to say."""
        ...

    def execute(self, decision: Decision) -> None:
        """After the message was written: hand a claimed run to a worker; never blocks."""
        ...

    def release(self, eventid: int, why: str) -> bool:
        """The message could never be written: give up the claim."""
        ...


class AfterWrite(Protocol):
    """One handler run after Zabbix stored a batch's message, in the order the composition
    root lists them. It must not block (slow work goes to its own worker); an exception is
    logged and the next handler still runs: the message is written either way."""

    name: str

    def __call__(self, written: Sequence[Planned]) -> None: ...


class UnclassifiedLog(Protocol):
    """Where the pipeline records the events no pattern matched, for ``hefestus unclassified``
    (:class:`hefestus.state.UnclassifiedKinds`). The pipeline logs its errors and goes on."""

    def record(self, sightings: Sequence[Sighting]) -> None: ...

    def prune(self, older_than_days: int) -> int: ...
