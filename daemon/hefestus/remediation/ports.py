"""The small interfaces self-healing depends on, and what it hands to notifiers.

:class:`hefestus.adapters.rundeck.RundeckClient` is a :class:`JobRunner`,
:class:`hefestus.adapters.zabbix.ZabbixClient` a :class:`RecoveryZabbix`; tests pass
the real client against FakeRundeck, and :class:`hefestus.testing.FakeZabbix`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hefestus.pipeline.ports import Acknowledger

if TYPE_CHECKING:
    from hefestus.adapters.rundeck import Execution


class JobRunner(Protocol):
    """What self-healing needs from Rundeck (:class:`hefestus.adapters.rundeck.RundeckClient`)."""

    def run_job(self, job_id: str, options: Mapping[str, str], *, loglevel: Any = None,
                node_filter: str | None = None) -> Execution: ...

    def execution(self, exec_id: int, *, just_started: bool = False) -> Execution: ...

    def output_tail(self, exec_id: int, lines: int = 20) -> list[str]: ...

    def abort(self, exec_id: int) -> str: ...


class RecoveryZabbix(Acknowledger, Protocol):
    """Write the outcome; tell whether the problem recovered (the closed loop)."""

    def problem_resolved(self, eventid: int) -> bool: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one remediation ended, for notifiers (``on_outcome``)."""

    eventid: int
    host: str
    rule: str
    job_name: str
    project: str
    #: succeeded, failed, aborted, timedout, ..., unknown, rejected, error, dropped,
    #: refused, recovered, still-open
    result: str
    #: What was written to Zabbix ("" when nothing was: a problem that recovered).
    message: str
    permalink: str = ""
    exec_id: int | None = None
