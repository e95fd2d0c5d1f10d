"""The storm benchmark's outcome, its table and bench/RESULTS.md.

Kept apart from bench/storm_bench.py (which fires storms and drives Hefestus
and the floor) so each file has one job: this one only reads figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storm_kinds import KINDS
from zabbix_floor import FloorResult

if TYPE_CHECKING:
    from model_bench import ParallelResult
    from push_bench import PushResult

#: The Zabbix user both Hefestus and the floor run as; only its messages count.
USER = "hefestus-bench"


@dataclass
class Scenario:
    key: str
    title: str
    ollama: dict[str, Any]
    #: (ledger rows, cached answers) written into the state before Hefestus starts
    prefill: tuple[int, int] = (0, 0)


@dataclass
class Outcome:
    scenario: Scenario
    events: int = 0
    exactly_one: int = 0
    floor: FloorResult | None = None
    floor_checked: int = 0
    worker: dict[str, Any] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)
    foreign: int = 0  # storm events another Hefestus (other user) commented on
    #: events left to another Hefestus: none of our messages, one of theirs (the marker check at work)
    preempted: int = 0
    #: kind -> (header of its messages, distinct message texts, distinct fingerprints)
    per_kind: dict[str, tuple[str, int, int]] = field(default_factory=dict)
    #: kind -> the lines (by their first word) that differ between its messages
    varying: dict[str, list[str]] = field(default_factory=dict)
    noted: int = 0  # events whose message carries a note about the model


def varying_lines(messages: list[str]) -> list[str]:
    """Which lines make a kind's messages differ: the first word of each line that is not the same
    in all of them ("Matched:", "Self-healing", ...)."""
    texts = sorted(set(messages))
    if len(texts) < 2:
        return []
    split = [t.splitlines() for t in texts]
    out: list[str] = []
    for i in range(max(map(len, split))):
        variants = {lines[i] if i < len(lines) else "" for lines in split}
        if len(variants) > 1:
            word = next((v.split()[0] for v in sorted(variants) if v.strip()), "")
            if word and word not in out:
                out.append(word)
    return out


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def machine() -> dict[str, str]:
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal:")), "0")
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "?")
    return {"nproc": str(os.cpu_count()), "ram": f"{int(mem) / 1024 / 1024:.1f} GiB", "cpu": cpu,
            "python": platform.python_version(), "kernel": platform.release()}


def table(outcomes: list[Outcome]) -> list[tuple[str, ...]]:
    def each(fn: Any) -> tuple[str, ...]:
        return tuple(fn(o) for o in outcomes)

    def model(o: Outcome) -> str:
        m = o.worker["model"]
        s = f"{m['calls']} answered for {o.figures['fingerprints']} fingerprints"
        if m["bad_answers"]:
            s += f" ({m['bad_answers']} rejected and asked again)"
        if m["failures"] or m["breaker_skips"]:
            s += f"; {m['failures']} failed, {m['breaker_skips']} skipped (breaker open)"
        return s

    def methods(o: Outcome) -> str:
        return ", ".join(f"{k.removeprefix('event.')} {v}" for k, v in o.figures["by_method"].items())

    def fl(o: Outcome, fn: Any) -> str:
        return fn(o.floor) if o.floor else "-"

    return [
        ("", *each(lambda o: o.scenario.title)),
        ("storm events / with exactly one Hefestus message", *each(
            lambda o: f"{o.events} / {o.exactly_one}"
                      + (f" (+{o.preempted} another Hefestus wrote first)" if o.preempted else ""))),
        ("FLOOR calls (event.get + event.acknowledge)", *each(lambda o: fl(o, lambda f: f"1 + {f.ack_calls}"))),
        ("FLOOR seconds (the calls)", *each(lambda o: fl(o, lambda f: f"{f.seconds:.2f}"))),
        ("FLOOR end to end, s (first event clock -> last ack; waits for the storm)",
         *each(lambda o: f"{o.figures['floor_e2e']:.2f}")),
        ("HEFESTUS end to end, s (first event clock -> last ack returned)", *each(lambda o: f"{o.figures['e2e']:.2f}")),
        ("  first event -> start of the poll that saw it, s",
         *each(lambda o: f"{o.figures['wait_before_first_cycle']:.2f}")),
        ("  processing, s (that poll's start -> last ack)", *each(lambda o: f"{o.figures['processing']:.2f}")),
        ("  processing less model answer time, s", *each(lambda o: f"{o.figures['without_model']:.2f}")),
        ("  end to end from zabbix_sender's return, s", *each(lambda o: f"{o.figures['e2e_from_sender']:.2f}")),
        ("  end to end by Zabbix's clocks (whole s)", *each(lambda o: f"{o.figures['e2e_zabbix_clock']:.0f}")),
        ("RATIO Hefestus end to end / floor calls (goal <= 2)", *each(lambda o: f"{o.figures['ratio_e2e']:.1f}x")),
        ("RATIO Hefestus end to end / floor end to end", *each(lambda o: f"{o.figures['ratio_e2e_e2e']:.1f}x")),
        ("RATIO Hefestus processing less model / floor calls",
         *each(lambda o: f"{o.figures['ratio_without_model']:.1f}x")),
        ("model calls (goal 10)", *each(model)),
        ("model answer time, s (sum; one call at a time)", *each(lambda o: f"{o.worker['model']['seconds']:.1f}")),
        ("Zabbix API calls by Hefestus in the storm's polls", *each(lambda o: str(o.figures["api_calls"]))),
        ("  by method", *each(methods)),
        ("  seconds spent in them", *each(lambda o: f"{sum(o.figures['api_seconds'].values()):.2f}")),
        ("  API calls per idle poll", *each(lambda o: f"{o.figures['idle_cycle_calls']:.0f}")),
        ("  API calls per idle poll after the storm (it is in the overlap window) / its seconds",
         *each(lambda o: f"{o.figures['idle_after_calls']:.0f} / {o.figures['idle_after_seconds']:.3f}")),
        ("state before the storm: ledger rows / cached answers",
         *each(lambda o: f"{o.scenario.prefill[0]:,} / {o.scenario.prefill[1]:,}")),
        ("acknowledge writes / distinct messages",
         *each(lambda o: f"{o.figures['writes']} / {o.figures['distinct_messages']}")),
        ("polls that handled storm events", *each(lambda o: str(o.figures["cycles"]))),
        ("latency p50 / p99, s (event clock -> ack clock in Zabbix, whole s)",
         *each(lambda o: "{:.1f} / {:.1f}".format(*o.figures["lat_zbx"]))),
        ("latency p50 / p99, s (event clock -> its ack call returned)",
         *each(lambda o: "{:.2f} / {:.2f}".format(*o.figures["lat_client"]))),
        ("Zabbix clock spread of the storm's events, s", *each(lambda o: f"{o.figures['ingest_spread']:.2f}")),
        ("peak RSS of the Hefestus process (VmHWM) / RSS after start-up, MiB",
         *each(lambda o: f"{o.figures['rss_peak_mb']:.0f} / {o.figures['rss_ready_mb']:.0f}")),
        ("CPU seconds of the Hefestus process (storm and idle polls)", *each(lambda o: f"{o.figures['cpu']:.1f}")),
        ("check: messages with a note on the model (\"Note: Model ...\")", *each(lambda o: str(o.noted))),
        ("check: storm B events with exactly one floor message", *each(lambda o: str(o.floor_checked))),
        ("check: events skipped as already marked / commented by another Hefestus",
         *each(lambda o: f"{o.figures['already_marked']} / {o.foreign}")),
    ]


def extra_rows(push: PushResult | None, parallel: ParallelResult | None,
               failover: list[float] | None = None) -> list[tuple[str, ...]]:
    """The figures that are not per storm scenario: push latency, model calls in parallel, fail-over."""
    rows: list[tuple[str, ...]] = []
    if push is not None:
        from push_bench import POLL

        gap = "app/daemon.py's PUSH_MIN_GAP" if push.push_min_gap is None else f"PUSH_MIN_GAP {push.push_min_gap:g} s"
        rows += [
            ("push latency p50 / p99, s (one at a time: problem created -> message stored)",
             f"{pct(push.single, 0.5):.2f} / {pct(push.single, 0.99):.2f} ({len(push.single)} problems, "
             f"{push.gap:g} s apart; {gap}; poll_interval {POLL} s)"),
            ("  of which Zabbix: problem created -> push received, p50 / p99, s",
             f"{pct(push.single_zabbix, 0.5):.2f} / {pct(push.single_zabbix, 0.99):.2f}"),
            ("push latency p50 / p99, s (burst of 100 in one zabbix_sender call)",
             f"{pct(push.burst, 0.5):.2f} / {pct(push.burst, 0.99):.2f} ({len(push.burst)} problems, "
             f"{push.burst_polls} polls wrote them; {push.pushes} pushes received in all)"),
            ("pushed problems / with exactly one Hefestus message", f"{push.exactly_one[1]} / {push.exactly_one[0]}"),
        ]
    if parallel is not None:
        rows.append(("model calls in parallel: serial s / parallel s",
                     f"{parallel.serial:.2f} / {parallel.parallel:.2f} (10 kinds, {parallel.delay:g} s per answer, "
                     f"max_concurrency 1 / {parallel.concurrency}: {parallel.parallel / parallel.serial:.2f} of serial; "
                     f"most in flight at once {parallel.max_in_flight[0]} / {parallel.max_in_flight[1]})"))
    if failover:
        rows.append(("fail-over p50, s (leader kill -9 -> first message by the new leader)",
                     f"{statistics.median(failover):.1f} ({len(failover)} kills, min {min(failover):.1f}, "
                     f"max {max(failover):.1f}; 2 instances, lease_ttl 10 s, heartbeat 2 s)"))
    return [("", "this run"), *rows] if rows else []


def render_table(rows: list[tuple[str, ...]], markdown: bool) -> str:
    if markdown:
        head, *body = rows
        lines = ["| " + " | ".join(("figure", *head[1:])) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def kinds_table(outcomes: list[Outcome]) -> str:
    head = ["kind", "host group", "in patterns/",
            *(f"{o.scenario.title}: message header (distinct texts, fingerprints)" for o in outcomes)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for k in KINDS:
        cells = [k.name, k.group, "yes" if k.known else "no"]
        for o in outcomes:
            header, n, fps = o.per_kind.get(k.name, ("-", 0, 0))
            cells.append(f"`{header.replace('|', '/')}` ({n}, {fps})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interference(o: Outcome) -> str:
    return (f"another Hefestus on this Zabbix (not user {USER}; e.g. the integration tests' daemons) "
            f"commented on {o.foreign} of the storm's events while the benchmark ran, and wrote first on "
            f"{o.preempted} of them (Hefestus skipped those: the marker check); its load is in these figures")


def observations(outcomes: list[Outcome]) -> str:
    """Facts read off this run's figures (the reading of them is left to people)."""
    out = []
    for o in outcomes:
        f, title = o.figures, o.scenario.title
        storm_cycles = [c for c in o.worker["cycles"] if c.get("fetched")]
        get_h = max((c["seconds"] for c in o.worker["calls"] if c["method"] == "event.get" and storm_cycles
                     and storm_cycles[0]["start"] <= c["end"] <= storm_cycles[-1]["end"]), default=None)
        get_f = next((s for n, s, _ in o.floor.calls if n == "event.get"), 0.0) if o.floor else 0.0
        acks = f["api_seconds"].get("event.acknowledge", 0.0)
        writes = [c for c in o.worker["calls"] if c["method"] == "event.acknowledge" and storm_cycles
                  and storm_cycles[0]["start"] <= c["end"] <= storm_cycles[-1]["end"]]
        line = (f"- {title}: of {f['processing']:.2f} s processing, model answers {o.worker['model']['seconds']:.1f} s "
                f"(summed), Zabbix API calls {sum(f['api_seconds'].values()):.2f} s summed over the calls "
                f"({f['writes']} event.acknowledge {acks:.2f} s; several are in flight at once, so the sum "
                "exceeds their wall time).")
        if writes:
            first, last = (min(c["end"] for c in writes) - storm_cycles[0]["start"],
                           max(c["end"] for c in writes) - storm_cycles[0]["start"])
            line += f" The first write returned {first:.2f} s into the poll, the last {last:.2f} s."
        if get_h is not None:
            line += (f" Hefestus's event.get for the page took {get_h:.2f} s (the events' own fields and tags; "
                     f"hosts, groups, items and `opdata` come once per trigger), the floor's {get_f:.2f} s (ids only).")
        if f["lat_client"][0] > 0.9 * f["lat_client"][1] and o.worker["model"]["calls"]:
            line += (" Every event of the page waited for the last model answer "
                     f"(latency p50 {f['lat_client'][0]:.0f} s, p99 {f['lat_client'][1]:.0f} s).")
        out.append(line)
    for o in outcomes:
        many = {k: o.varying.get(k, []) for k, (_, n, _fp) in o.per_kind.items() if n > 1}
        if many:
            what = "; ".join(f"{k}: {o.per_kind[k][1]} texts, differing in {', '.join(v) or '?'}"
                             for k, v in many.items())
            out.append(f"- {o.scenario.title}: {o.figures['distinct_messages']} distinct messages for "
                       f"{len(KINDS)} kinds, so as many writes. Kinds with more than one text: {what}.")
    return "\n".join(out)


