"""Self-healing through the real daemon: `hefestus run` against the real Zabbix and a local
Rundeck. The first message says what runs; the job runs once even across kill -9; its
outcome and the closed loop follow as further messages; dry-run runs nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from hefestus.render import MARKER
from hefestus.testing import LabHost, ZabbixLab
from hefestus.testing_rundeck import FakeRundeck

from ..conftest import record_fault
from .conftest import ROOT, write_config

TOKEN = "it-rundeck-token-0123456789"
RESTART = "3f2a9c1e-6b0d-4c55-9a57-2b8f0e6d1c44"
UNIT_FAILED = "Nov 24 03:12:09 web systemd[1]: nginx.service: Failed with result 'exit-code'."


def rules_with_real_job(tmp_path: Path) -> Path:
    """The shipped rules, with the restart rule's placeholder id replaced by a real one."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    linux = rules / "50-linux.toml"
    text = linux.read_text().replace("00000000-0000-0000-0000-000000000001", RESTART)
    linux.write_text(text.replace("recovery_window = 300 ", "recovery_window = 3 "))  # a short loop
    return rules


def config(tmp_path: Path, url: str, mode: str) -> Path:
    return write_config(tmp_path, classification={"rules_dir": str(rules_with_real_job(tmp_path))},
                        rundeck={"url": url, "token": TOKEN, "timeout": 5},
                        remediation={"mode": mode, "poll_min": 0.2, "poll_max": 1, "recovery_window": 3})


def messages(lab: ZabbixLab, host: LabHost) -> list[str]:
    rows = lab.events_for([host], expect=0, timeout=0, acks=True)
    out = []
    for e in rows:
        acks = sorted(e["acknowledges"], key=lambda a: (int(a["clock"]), a["message"]))
        out.extend(a["message"] for a in acks if a["message"].startswith(MARKER))
    return out


def wait(check: Any, timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


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
        first = wait(lambda: messages(lab, host), what="first message")[0]
        assert first.splitlines()[1] == (
            f"Self-healing: running Rundeck job 'Restart systemd service' (ops) with unit=nginx.service, "
            f"host={host.host} — outcome will follow")
        wait(lambda: fake.calls("run"), what="the run call")
        daemon.send_signal(signal.SIGKILL)  # mid-job
        daemon.wait()
        daemon = start(cfg)
        try:
            time.sleep(3)  # a few polls: the restarted daemon follows the execution
            assert len(fake.calls("run")) == 1, "a job must never start twice"
            fake.finish(next(iter(fake.executions)))
            got = wait(lambda: len(m := messages(lab, host)) >= 3 and m, timeout=60, what="outcome + loop")
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
