"""What self-healing decided for one event: the value that travels through the pipeline.

A :class:`Decision` is made before the first message is rendered (its
``summary`` is the line operators read under the message's header), claimed
(persisted) before that message is written, and handed to the engine after it
was written. Its fields are closed sets, so a stage never has to guess what a
string means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hefestus.remediation.rules import RemediationRule

#: run: the job runs (outcome follows); dry-run: it would run; refused: it must not run
#: (``reason`` says why); already: this event had its one remediation.
Action = Literal["run", "dry-run", "refused", "already"]

#: Why a decision was refused. The first four are fixed by configuration; the last
#: four are limits of :class:`hefestus.remediation.policy.Policy` at the time of asking.
Reason = Literal["off", "not-allowed", "no-rundeck", "placeholder",
                 "breaker", "cooldown", "rate-limit", "concurrency"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What would happen for one event, and why. ``summary`` is one redacted line for Zabbix."""

    action: Action
    summary: str
    eventid: int
    host: str
    rule: RemediationRule
    options: tuple[tuple[str, str], ...] = ()
    node_filter: str | None = None
    #: Set when ``action`` is "refused".
    reason: Reason | None = None
    #: The refusal in words (redacted), as the audit keeps it.
    detail: str = ""
    #: The state store holds this event's remediation row and the audit has the decision:
    #: :meth:`hefestus.remediation.remediator.Remediator.execute` only hands a run on.
    claimed: bool = False