def write_results(path: Path, started: datetime, load: tuple[float, float, float], version: str,
                  outcomes: list[Outcome],
                  rows: list[tuple[str, ...]], patterns_out: str, args: argparse.Namespace, *,
                  extra: list[tuple[str, ...]] | None = None, push: PushResult | None = None,
                  parallel: ParallelResult | None = None) -> None:
    m = machine()
    floor_calls = "; ".join(
        f"{o.scenario.title}: event.get {next((s for n, s, _ in o.floor.calls if n == 'event.get'), 0):.2f} s, "
        f"{o.floor.ack_calls} event.acknowledge {sum(s for n, s, _ in o.floor.calls if n == 'event.acknowledge'):.2f} s"
        for o in outcomes if o.floor)
    api_split = "; ".join(
        f"{o.scenario.title}: " + ", ".join(f"{k} {v:.2f} s" for k, v in sorted(
            o.figures["api_seconds"].items(), key=lambda kv: -kv[1])) for o in outcomes)
    more = f"""## Push to message, model calls in parallel, fail-over

{render_table(extra, markdown=True)}

- **Push** (bench/push_bench.py): deploy/zabbix/'s webhook media type imported into this Zabbix, the
  global macros `{{$HEFESTUS.URL}}` and `{{$HEFESTUS.TOKEN}}`, a user with the *Hefestus* media and a
  trigger action sending it for the benchmark's host group, as README's "Push intake" says; `hefestus
  run` in its own process with the API on and `poll_interval` 300 s, so every message in the run
  followed a push. The problems are pattern-classified (a failed systemd unit, `analysis.mode =
  "pattern"`). Latency: from the problem's creation (`clock` + `ns` in Zabbix) to Hefestus's "event
  acknowledged" log line for it (its `event.acknowledge` had returned). "Of which Zabbix": to the
  push's arrival in Hefestus's log (escalator, alerter, the webhook's script and POST).
- **Model calls in parallel** (bench/model_bench.py): the storm's 10 kinds, one model call each,
  against tests/support/ollama.py's Ollama stand-in answering every request in flight after a fixed
  time (a server that answers several at once), through the real analysis stage, adapter and
  `ollama` client; `max_concurrency` 1, then 4. Ten calls 4 at a time are 3 rounds: 0.30 is the floor.
- **Fail-over** (bench/failover_bench.py): two `hefestus run` instances on one state database in a
  private PostgreSQL cluster, default lease settings and poll interval; each round kills the leader
  (kill -9), fires one pattern-classified problem at once and times the kill -> that problem's
  message, written by the instance that took over. The killed one is restarted as a standby.

""" if extra else ""
    disturbed = "".join(f"> **Disturbed run.** {o.scenario.title}: {interference(o)}.\n\n"
                        for o in outcomes if o.foreign)
    text = f"""# Benchmarks

Written by `make bench` (bench/storm_bench.py) on {started:%Y-%m-%d %H:%M} UTC. Figures, not assertions:
nothing here is a timed test. Re-run to refresh; numbers move with the machine's load.

- Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM, Linux {m['kernel']}, Python {m['python']};
  load average at the start {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (the machine is shared)
- Zabbix {version} (the local one of `make zabbix`: PHP built-in web server, PostgreSQL); Hefestus and
  the floor both call it as `{USER}` (a super admin, like the test suite's user)
- Hefestus: {args.per_kind * len(KINDS)} events, poll interval {args.poll:g} s, page size {args.page_size},
  `analysis.mode = "model-always"`, `acknowledge.action = "message"`

## Storm: 1,000 problem events of 10 kinds, Hefestus against the raw API floor

{render_table(rows, markdown=True)}

{disturbed}Where the time went (this run):

{observations(outcomes)}
- The floor: {floor_calls}. Hefestus's API calls: {api_split}.

{more}### The storm

{args.per_kind} events of each kind, 20 hosts (2 per kind), fired in one `zabbix_sender` call; the
triggers are of type "multiple problem events", so every value is one event. Within a kind the lines
differ only in volatile parts (timestamps, pod suffixes, UUIDs, hex ids, IPs, pids, counters).
Six kinds are in the shipped patterns/, four are not. Hefestus runs in `model-always` mode, so every
kind is one model question (goal: 10 calls) whether a pattern knows it or not; with the model down the
known kinds get their pattern suggestion and the others the triage steps, each with a note. (In the
default `model-when-unclassified` mode only the four unknown kinds would be asked, and the known ones
would get the pattern messages of the model-down run.) "Model calls" counts the chat requests that
returned, including answers that were rejected (invalid JSON, out of schema) and asked again.

{kinds_table(outcomes)}

### What is measured, and how

- **Floor** (bench/zabbix_floor.py): plain `requests` JSON-RPC, logged in before the clock starts.
  One `event.get` for the storm's events (ids and trigger ids only), then one batched
  `event.acknowledge` per distinct message, writing exactly the messages Hefestus wrote. It runs on a
  second storm of the same shape fired after Hefestus finished (storm B; event *i* of a kind gets the
  message event *i* of that kind got from Hefestus), once all of storm B is visible: the first storm's
  events already carry a Hefestus message, and Hefestus skips events that do (the marker check).
  **Not in the floor**: Zabbix ingesting the values, waiting for a poll, reading hosts, groups,
  triggers, items and history (what the message is written from), classification, the model, the
  state file, the marker check, logging.
- **Hefestus** (bench/storm_worker.py): the daemon's code path, `app.build(settings)` then
  `run_cycle(app)` every poll interval, in a process of its own (its peak RSS is VmHWM from
  /proc/self/status). Every Zabbix API request is counted by a response hook on the adapter's
  `requests` session. **End to end** runs from the first storm event's creation (its `clock`+`ns` in
  Zabbix, stamped when the server received the value) to the moment the last `event.acknowledge`
  returned; "processing" starts at the beginning of the first poll cycle that saw storm events. The
  storm is fired right after one of Hefestus's polls (the worker reports ready after its first cycle
  and polls again at once), so the wait for the poll that sees it is a whole interval: the worst case.
- **Scale** (the third column): the same storm, model down, with the state filled before Hefestus
  starts, through the repositories' public methods: `Ledger.record` (100,000 handled events; their ids
  lie far above Zabbix's, so none is a storm event) and `AnswerCache.cache_answer` (10,000
  fingerprints). "API calls per idle poll" counts the polls before the storm; "after the storm" the
  three polls after it, when the storm's ids lie in the overlap window behind the cursor.
- **Writes**: Hefestus keeps up to 4 `event.acknowledge` calls in flight (pipeline/writes.py), the floor
  one at a time, as a plain client would; both write the same 110 messages.
- **Latency** per event: from its `clock` to its acknowledgement's `clock` as Zabbix stored it (whole
  seconds, so within 1 s), and to the moment its acknowledge call returned (client clock, same machine).
- **Ratios**: the issue's ratio is Hefestus end to end over the floor's calls. The floor's calls start
  only once the whole storm is visible, so "floor end to end" adds what any client waits for (from the
  first event's clock until storm B was visible, polled every 50 ms); "processing less model" takes
  out the model's answer time, which the floor has no counterpart for.
- The model: deploy/dev/model_server.py, SmolLM2-135M (llama.cpp, 2 threads) behind Ollama's API,
  `max_tokens` 400, temperature 0, `max_concurrency` 1 (the server answers one at a time on 2 cores,
  and so the summed answer times are the model's wall time). "Down" is a port where nothing listens.

### Reproduce

    make bench                                    # brings up Zabbix, runs every benchmark, rewrites this file
    .venv/bin/python bench/storm_bench.py --help   # --only up|down|scale, --no-push, --no-parallel,
                                                  # --push-min-gap S, --per-kind, --profile, --keep DIR
    .venv/bin/python bench/model_bench.py          # model calls in parallel alone (no Zabbix needed)

## Pattern engine (bench/patterns_bench.py)

```
{patterns_out.strip() or "(skipped: --no-patterns)"}
```
"""
    path.write_text(text)
