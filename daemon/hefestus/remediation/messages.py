"""What self-healing tells people: Zabbix messages, the audit listing, `hefestus check` lines.

Outcome messages are the *second* message on an event; like every Hefestus
message they start with the marker, are plain text and fit Zabbix's 2048
characters. The job's output tail goes last, newest lines kept, so shortening
drops the oldest output first; everything is redacted before it is measured.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from hefestus.errors import RundeckAuthError, RundeckError, RundeckRejected
from hefestus.pipeline.render import MARKER, ZABBIX_MESSAGE_LIMIT
from hefestus.remediation.policy import when
from hefestus.remediation.rules import RemediationRules
from hefestus.state.store import AuditEntry

if TYPE_CHECKING:
    from hefestus.adapters.rundeck import Execution, JobInfo, SystemInfo

PREFIX = f"{MARKER} self-healing: "
_LINE = 300  # characters of one output line kept


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{max(0.0, seconds):.2g} s"
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def options_text(options: Sequence[tuple[str, str]], limit: int = 200) -> str:
    text = ", ".join(f"{k}={v}" for k, v in options)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def compose(head: str, body: Iterable[str], tail: Sequence[str] = (), *,
            redact: Callable[[str], str], limit: int = ZABBIX_MESSAGE_LIMIT) -> str:
    """``PREFIX + head``, body lines, then "Last output lines:" and the tail, within ``limit``."""
    limit = min(limit, ZABBIX_MESSAGE_LIMIT)
    lines = [redact(PREFIX + head), *(redact(b) for b in body if b)]
    out = [redact("  " + _cut(line.rstrip(), _LINE)) for line in tail]

    def build() -> str:
        return "\n".join(lines + (["Last output lines:", *out] if out else []))

    text = build()
    while len(text) > limit and out:
        out.pop(0)  # the oldest output goes first: the end says how it ended
        text = build()
    if len(text) > limit:
        lines = [_cut(line, 400) for line in lines]
        text = build()
    return text if len(text) <= limit else text[: limit - 1] + "…"


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


def not_run_text(label: str, reason: str, *, redact: Callable[[str], str], limit: int) -> str:
    return compose(f"{label} was not run after all: {reason}", (), redact=redact, limit=limit)


def still_open_text(label: str, exec_id: int | None, window: float, cooldown_until: float | None, *,
                    redact: Callable[[str], str], limit: int) -> str:
    until = f" The job cools down for this host until {when(cooldown_until)}." if cooldown_until else ""
    return compose(
        f"remediation ran but the problem is still open {duration(window)} after {label} succeeded"
        f"{f' (execution {exec_id})' if exec_id else ''}.",
        [f"Not run again: the policy allows one run per event.{until} Investigate by hand."],
        redact=redact, limit=limit)


def finished_head(label: str, ex: Execution, seconds: float, abort_status: str, timeout: float) -> str:
    if abort_status:
        return (f"{label} did not finish within {duration(timeout)} and was aborted "
                f"(abort: {abort_status}; execution {ex.id}, status {ex.status})")
    if ex.succeeded:
        return f"{label} succeeded in {duration(seconds)} (execution {ex.id})"
    nodes = f"; failed nodes: {', '.join(ex.failed_nodes[:10])}" if ex.failed_nodes else ""
    return f"{label} ended {ex.status!r} after {duration(seconds)} (execution {ex.id}{nodes})"


def finished_text(head: str, *, options: Sequence[tuple[str, str]], permalink: str, succeeded: bool,
                  verify_window: float, breaker_note: str, note: str, tail: Sequence[str],
                  redact: Callable[[str], str], limit: int) -> str:
    if succeeded:
        next_ = (f"Checking that the problem recovers within {duration(verify_window)}."
                 if verify_window else "")
    else:
        next_ = "Not re-run automatically."
    body = [f"Options: {options_text(options)}" if options else "",
            f"Rundeck: {permalink}" if permalink else "", next_,
            "" if succeeded else breaker_note, note]
    return compose(head, body, tail, redact=redact, limit=limit)


def unknown_text(label: str, why: str, job_id: str, *, redact: Callable[[str], str], limit: int) -> str:
    return compose(f"unknown whether {label} started: {why}.",
                   ["Not re-run (safety first): look for the execution in Rundeck's activity for job "
                    f"{job_id} and act by hand."], redact=redact, limit=limit)


def lost_track_text(label: str, exec_id: int | None, why: str, permalink: str, *,
                    redact: Callable[[str], str], limit: int) -> str:
    return compose(f"lost track of {label} (execution {exec_id}): {why}.",
                   [f"It may still be running: {permalink or 'see Rundeck'}. Not re-run."],
                   redact=redact, limit=limit)


def not_started_text(label: str, why: str, origin: str, *, attempts: int,
                     redact: Callable[[str], str], limit: int) -> str:
    """Rundeck refused the run (attempts = 0), or kept refusing it transiently."""
    if attempts:
        return compose(f"{label} not started after {attempts} attempt(s): {why}",
                       ["Not retried: the event is left to operators."], redact=redact, limit=limit)
    return compose(f"{label} was refused: {why}",
                   [f"Not retried: fix the job in Rundeck or the rule ({origin})."],
                   redact=redact, limit=limit)
