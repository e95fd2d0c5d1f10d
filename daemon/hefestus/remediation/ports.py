"""The small interfaces self-healing depends on, and the Rundeck values they carry.

:class:`hefestus.adapters.rundeck.RundeckClient` is a :class:`JobRunner`,
:class:`hefestus.adapters.zabbix.ZabbixClient` a :class:`RecoveryZabbix`; tests pass
the real client against FakeRundeck, and :class:`hefestus.testing.FakeZabbix`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from hefestus.pipeline.ports import Acknowledger

LogLevel = Literal["DEBUG", "VERBOSE", "INFO", "WARN", "ERROR"]

#: Statuses after which an execution can still change. Everything else is final:
#: Rundeck may report ``aborted`` before ``date-ended`` appears.
NOT_FINAL = frozenset({"running", "scheduled", "queued"})

# -- Rundeck's values, as self-healing sees them -------------------------------------

@dataclass(frozen=True)
class SystemInfo:
    version: str
    #: The server's *current* API version: the highest ``api_version`` it accepts.
    api_version: int
    node: str = ""
    #: "active", or "passive": then every run fails with api.error.execution.failed.
    execution_mode: str = ""

@dataclass(frozen=True)
class JobInfo:
    id: str
    name: str
    group: str
    project: str
    enabled: bool
    permalink: str
    #: False when the whole project has executions disabled (5.x+ reports it).
    project_executions_enabled: bool = True

    @property
    def full_name(self) -> str:
        return f"{self.group}/{self.name}" if self.group else self.name

@dataclass(frozen=True)
class Execution:
    id: int
    status: str
    project: str
    permalink: str
    href: str
    job_id: str | None
    job_name: str | None
    #: Unix time in milliseconds; ``date_ended_ms`` is None until it finishes.
    date_started_ms: int | None
    date_ended_ms: int | None
    argstring: str = ""
    user: str = ""
    failed_nodes: tuple[str, ...] = ()

    @property
    def final(self) -> bool:
        return self.status not in NOT_FINAL

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


class JobRunner(Protocol):
    """What self-healing needs from Rundeck (:class:`hefestus.adapters.rundeck.RundeckClient`)."""

    def run_job(self, job_id: str, options: Mapping[str, str], *, loglevel: LogLevel | None = None,
                node_filter: str | None = None) -> Execution: ...

    def execution(self, exec_id: int, *, just_started: bool = False) -> Execution: ...

    def output_tail(self, exec_id: int, lines: int = 20) -> list[str]: ...

    def abort(self, exec_id: int) -> str: ...


class RecoveryZabbix(Acknowledger, Protocol):
    """Write the outcome; tell whether the problem recovered (the closed loop)."""

    def problem_resolved(self, eventid: int) -> bool: ...
