"""What self-healing tells people in Zabbix: decision lines and outcome messages.

Outcome messages are the *second* message on an event; like every Hefestus
message they start with the marker, are plain text and fit Zabbix's 2048
characters. The job's output tail goes last, newest lines kept, so shortening
drops the oldest output first; everything is redacted before it is measured.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from hefestus.pipeline.render import MARKER, ZABBIX_MESSAGE_LIMIT, cut
from hefestus.remediation.policy import when
from hefestus.remediation.ports import Execution

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
    return cut(", ".join(f"{k}={v}" for k, v in options), limit)


def compose(head: str, body: Iterable[str], tail: Sequence[str] = (), *,
            redact: Callable[[str], str], limit: int = ZABBIX_MESSAGE_LIMIT) -> str:
    """``PREFIX + head``, body lines, then "Last output lines:" and the tail, within ``limit``."""
    limit = min(limit, ZABBIX_MESSAGE_LIMIT)
    lines = [redact(PREFIX + head), *(redact(b) for b in body if b)]
    out = [redact("  " + cut(line.rstrip(), _LINE)) for line in tail]

    def build() -> str:
        return "\n".join(lines + (["Last output lines:", *out] if out else []))

    text = build()
    while len(text) > limit and out:
        out.pop(0)  # the oldest output goes first: the end says how it ended
        text = build()
    if len(text) > limit:
        lines = [cut(line, 400) for line in lines]
        text = build()
    return cut(text, limit)


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
