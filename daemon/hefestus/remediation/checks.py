"""What self-healing reports to ops outside Zabbix: `hefestus check` lines, the audit listing.

:func:`check_jobs` asks Rundeck (through :class:`JobCatalog`, which the Rundeck
adapter implements) whether the token, the API version and every mapped job
are usable, so a wrong job id is found at start-up, not at 3 a.m.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol

from hefestus.errors import RundeckAuthError, RundeckError, RundeckRejected
from hefestus.remediation.ports import JobInfo, SystemInfo
from hefestus.remediation.rules import RemediationRules
from hefestus.state.remediations import AuditEntry


def format_audit(entries: Iterable[AuditEntry], *, clock: Callable[[float], str] | None = None
                 ) -> list[str]:
    """Lines for `hefestus remediation`, in the order given: one decision or outcome a line."""
    fmt = clock or (lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)))
    return [f"{fmt(e.at)}  event {e.eventid:<9} {e.host or '-':<20} {e.rule:<28} {e.action:<10} {e.detail}"
            for e in entries]


class JobCatalog(Protocol):
    """What `hefestus check` needs from Rundeck (:class:`hefestus.adapters.rundeck.RundeckClient`)."""

    def system_info(self) -> SystemInfo: ...

    def job_info(self, job_id: str) -> JobInfo: ...


CheckLine = tuple[str, str, str]  # (status "ok" | "warn" | "FAIL", what, detail)


def check_jobs(client: JobCatalog | None, rules: RemediationRules, *, mode: str,
               api_version: int) -> list[CheckLine]:
    """Token, API version and every mapped job, for `hefestus check`.

    A missing job or a disabled one is a FAIL only when ``mode`` is "on"
    (in dry-run nothing runs, so it is a warning to fix before switching on).
    """
    bad = "FAIL" if mode == "on" else "warn"
    jobs = rules.jobs()
    out: list[CheckLine] = [("ok", "remediation", f"mode {mode!r}, {len(rules)} rule(s), {len(jobs)} job(s)")]
    if client is None:
        if jobs:
            out.append(("FAIL" if mode == "on" else "ok", "rundeck",
                        "no [rundeck] configured (url, token): decisions are reported, nothing runs"))
        return out
    try:
        info = client.system_info()
    except RundeckAuthError as exc:
        if exc.code != "api.error.item.unauthorized":
            out.append(("FAIL", "rundeck token", f"rejected: {exc}"))
            return out
        out.append(("warn", "rundeck token", "valid, but it may not read /system/info (no 'read' on "
                    "the system resource in the ACL): the API version was not verified"))
    except RundeckRejected as exc:
        out.append(("FAIL", "rundeck", str(exc)))  # e.g. API version unsupported: the message says what to set
        return out
    except RundeckError as exc:
        out.append(("FAIL", "rundeck", str(exc)))
        return out
    else:
        out.append(("ok", "rundeck", f"Rundeck {info.version or '?'} on {info.node or '?'}: "
                                     f"API v{api_version} (the server accepts up to v{info.api_version})"))
        if info.execution_mode == "passive":
            out.append((bad, "rundeck execution mode", "passive: Rundeck refuses every run"))
    for job_id, users in jobs.items():
        what = f"rundeck job {job_id}"
        names = ", ".join(f"{r.name} ({r.origin})" for r in users)
        if users[0].placeholder:
            out.append((bad, what, f"a placeholder id: replace it with the real job's UUID in {names}"))
            continue
        try:
            job = client.job_info(job_id)
        except RundeckAuthError as exc:
            out.append((bad, what, f"the token may not read this job (ACL): {exc}"))
            continue
        except RundeckError as exc:
            out.append((bad, what, f"{exc} (used by {names})"))
            continue
        problems = []
        if not job.enabled:
            problems.append("execution is disabled for this job in Rundeck")
        if not job.project_executions_enabled:
            problems.append(f"project {job.project!r} has executions disabled")
        for r in users:
            if r.project != job.project:
                problems.append(f"rule {r.name!r} says project {r.project!r}, Rundeck {job.project!r}")
        if problems:
            out.append((bad, what, "; ".join(problems)))
            continue
        out.append(("ok", what, f"'{job.full_name}' in {job.project}, enabled; used by "
                                f"{', '.join(r.name for r in users)}"))
        renamed = sorted({r.job_name for r in users if r.job_name not in (job.name, r.name)})
        if renamed:
            out.append(("warn", what, f"rules call it {', '.join(map(repr, renamed))}, Rundeck "
                                      f"{job.name!r}: operators read the rules' name"))
    return out


