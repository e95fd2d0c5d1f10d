"""Problems fired at a real Zabbix 6.0 end up with exactly one Hefestus message each."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hefestus.app.build import App
from hefestus.app.daemon import run_cycle
from hefestus.classify.knowledge import load_knowledge
from hefestus.pipeline.render import MARKER
from hefestus.values import Classification
from tests.support.helpers import eventually
from tests.support.lab import LabHost, ZabbixLab, hefestus_messages
from tests.support.paths import ROOT
from tests.support.zabbix_config import IT_USER, write_config

SAMPLES = {
    "kubernetes": ("Kubernetes nodes",
                   "Warning  BackOff  kubelet  Back-off restarting failed container api in pod "
                   "api-7d9f8b6c5-x2k4q_shop(5f0c1d2e-8a4b-4c3d-9e1f-0a1b2c3d4e5f)"),
    "database": ("Databases", "FATAL:  sorry, too many clients already"),
    "linux": ("Linux servers",
              "Nov 24 03:12:09 web systemd[1]: nginx.service: Failed with result 'exit-code'."),
}


def fire(lab: ZabbixLab, hosts: dict[str, LabHost], texts: dict[str, str]) -> list[dict[str, Any]]:
    before = {e["eventid"] for e in lab.events_for(list(hosts.values()), expect=0, timeout=0)}
    lab.send([(hosts[d], t) for d, t in texts.items()])
    rows = lab.events_for(list(hosts.values()), expect=len(before) + len(texts))
    new = [e for e in rows if e["eventid"] not in before]
    assert len(new) == len(texts), f"zabbix made {len(new)} events for {len(texts)} values"
    return new


def acks(lab: ZabbixLab, hosts: dict[str, LabHost], eventids: set[str]) -> dict[str, list[str]]:
    rows = lab.events_for(list(hosts.values()), expect=0, timeout=0, acks=True)
    return {e["eventid"]: hefestus_messages(e) for e in rows if e["eventid"] in eventids}


def make_hosts(lab: ZabbixLab) -> dict[str, LabHost]:
    return {d: lab.host(lab.unique(f"it-{d}"), group) for d, (group, _) in SAMPLES.items()}


def run_until_quiet(app: App, cycles: int = 5) -> None:
    for _ in range(cycles):
        report = run_cycle(app)
        assert report is not None
        if report.fetched == 0:
            return


def test_three_domains_classified_and_acknowledged_once(lab: ZabbixLab, make_app: Callable[..., App],
                                                       tmp_path: Path) -> None:
    hosts = make_hosts(lab)
    app = make_app()
    run_until_quiet(app)  # first start: cursor = now
    events = fire(lab, hosts, {d: t for d, (_, t) in SAMPLES.items()})
    ids = {e["eventid"] for e in events}
    run_until_quiet(app)
    got = acks(lab, hosts, ids)
    assert all(len(m) == 1 for m in got.values()), got
    firsts = sorted(m[0].splitlines()[0] for m in got.values())
    assert firsts == sorted([
        f"{MARKER} database / too-many-connections — pattern database:{_pid('database', SAMPLES)}, "
        f"confidence {_conf('database', SAMPLES)}%",
        f"{MARKER} kubernetes / {_cat('kubernetes', SAMPLES)} — pattern kubernetes:"
        f"{_pid('kubernetes', SAMPLES)}, confidence {_conf('kubernetes', SAMPLES)}%",
        f"{MARKER} linux / {_cat('linux', SAMPLES)} — pattern linux:{_pid('linux', SAMPLES)}, "
        f"confidence {_conf('linux', SAMPLES)}%",
    ])
    # The full item value reached the patterns (opdata alone is cut to 20 characters).
    linux_msg = next(m[0] for m in got.values() if " linux / " in m[0])
    assert "nginx.service" in linux_msg

    # Restart with the same state: nothing new. Lost state + backlog: the marker prevents a double.
    app.close()
    run_until_quiet(make_app())
    (tmp_path / "state.db").unlink()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"state.db{suffix}").unlink(missing_ok=True)
    fresh = make_app(intake={"first_start": "backlog", "backlog_hours": 1})
    run_until_quiet(fresh)
    got = acks(lab, hosts, ids)
    assert all(len(m) == 1 for m in got.values()), got


def _expected(domain: str, samples: dict[str, tuple[str, str]]) -> Classification:
    k = load_knowledge(ROOT / "rules", ROOT / "patterns")
    return k.catalog.classify(samples[domain][1], domain)


def _pid(d: str, s: dict[str, tuple[str, str]]) -> str:
    return str(_expected(d, s).pattern_id)


def _cat(d: str, s: dict[str, tuple[str, str]]) -> str:
    return str(_expected(d, s).category)


def _conf(d: str, s: dict[str, tuple[str, str]]) -> int:
    return round(_expected(d, s).confidence * 100)


def test_event_visible_behind_the_cursor_is_handled(lab: ZabbixLab, make_app: Callable[..., App]) -> None:
    """Simulates a slow history syncer: the cursor already moved past an event nobody handled."""
    hosts = make_hosts(lab)
    app = make_app()
    run_until_quiet(app)
    events = fire(lab, hosts, {"linux": SAMPLES["linux"][1], "database": SAMPLES["database"][1]})
    newest = max(int(e["eventid"]) for e in events)
    app.state.ledger.advance_cursor(newest)  # as if both ids had been read before they were visible
    run_until_quiet(app)
    got = acks(lab, hosts, {e["eventid"] for e in events})
    assert sorted(len(m) for m in got.values()) == [1, 1]


def test_daemon_runs_and_stops_gracefully(lab: ZabbixLab, tmp_path: Path) -> None:
    hosts = make_hosts(lab)
    config = write_config(tmp_path)
    env = {**os.environ, "HEFESTUS_CONFIG": str(config)}
    subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], env=env, check=True,
                   capture_output=True)
    events = fire(lab, hosts, {"kubernetes": SAMPLES["kubernetes"][1]})
    daemon = subprocess.Popen([sys.executable, "-m", "hefestus", "run", "--poll-interval", "1"],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        def acked() -> dict[str, list[str]] | None:
            got = acks(lab, hosts, {e["eventid"] for e in events})
            return got if all(got.values()) else None

        got = eventually(acked, 60, "a Hefestus message on every event", interval=1)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert all(len(m) == 1 for m in got.values()), got
    lines = [line for line in err.splitlines() if '"event acknowledged"' in line]
    assert lines and '"eventid": ' in lines[0] and '"host": "it-kubernetes-' in lines[0]
    assert IT_USER[1] not in err
    assert '"stopped"' in err.splitlines()[-1]


def test_each_event_is_classified_by_its_own_item_value(lab: ZabbixLab,
                                                        make_app: Callable[..., App]) -> None:
    """Two values on one item within the same second: each event must see the value that
    raised it (history is matched on clock *and* ns), not the item's latest value."""
    host = lab.host(lab.unique("it-db"), "Databases")
    app = make_app()
    run_until_quiet(app)
    texts = ["FATAL:  sorry, too many clients already",
             'ERROR:  could not extend file "base/16384/2619": No space left on device']
    before = {e["eventid"] for e in lab.events_for([host], expect=0, timeout=0)}
    lab.send([(host, t) for t in texts])
    events = [e for e in lab.events_for([host], expect=len(before) + 2) if e["eventid"] not in before]
    run_until_quiet(app)
    rows = lab.events_for([host], expect=0, timeout=0, acks=True)
    got = {e["eventid"]: hefestus_messages(e) for e in rows if e["eventid"] in {x["eventid"] for x in events}}
    firsts = [got[e["eventid"]][0].splitlines()[0] for e in events]
    assert " / too-many-connections " in firsts[0]
    assert " / disk-full " in firsts[1]
