"""Self-healing through the real daemon: `hefestus run` against the real Zabbix and a local
Rundeck. The first message says what runs; the job runs once even across kill -9; its
outcome and the closed loop follow as further messages; dry-run runs nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from hefestus.pipeline.render import MARKER
from tests.support.faults import record_fault
from tests.support.helpers import eventually
from tests.support.lab import LabHost, ZabbixLab
from tests.support.rundeck import FakeRundeck
from tests.support.selfheal import RESTART, TOKEN, UNIT_FAILED, rules_with_real_job
from tests.support.zabbix_config import write_config


def config(tmp_path: Path, url: str, mode: str) -> Path:
    return write_config(tmp_path, classification={"rules_dir": str(rules_with_real_job(tmp_path))},
                        rundeck={"url": url, "token": TOKEN, "timeout": 5},
                        remediation={"mode": mode, "poll_min": 0.2, "poll_max": 1, "recovery_window": 3})


def messages(lab: ZabbixLab, host: LabHost) -> list[str]:
    rows = lab.events_for([host], expect=0, timeout=0, acks=True)
    out: list[str] = []
    for e in rows:
        acks = sorted(e["acknowledges"], key=lambda a: (int(a["clock"]), a["message"]))
        out.extend(a["message"] for a in acks if a["message"].startswith(MARKER))
    return out


def start(cfg: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "hefestus", "run", "--poll-interval", "1"],
                            env={**os.environ, "HEFESTUS_CONFIG": str(cfg)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return err


def test_job_runs_once_across_kill_9_and_outcome_and_closed_loop_follow(lab: ZabbixLab, tmp_path: Path) -> None:
    host = lab.host(lab.unique("it-selfheal"), "Linux servers")
    with FakeRundeck(token=TOKEN) as fake:
        job = fake.add_job(RESTART, "Restart systemd service", project="ops", required_options=("unit",),
                           polls_to_finish=10**6, output=("stopping nginx", "starting nginx", "nginx is active"))
        cfg = config(tmp_path, fake.url, "on")
        subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], check=True, capture_output=True,
                       env={**os.environ, "HEFESTUS_CONFIG": str(cfg)})
        lab.send([(host, UNIT_FAILED)])
        daemon = start(cfg)
        first = eventually(lambda: messages(lab, host), what="first message")[0]
        assert first.splitlines()[1] == (
            f"Self-healing: running Rundeck job 'Restart systemd service' (ops) with unit=nginx.service, "
            f"host={host.host} — outcome will follow")
        eventually(lambda: fake.calls("run"), what="the run call")
        daemon.send_signal(signal.SIGKILL)  # mid-job
        daemon.wait()
        execution = eventually(lambda: list(fake.executions.values()), 10, "the execution the run made")[0]
        polls = execution.polls
        daemon = start(cfg)
        try:
            # a few polls: the restarted daemon follows the execution
            eventually(lambda: execution.polls >= polls + 3, 30, "the restarted daemon polling the execution")
            assert len(fake.calls("run")) == 1, "a job must never start twice"
            fake.finish(next(iter(fake.executions)))
            got = eventually(lambda: len(m := messages(lab, host)) >= 3 and m, timeout=60, what="outcome + loop")
        finally:
            err = stop(daemon)
        assert job.name == "Restart systemd service"
        assert got[1].startswith(f"{MARKER} self-healing: Rundeck job 'Restart systemd service' (ops) succeeded")
        assert "nginx is active" in got[1]
        assert got[2].startswith(f"{MARKER} self-healing: remediation ran but the problem is still open")
        assert len(fake.calls("run")) == 1 and TOKEN not in err
        record_fault("kill -9 while a Rundeck job runs", {"event": got[:1]})


def test_dry_run_decides_reports_and_runs_nothing(lab: ZabbixLab, tmp_path: Path) -> None:
    host = lab.host(lab.unique("it-dryrun"), "Linux servers")
    with FakeRundeck(token=TOKEN) as fake:
        fake.add_job(RESTART, "Restart systemd service", project="ops")
        cfg = config(tmp_path, fake.url, "dry-run")
        env = {**os.environ, "HEFESTUS_CONFIG": str(cfg)}
        subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], check=True, capture_output=True, env=env)
        lab.send([(host, UNIT_FAILED)])
        lab.events_for([host], expect=1)
        subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], check=True, capture_output=True, env=env)
        (msg,) = messages(lab, host)
        assert msg.splitlines()[1].startswith("Self-healing (dry-run): would run Rundeck job "
                                              "'Restart systemd service' (ops) with unit=nginx.service")
        assert fake.calls("run") == []
        audit = subprocess.run([sys.executable, "-m", "hefestus", "remediation"], env=env, check=True,
                               capture_output=True, text=True).stdout
        assert "mode: dry-run" in audit and "dry-run" in audit.splitlines()[-1]


def test_rundeck_faults_are_reported_and_never_run_twice(lab: ZabbixLab, tmp_path: Path) -> None:
    """One failing run call per event — empty 503, HTML 500, 409 conflict, a hang past the
    client timeout — through the real daemon: each event gets its first message and an
    outcome that says what happened, and no job is started twice by Hefestus."""
    faults = ("unavailable", "html-500", "conflict", "hang")
    hosts = {f: lab.host(lab.unique(f"it-rd-{f}"), "Linux servers") for f in faults}
    with FakeRundeck(token=TOKEN, hang_seconds=8) as fake:
        fake.add_job(RESTART, "Restart systemd service", project="ops", polls_to_finish=1)
        cfg = config(tmp_path, fake.url, "on")
        env = {**os.environ, "HEFESTUS_CONFIG": str(cfg)}
        subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], check=True, capture_output=True, env=env)
        daemon = start(cfg)
        got: dict[str, list[str]] = {}
        try:
            for f in faults:  # one at a time, so each run call meets its own fault
                fake.fault("run", f)  # type: ignore[arg-type]
                lab.send([(hosts[f], UNIT_FAILED)])
                got[f] = eventually(lambda h=hosts[f]: len(m := messages(lab, h)) >= 2 and m, timeout=90,  # type: ignore[misc]
                              what=f"{f} outcome: {messages(lab, hosts[f])}")
        finally:
            stop(daemon)
    runs = fake.calls("run")
    by_host: dict[str, int] = {}
    for r in runs:
        host = dict(r.body.get("options", {})).get("host", "?") if isinstance(r.body, dict) else "?"
        by_host[host] = by_host.get(host, 0) + 1
    for f in faults:
        first, outcome = got[f][0], got[f][1]
        assert "Self-healing: running Rundeck job" in first.splitlines()[1]
        assert outcome.startswith(f"{MARKER} self-healing:"), outcome
        record_fault(f"Rundeck run answers {f}", {"event": got[f][:1]})
    # a 409 means "not started": one retry may follow; every other fault: one call, never again
    assert all(by_host.get(hosts[f].host, 0) == 1 for f in ("unavailable", "html-500", "hang")), by_host
    assert by_host.get(hosts["conflict"].host, 0) in (1, 2), by_host
    for f in ("unavailable", "hang"):  # the run call may have reached Rundeck: safety first
        assert "self-healing: unknown whether Rundeck job 'Restart systemd service' (ops) started" in got[f][1]
    assert "not re-run" in got["hang"][1] or "by hand" in got["hang"][1]


def test_cooldown_holds_and_an_injection_attempt_is_refused(lab: ZabbixLab, tmp_path: Path) -> None:
    """A second failure on the same host within the cooldown runs nothing; a value from the
    event that carries a shell injection fails its allow-list: no run, and Zabbix says why."""
    pool = "5d6e7f80-2222-4c55-9a57-2b8f0e6d1c46"
    web = lab.host(lab.unique("it-cool"), "Linux servers")
    db = lab.host(lab.unique("it-inject"), "Databases", tags=[("service", "pgbouncer; rm -rf /")])
    with FakeRundeck(token=TOKEN) as fake:
        fake.add_job(RESTART, "Restart systemd service", project="ops", polls_to_finish=1)
        fake.add_job(pool, "Restart pooler", project="db", polls_to_finish=1)
        cfg = config(tmp_path, fake.url, "on")
        (tmp_path / "rules" / "60-it.toml").write_text(f'''
[[remediation]]
name = "restart-pooler"
domain = "database"
category = "too-many-connections"
project = "db"
job_id = "{pool}"
job_name = "Restart pooler"
options.service = {{ value = "{{tag:service}}", allow = '^[a-z0-9][a-z0-9-]{{0,59}}$' }}
''')
        env = {**os.environ, "HEFESTUS_CONFIG": str(cfg)}
        once = [sys.executable, "-m", "hefestus", "run", "--once"]
        subprocess.run(once, check=True, capture_output=True, env=env)
        lab.send([(web, UNIT_FAILED), (db, "FATAL:  sorry, too many clients already")])
        lab.events_for([web, db], expect=2)
        daemon = start(cfg)
        try:
            eventually(lambda: len(messages(lab, web)) >= 2, what="the first run's outcome")
            lab.send([(web, UNIT_FAILED.replace("03:12:09", "03:14:30"))])
            lab.events_for([web], expect=2)

            def firsts_() -> list[str]:
                return [m for m in messages(lab, web) if not m.startswith(f"{MARKER} self-healing:")]

            firsts = eventually(lambda: len(f := firsts_()) >= 2 and f, what="the second event's message")
        finally:
            stop(daemon)
        assert len(firsts) == 2
        assert firsts[1].splitlines()[1].startswith("Self-healing refused: ")
        assert "cooldown" in firsts[1].splitlines()[1] or "again for" in firsts[1].splitlines()[1]
        (inject,) = messages(lab, db)
        line = inject.splitlines()[1]
        assert line.startswith("Self-healing refused: ") and "service" in line and "rm -rf" in line, line
        runs = fake.calls("run")
        assert len(runs) == 1 and runs[0].path.endswith(f"/job/{RESTART}/run")  # one run, not the pooler
