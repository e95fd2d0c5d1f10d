#!/usr/bin/env python3
"""Hefestus under the storm benchmark: the real daemon code path in a process of its own.

    storm_worker.py CONFIG --expect N --out RESULT.json [--idle-after K] [--profile PSTATS]

``app.build(settings)`` and then ``run_cycle(app)`` in a loop, started every
``intake.poll_interval`` seconds like the daemon's scheduler does (a cycle
that runs long is followed at once by the next). The first cycle sets the
cursor ("first start: now") and the worker prints ``ready``; it stops once
``N`` events reached a final state (then polls ``K`` more times: idle polls with the storm in
the overlap window behind the cursor), or at ``--deadline``.

A process of its own so its peak RSS is Hefestus's alone. Every HTTP request
to the Zabbix API is recorded by a ``requests`` response hook on the
adapter's session (method, seconds, event ids of writes): the benchmark
counts them without changing daemon code.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))

from hefestus import logs
from hefestus.app.build import build
from hefestus.app.daemon import run_cycle
from hefestus.config import load_settings
from hefestus.redact import Redactor


def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("config", type=Path)
    ap.add_argument("--expect", type=int, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--deadline", type=float, default=480)
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--idle-after", type=int, default=0, help="polls after the storm was handled")
    args = ap.parse_args()

    settings = load_settings(args.config, {})  # the benchmark's file only: no HEFESTUS_* from outside
    logs.setup(settings.logging.level, settings.logging.format, redact=Redactor(settings.redaction.patterns))
    app = build(settings)
    calls: list[dict[str, Any]] = []

    def record(response: Any, *_: Any, **__: Any) -> None:
        body = json.loads(response.request.body or b"{}")
        params = body.get("params")
        ids = params.get("eventids", []) if isinstance(params, dict) and body.get("method") == "event.acknowledge" else []
        calls.append({"method": body.get("method", "?"), "end": time.time(),
                      "seconds": response.elapsed.total_seconds(), "eventids": [int(i) for i in ids]})

    app.zabbix._session.hooks["response"].append(record)

    first = run_cycle(app)  # first start: the cursor is set to the newest event
    if first is None:
        print("zabbix unavailable at the first cycle", file=sys.stderr)
        return 1
    rss_ready, cpu_ready = status_kb("VmRSS"), cpu_seconds()
    calls.clear()
    print("ready", flush=True)

    poll = settings.intake.poll_interval
    cycles: list[dict[str, Any]] = []
    fingerprints: dict[str, dict[str, Any]] = {}
    handled = 0
    profiler = cProfile.Profile() if args.profile else None
    deadline = time.monotonic() + args.deadline
    next_start = time.time()
    idle_after = args.idle_after
    while (handled < args.expect or idle_after > 0) and time.monotonic() < deadline:
        if handled >= args.expect:
            idle_after -= 1
        time.sleep(max(0.0, next_start - time.time()))
        start = time.time()
        next_start = start + poll
        first_call = len(calls)
        if profiler is not None:
            profiler.enable()
        report = run_cycle(app)
        if profiler is not None:
            profiler.disable()
        end = time.time()
        row: dict[str, Any] = {"start": start, "end": end, "calls": len(calls) - first_call}
        if report is not None:
            row.update(report.as_dict())
            for plan in report.planned:  # model-always: every analysed event has its fingerprint
                fp = plan.suggestion.fingerprint if plan.suggestion else ""
                if fp:
                    seen = fingerprints.setdefault(fp, {"hosts": [], "events": 0,
                                                        "example": plan.problem.error_text[:800]})
                    seen["events"] += 1
                    if plan.problem.host not in seen["hosts"]:
                        seen["hosts"].append(plan.problem.host)
            handled += report.acknowledged + report.skipped + report.already_marked + report.failed
        cycles.append(row)
    if profiler is not None:
        profiler.dump_stats(str(args.profile))
    stats = app.analyzer.stats
    result = {
        "handled": handled, "cycles": cycles, "calls": calls, "fingerprints": fingerprints,
        "model": {"calls": stats.model_calls, "seconds": stats.seconds_sum, "failures": stats.model_failures,
                  "bad_answers": stats.bad_answers, "breaker_skips": stats.breaker_skips,
                  "cache_hits": stats.cache_hits},
        "rss_ready_kb": rss_ready, "vmhwm_kb": status_kb("VmHWM"),
        "cpu_seconds": cpu_seconds() - cpu_ready,
    }
    app.close()
    args.out.write_text(json.dumps(result))
    return 0 if handled >= args.expect else 2


if __name__ == "__main__":
    sys.exit(main())
