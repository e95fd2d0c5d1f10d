"""The limits a run must pass, all read from (and kept in) the state store.

* **breaker** per job: after ``breaker_failures`` consecutive failed runs the
  job is not run for ``breaker_reset`` seconds; then one run may try again (a
  failure re-opens it at once, a success closes it);
* **cooldown** per job and host: the same job does not run again for the same
  host within ``cooldown`` seconds;
* **rate**: at most ``max_runs_per_hour`` runs of one job in any rolling hour;
* **concurrency**: at most ``max_concurrent`` runs in flight, all jobs together.

A rule's own ``cooldown`` / ``max_runs_per_hour`` override the defaults. Runs
Rundeck refused, or that were never sent, do not count (``counted`` = 0).
Times are the injected clock's, so tests can move time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from hefestus.config import RemediationSettings
from hefestus.remediation.decision import Reason
from hefestus.remediation.rules import RemediationRule
from hefestus.state.remediations import RemediationRecords


def when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


@dataclass(frozen=True, slots=True)
class Refusal:
    code: Reason
    text: str


class Policy:
    def __init__(self, settings: RemediationSettings, records: RemediationRecords, clock: Callable[[], float]) -> None:
        self._s = settings
        self._records = records
        self._clock = clock

    def cooldown(self, rule: RemediationRule) -> float:
        return self._s.cooldown if rule.cooldown is None else rule.cooldown

    def per_hour(self, rule: RemediationRule) -> int:
        return self._s.max_runs_per_hour if rule.max_runs_per_hour is None else rule.max_runs_per_hour

    def breaker_open(self, job_id: str, label: str) -> Refusal | None:
        failures, opened = self._records.breaker(job_id)
        if opened is not None and self._clock() < opened + self._s.breaker_reset:
            return Refusal("breaker", f"circuit breaker open for {label} after {failures} consecutive "
                                      f"failed run(s), until {when(opened + self._s.breaker_reset)}")
        return None

    def refusal(self, rule: RemediationRule, host: str) -> Refusal | None:
        """Why ``rule``'s job must not run for ``host`` now, or None."""
        now = self._clock()
        open_ = self.breaker_open(rule.job_id, rule.label)
        if open_ is not None:
            return open_
        cooldown = self.cooldown(rule)
        if cooldown > 0:
            last = self._records.remediation_claims(rule.job_id, now - cooldown, host)
            if last:
                return Refusal("cooldown", f"{rule.label} already ran for {host} at {when(last[-1])}; "
                                           f"cooldown {cooldown:g} s, until {when(last[-1] + cooldown)}")
        per_hour = self.per_hour(rule)
        runs = self._records.remediation_claims(rule.job_id, now - 3600)
        if len(runs) >= per_hour:
            return Refusal("rate-limit", f"{rule.label} ran {len(runs)} time(s) in the last hour "
                                         f"(limit {per_hour}; next run possible at "
                                         f"{when(runs[len(runs) - per_hour] + 3600)})")
        in_flight = self._records.remediations_in_flight()
        if in_flight >= self._s.max_concurrent:
            return Refusal("concurrency", f"{in_flight} self-healing job(s) already in flight "
                                          f"(remediation.max_concurrent = {self._s.max_concurrent})")
        return None

    def record(self, job_id: str, *, success: bool) -> tuple[int, float | None]:
        """Count one finished run; returns (consecutive failures, opened_at) after it."""
        if success:
            self._records.set_breaker(job_id, 0, None)
            return 0, None
        failures, opened = self._records.breaker(job_id)
        failures += 1
        if failures >= self._s.breaker_failures:
            opened = self._clock()  # (re-)open: also after a failed trial run once it had closed
        self._records.set_breaker(job_id, failures, opened)
        return failures, opened

    def breaker_note(self, failures: int, opened: float | None, label: str) -> str:
        if opened is None:
            return ""
        return (f"{failures} consecutive failed run(s): the circuit breaker of {label} is open; "
                f"no runs until {when(opened + self._s.breaker_reset)}.")
