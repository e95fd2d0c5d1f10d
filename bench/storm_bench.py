#!/usr/bin/env python3
"""Storm benchmark (`make bench`): Hefestus against the raw Zabbix API floor, on the real local Zabbix.

For each scenario (the real small model answering; the model server down):

1. start Hefestus (bench/storm_worker.py: app.build + run_cycle every poll interval)
   and let its first cycle set the cursor;
2. fire storm A: 1,000 problem values of 10 kinds over 20 hosts in ONE zabbix_sender
   call (bench/storm_kinds.py); Hefestus handles it; read every event's
   acknowledgements back from Zabbix;
3. fire storm B, same shape, fresh values, and once all of it is visible run the
   floor (bench/zabbix_floor.py): one event.get, one event.acknowledge per distinct
   message, writing exactly the messages Hefestus wrote on storm A (event i of a kind
   in B gets the message event i of that kind got in A). A second storm, not storm A
   again: A's events already carry a [Hefestus] message, and writing the same text a
   second time onto the same events is not the job Hefestus did.

Prints a table and writes bench/RESULTS.md. Figures only: nothing here asserts timing.
The exit status is 1 only when events were left without exactly one Hefestus message.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))  # tests/support: the Zabbix lab and the model server (not shipped)

import failover_bench
import model_bench
import push_bench
from pydantic import SecretStr
from storm_kinds import KINDS, Kind, storm
from storm_report import (
    USER,
    Outcome,
    Scenario,
    extra_rows,
    interference,
    pct,
    render_table,
    table,
    varying_lines,
    write_results,
)
from tests.support import dev_zabbix
from tests.support.helpers import free_port, toml_value
from tests.support.lab import LabHost, ZabbixLab
from tests.support.ollama import model_server
from zabbix_floor import JsonRpc, run_floor

from hefestus.adapters.zabbix import ZabbixClient
from hefestus.config import ZabbixSettings
from hefestus.pipeline.render import MARKER

URL = os.environ.get("HEFESTUS_BENCH_ZABBIX_URL", dev_zabbix.URL)
ADMIN = ("Admin", "zabbix")
#: Hefestus and the floor both run as USER (same permission checks), and only its messages count:
#: other Hefestus processes on a shared Zabbix (the test suite's) may comment on the storm too.
PASSWORD = "Hb-bench-S3cret-7q!"
MODEL = "smollm2:135m"
ACTION = 4  # "message" (Hefestus's default acknowledge.action): add a comment
IDLE_AFTER = 3  # polls after the storm: idle, with the storm in the overlap window


# --------------------------------------------------------------------------- zabbix helpers


def storm_rows(call: Any, triggerids: list[str], eventid_from: int, *, acks: bool = False) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"output": ["eventid", "clock", "ns", "objectid"], "source": 0, "object": 0,
                              "value": 1, "objectids": triggerids, "eventid_from": eventid_from,
                              "sortfield": ["eventid"], "sortorder": "ASC"}
    if acks:
        params["select_acknowledges"] = ["message", "clock", "action", "userid"]
    rows: list[dict[str, Any]] = call("event.get", **params)
    return rows


def latest_eventid(call: Any) -> int:
    rows = call("event.get", output=["eventid"], sortfield=["eventid"], sortorder="DESC", limit=1)
    return int(rows[0]["eventid"]) if rows else 0


def wait_visible(call: Any, triggerids: list[str], eventid_from: int, count: int, timeout: float = 120) -> float:
    """Poll until ``count`` storm events exist; the time.time() they all did."""
    deadline = time.monotonic() + timeout
    while True:
        n = int(call("event.get", countOutput=True, source=0, object=0, value=1, objectids=triggerids,
                     eventid_from=eventid_from))
        if n >= count or time.monotonic() > deadline:
            return time.time()
        time.sleep(0.05)


def close_open_problems(call: Any, triggerids: list[str]) -> int:
    """Close what earlier storms left open (the triggers allow manual close), so runs start alike."""
    ids = [r["eventid"] for r in call("problem.get", output=["eventid"], objectids=triggerids)]
    for i in range(0, len(ids), 1000):
        call("event.acknowledge", eventids=ids[i:i + 1000], action=1)
    return len(ids)


def hefestus_acks(row: dict[str, Any], userid: str) -> list[dict[str, Any]]:
    return [a for a in row.get("acknowledges", []) if a["message"].startswith(MARKER) and a["userid"] == userid]


def foreign_acks(row: dict[str, Any], userid: str) -> int:
    return sum(1 for a in row.get("acknowledges", []) if a["message"].startswith(MARKER) and a["userid"] != userid)


def bench_user(call: Any) -> str:
    """The benchmark's API user (a super admin, like the test suite's), created once."""
    rows = call("user.get", output=["userid"], filter={"username": [USER]})
    if rows:
        return str(rows[0]["userid"])
    return str(call("user.create", username=USER, passwd=PASSWORD, roleid="3",
                    usrgrps=[{"usrgrpid": "7"}])["userids"][0])




# --------------------------------------------------------------------------- hefestus side




def write_config(workdir: Path, args: argparse.Namespace, ollama: dict[str, Any]) -> Path:
    sections: dict[str, dict[str, Any]] = {
        "zabbix": {"url": URL, "user": USER, "password": PASSWORD, "timeout": 30, "retries": 3},
        "intake": {"poll_interval": args.poll, "page_size": args.page_size, "first_start": "now",
                   "host_groups": sorted({k.group for k in KINDS})},
        "acknowledge": {"action": "message"},
        "classification": {"rules_dir": str(ROOT / "rules"), "patterns_dir": str(ROOT / "patterns")},
        "state": {"path": str(workdir / "state.db")},
        "logging": {"level": "info", "format": "json"},
        "ollama": {"model": MODEL, **ollama},
        "analysis": {"mode": "model-always"},
    }
    text = "".join(f"[{name}]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()) + "\n"
                   for name, values in sections.items())
    path = workdir / "hefestus.toml"
    path.write_text(text)
    return path


def prefill(path: Path, events: int, answers: int) -> None:
    """A state that has run for months: ``events`` handled events in the ledger and ``answers``
    cached model answers, written through the repositories' public methods. Their event ids lie
    far above Zabbix's (10^12 + i), so no storm event is mistaken for one of them."""
    from hefestus.state import open_state

    state = open_state(path)
    try:
        base = 10**12
        for start in range(0, events, 10_000):
            state.ledger.record((base + i, "done", "linux", "disk-full", "disk-full", "")
                                for i in range(start, min(start + 10_000, events)))
        answer = json.dumps({"cause": "A cached answer of the scale benchmark.",
                             "steps": ["Check the service logs on the host"], "confidence": 0.5})
        for i in range(answers):
            fp = hashlib.sha256(f"scale-{i}".encode()).hexdigest()
            state.answers.cache_answer(fp, MODEL, answer, ttl=86400)
    finally:
        state.close()


