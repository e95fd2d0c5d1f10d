"""Telling people how a remediation ended: the outcome message in Zabbix, then notifiers.

The outcome text is persisted on the row (``outcome_state = "pending"``) before
it is written, so an outcome Zabbix could not take now is written later, or at
the next start (:meth:`hefestus.remediation.engine.Engine.resume`): a run never
ends without operators reading how.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Protocol, Unpack

import structlog

from hefestus.errors import HefestusError, ZabbixUnavailable
from hefestus.remediation.ports import RecoveryZabbix
from hefestus.remediation.workers import Workers
from hefestus.state.remediations import RecordChanges, RemediationRecord, RemediationRecords
from hefestus.values import Outcome

log = structlog.get_logger("hefestus.remediation")

#: Outcome writes tried while Zabbix is unavailable, before leaving it to the next start.
WRITE_ATTEMPTS = 5


class Update(Protocol):
    def __call__(self, eventid: int, **changes: Unpack[RecordChanges]) -> RemediationRecord: ...


class Audit(Protocol):
    def __call__(self, rec: RemediationRecord | None, action: str, detail: str) -> None: ...


class OutcomeReporter:
    def __init__(self, zabbix: RecoveryZabbix, records: RemediationRecords, work: Workers, *,
                 update: Update, audit: Audit,
                 on_outcome: Callable[[Outcome], None] | None, ack_action: int,
                 retry_after: float) -> None:
        self._zbx = zabbix
        self._records = records
        self._work = work
        self._update = update
        self._audit = audit
        self._on_outcome = on_outcome
        self._ack_action = ack_action
        self._retry_after = retry_after

    def write(self, eventid: int, attempt: int = 1) -> None:
        """Write the row's pending outcome to the event; Zabbix down: again later, up to
        :data:`WRITE_ATTEMPTS`; Zabbix refusing it: say so in the audit and stop."""
        rec = self._records.remediation(eventid)
        if rec is None or rec.outcome_state != "pending":
            return
        try:
            self._zbx.acknowledge([eventid], rec.outcome, action=self._ack_action)
        except ZabbixUnavailable as exc:
            if attempt >= WRITE_ATTEMPTS:
                log.error("remediation outcome not written yet; next start tries again",
                          eventid=eventid, error=str(exc))
                return
            self._work.later(self._retry_after * attempt, partial(self.write, eventid, attempt + 1))
            return
        except HefestusError as exc:  # refused (event gone, no permission, too long): say so, stop
            self._update(eventid, outcome_state="failed")
            log.error("zabbix refused the remediation outcome", eventid=eventid, error=str(exc))
            self._audit(rec, "not-written", f"zabbix refused the outcome message: {exc}")
            return
        self._update(eventid, outcome_state="written")

    def notify(self, rec: RemediationRecord, text: str) -> None:
        """Hand the outcome to the notifiers (Slack, Teams); they must not undo anything."""
        if self._on_outcome is None:
            return
        try:
            self._on_outcome(Outcome(rec.eventid, rec.host, rec.rule, rec.job_name, rec.project,
                                     rec.result, text, rec.permalink, rec.exec_id))
        except Exception as exc:  # noqa: BLE001 - a notifier must not undo a remediation
            log.error("remediation outcome callback failed", eventid=rec.eventid, error=str(exc))
