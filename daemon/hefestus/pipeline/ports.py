"""The small interfaces core code depends on; adapters and test fakes implement them.

Only :mod:`hefestus.app.build` wires real adapters in, so the pipeline can be driven
by :mod:`hefestus.testing` fakes or by the real Zabbix with no patching.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from hefestus.values import EventFilter, ModelReply, ModelRequest, Problem


class EventSource(Protocol):
    def group_ids(self, names: Sequence[str]) -> tuple[str, ...]: ...

    def latest_event_id(self) -> int: ...

    def first_event_id_since(self, clock: int) -> int | None: ...

    def event_ids(self, flt: EventFilter, *, eventid_from: int, eventid_till: int) -> list[int]: ...

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