def start_worker(config: Path, workdir: Path, expect: int, profile: bool) -> subprocess.Popen[str]:
    cmd = [sys.executable, str(ROOT / "bench" / "storm_worker.py"), str(config), "--expect", str(expect),
           "--out", str(workdir / "worker.json"), "--idle-after", str(IDLE_AFTER)]
    if profile:
        cmd += ["--profile", str(workdir / "worker.pstats")]
    log = (workdir / "hefestus.log").open("w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # blocks until the first cycle set the cursor
    if line.strip() != "ready":
        proc.wait(timeout=30)
        raise RuntimeError(f"hefestus worker did not start:\n{(workdir / 'hefestus.log').read_text()[-3000:]}")
    return proc


# --------------------------------------------------------------------------- one scenario


@dataclass
class Bench:
    """What every scenario shares."""

    args: argparse.Namespace
    lab: ZabbixLab
    hosts: dict[str, LabHost]
    kind_of: dict[str, Kind]  # triggerid -> kind
    rpc: JsonRpc
    userid: str
    base: Path

    @property
    def triggerids(self) -> list[str]:
        return sorted(self.kind_of)


def run_scenario(b: Bench, sc: Scenario, seed: int) -> Outcome:
    out = Outcome(sc)
    workdir = b.base / sc.key
    workdir.mkdir()
    expect = b.args.per_kind * len(KINDS)
    if any(sc.prefill):
        started = time.monotonic()
        prefill(workdir / "state.db", *sc.prefill)
        print(f"== {sc.title}: state filled in {time.monotonic() - started:.1f} s", flush=True)
    print(f"== {sc.title}: starting Hefestus", flush=True)
    worker = start_worker(write_config(workdir, b.args, sc.ollama), workdir, expect, b.args.profile)

    # ---- storm A: Hefestus
    try:
        before = latest_eventid(b.lab.call)
        values = [(b.hosts[h], text) for _, h, text in storm(seed, b.args.per_kind)]
        sent_at = time.time()
        b.lab.send(values)  # more than 50 values: one zabbix_sender call
        sender_returned = time.time()
        print(f"   storm A: {len(values)} values sent in {sender_returned - sent_at:.2f} s; waiting for Hefestus",
              flush=True)
        worker.wait(timeout=b.args.deadline + 60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    if not (workdir / "worker.json").exists():
        raise RuntimeError(f"hefestus worker gave no result:\n{(workdir / 'hefestus.log').read_text()[-3000:]}")
    out.worker = w = json.loads((workdir / "worker.json").read_text())
    rows = storm_rows(b.lab.call, b.triggerids, before + 1, acks=True)
    mine = {r["eventid"]: hefestus_acks(r, b.userid) for r in rows}
    out.events = len(rows)
    out.exactly_one = sum(1 for acks in mine.values() if len(acks) == 1)
    out.foreign = sum(1 for r in rows if foreign_acks(r, b.userid))
    out.preempted = sum(1 for r in rows if not mine[r["eventid"]] and foreign_acks(r, b.userid))

    # ---- per kind: what Hefestus wrote (the floor writes the same) and how many fingerprints it saw
    messages: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        if mine[r["eventid"]]:
            messages[b.kind_of[r["objectid"]].name].append(mine[r["eventid"]][0]["message"])
    kind_by_host = {h: k.name for k in KINDS for h in k.hosts()}
    fps: dict[str, set[str]] = defaultdict(set)
    for fp, seen in w["fingerprints"].items():
        for h in seen["hosts"]:
            fps[kind_by_host.get(h, h)].add(fp)
    for kind in KINDS:
        msgs = messages.get(kind.name, [])
        header = Counter(m.splitlines()[0] for m in msgs).most_common(1)
        out.per_kind[kind.name] = (header[0][0] if header else "(none)", len(set(msgs)), len(fps[kind.name]))
        out.varying[kind.name] = varying_lines(msgs)
    out.noted = sum(1 for acks in mine.values() if acks and "\nNote: Model " in acks[0]["message"])

    # ---- figures: Hefestus's own record (client clock) and Zabbix's clocks (same machine)
    storm_ids = {int(r["eventid"]) for r in rows}
    done_at = {e: c["end"] for c in w["calls"] if c["method"] == "event.acknowledge"
               for e in c["eventids"] if e in storm_ids}
    created = {int(r["eventid"]): int(r["clock"]) + int(r["ns"]) / 1e9 for r in rows}
    first_event = min(created.values())
    last_ack = max(done_at.values()) if done_at else float("nan")
    storm_cycles = [c for c in w["cycles"] if c.get("fetched")]
    proc_start = storm_cycles[0]["start"] if storm_cycles else float("nan")
    in_storm = [c for c in w["calls"] if storm_cycles and proc_start <= c["end"] <= storm_cycles[-1]["end"]]
    idle = [c for c in w["cycles"] if not c.get("fetched")]
    after = [c for c in w["cycles"] if storm_cycles and c["start"] > storm_cycles[-1]["end"] and not c.get("fetched")]
    ack_clock = {int(e): int(acks[0]["clock"]) for e, acks in mine.items() if acks}
    zbx_lat = [ack_clock[e] - created[e] for e in ack_clock]
    client_lat = [done_at[e] - created[e] for e in done_at]
    api_seconds: dict[str, float] = defaultdict(float)
    for c in in_storm:
        api_seconds[c["method"]] += c["seconds"]
    f = out.figures = {
        "ingest_spread": max(created.values()) - first_event,
        "e2e": last_ack - first_event, "e2e_from_sender": last_ack - sender_returned,
        "e2e_zabbix_clock": max(ack_clock.values()) - first_event if ack_clock else float("nan"),
        "processing": last_ack - proc_start, "wait_before_first_cycle": proc_start - first_event,
        "cycles": len(storm_cycles), "idle_cycle_calls": statistics.mean(c["calls"] for c in idle) if idle else 0,
        "idle_after_calls": statistics.mean(c["calls"] for c in after) if after else float("nan"),
        "idle_after_seconds": statistics.mean(c["end"] - c["start"] for c in after) if after else float("nan"),
        "already_marked": sum(c.get("already_marked", 0) for c in storm_cycles),
        "api_calls": len(in_storm), "by_method": dict(Counter(c["method"] for c in in_storm).most_common()),
        "api_seconds": dict(api_seconds), "writes": sum(c.get("api_writes", 0) for c in storm_cycles),
        "distinct_messages": len({m for ms in messages.values() for m in ms}),
        "fingerprints": len(w["fingerprints"]),
        "lat_zbx": (pct(zbx_lat, 0.5), pct(zbx_lat, 0.99)), "lat_client": (pct(client_lat, 0.5), pct(client_lat, 0.99)),
        "rss_peak_mb": w["vmhwm_kb"] / 1024, "rss_ready_mb": w["rss_ready_kb"] / 1024, "cpu": w["cpu_seconds"],
    }

    # ---- storm B: the floor, writing the same messages
    before_b = latest_eventid(b.lab.call)
    values_b = [(b.hosts[h], text) for _, h, text in storm(seed + 1000, b.args.per_kind)]
    b.lab.send(values_b)
    wait_visible(b.lab.call, b.triggerids, before_b + 1, len(values_b))

    def assign(fetched: list[dict[str, Any]]) -> dict[str, list[str]]:
        """Event i of a kind in storm B gets the message event i of that kind got in storm A."""
        seen: Counter[str] = Counter()
        plan: dict[str, list[str]] = defaultdict(list)
        for row in fetched:
            kind = b.kind_of[row["objectid"]].name
            msgs = messages.get(kind)
            if msgs:
                plan[msgs[seen[kind] % len(msgs)]].append(row["eventid"])
                seen[kind] += 1
        return plan

    out.floor = run_floor(b.rpc, triggerids=b.triggerids, eventid_from=before_b + 1, assign=assign, action=ACTION)
    floor_end = time.time()
    rows_b = storm_rows(b.lab.call, b.triggerids, before_b + 1, acks=True)
    out.floor_checked = sum(1 for r in rows_b if len(hefestus_acks(r, b.userid)) == 1)
    f["floor_e2e"] = floor_end - min(int(r["clock"]) + int(r["ns"]) / 1e9 for r in rows_b)
    f["ratio_e2e"] = f["e2e"] / out.floor.seconds
    f["ratio_e2e_e2e"] = f["e2e"] / f["floor_e2e"]
    f["ratio_processing"] = f["processing"] / out.floor.seconds
    f["without_model"] = f["processing"] - w["model"]["seconds"]
    f["ratio_without_model"] = f["without_model"] / out.floor.seconds
    print(f"   Hefestus {f['e2e']:.2f} s end to end, floor {out.floor.seconds:.2f} s "
          f"({out.floor.ack_calls} writes): {f['ratio_e2e']:.1f}x", flush=True)
    return out


# --------------------------------------------------------------------------- main


class Tee(io.TextIOBase):
    def __init__(self) -> None:
        self.buf = io.StringIO()

    def write(self, s: str) -> int:
        sys.stderr.flush()
        out = sys.__stdout__
        if out is not None:
            out.write(s)
            out.flush()
        return self.buf.write(s)


def pattern_bench() -> str:
    import patterns_bench

    print("== pattern engine (bench/patterns_bench.py)", flush=True)
    tee = Tee()
    with contextlib.redirect_stdout(tee):
        patterns_bench.main()
    return tee.buf.getvalue()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-kind", type=int, default=100, help="events per kind (10 kinds)")
    ap.add_argument("--poll", type=float, default=1.0, help="Hefestus poll interval, s (its minimum)")
    ap.add_argument("--page-size", type=int, default=1000)
    ap.add_argument("--deadline", type=float, default=420, help="s Hefestus may take per scenario")
    ap.add_argument("--only", choices=("up", "down", "scale"), help="run one storm scenario")
    ap.add_argument("--no-patterns", action="store_true", help="skip the pattern engine benchmark")
    ap.add_argument("--no-push", action="store_true", help="skip the push latency benchmark")
    ap.add_argument("--no-parallel", action="store_true", help="skip the parallel model calls benchmark")
    ap.add_argument("--failover-kills", type=int, default=5, help="leader kills for the fail-over figure (0: skip)")
    ap.add_argument("--push-min-gap", type=float,
                    help="replace app/daemon.py's PUSH_MIN_GAP in the pushed daemon (to measure a proposal)")
    ap.add_argument("--push-singles", type=int, default=15, help="problems fired one at a time")
    ap.add_argument("--push-gap", type=float, default=3.0, help="s between two of them")
    ap.add_argument("--profile", action="store_true", help="cProfile the Hefestus cycles (skews timing)")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md")
    ap.add_argument("--keep", type=Path, help="keep the work files (configs, logs, worker results) here")
    args = ap.parse_args()

    patterns_out = "" if args.no_patterns else pattern_bench()
    admin = ZabbixClient(ZabbixSettings(url=URL, user=ADMIN[0], password=SecretStr(ADMIN[1]), timeout=60))
    version = admin.connect()
    userid = bench_user(admin.call)
    lab = ZabbixLab(admin.call)
    print(f"== Zabbix {version} at {URL}: preparing {len(KINDS) * 2} hosts", flush=True)
    hosts = {h: lab.host(h, k.group) for k in KINDS for h in k.hosts()}
    kind_of = {hosts[h].triggerid: k for k in KINDS for h in k.hosts()}
    # One value per host, each resent until the server's configuration cache knows the item
    # (new hosts): a storm is sent once and never resent in part.
    lab.send([(hosts[h], "storm-bench warm-up") for h in sorted(hosts)])
    closed = close_open_problems(admin.call, sorted(kind_of))
    if closed:
        print(f"   closed {closed} problem(s) left open by earlier runs", flush=True)
        time.sleep(3)
    rpc = JsonRpc(URL)
    rpc.login(USER, PASSWORD)

    down = {"url": f"http://127.0.0.1:{free_port()}", "timeout": 5}
    # One call at a time: the model server runs one answer at a time anyway (2 cores), and so the
    # summed answer times are the model's wall time.
    up = {"timeout": 120, "max_tokens": 400, "temperature": 0, "max_concurrency": 1}
    scenarios = [Scenario("up", f"model up ({MODEL})", up), Scenario("down", "model down (closed port)", down),
                 Scenario("scale", "model down, state of 100,000 events and 10,000 answers", down,
                          prefill=(100_000, 10_000))]
    if args.only:
        scenarios = [s for s in scenarios if s.key == args.only]
    started = datetime.now(UTC)
    load = os.getloadavg()
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="hefestus-storm-") as tmp:
        base = args.keep or Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        bench = Bench(args, lab, hosts, kind_of, rpc, userid, base)
        try:
            for i, sc in enumerate(scenarios):
                seed = int(started.timestamp()) + i
                if sc.key == "up":
                    print("== starting the model server (SmolLM2-135M behind Ollama's API)", flush=True)
                    with model_server(ROOT / "deploy" / "dev" / "model_server.py", base, model=MODEL) as url:
                        sc.ollama = {**sc.ollama, "url": url}
                        outcomes.append(run_scenario(bench, sc, seed))
                else:
                    outcomes.append(run_scenario(bench, sc, seed))
                if args.profile:
                    print_profile(base / sc.key / "worker.pstats")
        finally:
            close_open_problems(admin.call, sorted(kind_of))
        push = None
        if not args.no_push:
            print("== push latency (bench/push_bench.py): webhook media type, one at a time, then a burst of 100",
                  flush=True)
            push = push_bench.run(admin, lab, (USER, PASSWORD), URL, base / "push", singles=args.push_singles,
                                  gap=args.push_gap, push_min_gap=args.push_min_gap)
        failover = None
        if args.failover_kills:
            print(f"== fail-over (bench/failover_bench.py): {args.failover_kills} leader kills", flush=True)
            failover = failover_bench.run(admin, lab, args.failover_kills)
    parallel = None
    if not args.no_parallel:
        print("== model calls in parallel (bench/model_bench.py)", flush=True)
        parallel = model_bench.run()

    rows = table(outcomes)
    extra = extra_rows(push, parallel, failover)
    print()
    print(render_table(rows, markdown=False))
    if extra:
        print()
        print(render_table(extra, markdown=False))
    write_results(args.results, started, load, version, outcomes, rows, patterns_out, args, extra=extra,
                  push=push, parallel=parallel)
    print(f"\n== written {args.results.relative_to(ROOT) if args.results.is_relative_to(ROOT) else args.results}")
    expect = args.per_kind * len(KINDS)
    bad = [o for o in outcomes if o.exactly_one + o.preempted != o.events or o.events != expect]
    for o in bad:
        print(f"!! {o.scenario.title}: {o.events - o.exactly_one - o.preempted} of {o.events} events without "
              f"exactly one Hefestus message (expected {expect} events)", file=sys.stderr)
    for o in outcomes:
        if o.foreign:
            print(f"!! {o.scenario.title}: {interference(o)}", file=sys.stderr)
    pushed_bad = push is not None and push.exactly_one[0] != push.exactly_one[1]
    if push is not None and pushed_bad:
        print(f"!! push: {push.exactly_one[1] - push.exactly_one[0]} of {push.exactly_one[1]} pushed events "
              "without exactly one Hefestus message", file=sys.stderr)
    return 1 if bad or pushed_bad else 0


def print_profile(path: Path) -> None:
    import pstats

    if path.exists():
        print(f"-- cProfile of the Hefestus cycles ({path.parent.name}), top 25 by cumulative time")
        pstats.Stats(str(path)).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    sys.exit(main())
