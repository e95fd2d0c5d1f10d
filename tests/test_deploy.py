"""deploy/hefestus.service: verified by systemd, and the daemon run under its own rules.

(The container image and the webhook media type have their own test files.)

Nothing here needs a running systemd, Docker or Zabbix. The unit is checked by
``systemd-analyze`` itself (``verify``, and ``security`` for its exposure score), and the
daemon is run under the unit's own seccomp restrictions (SystemCallFilter,
MemoryDenyWriteExecute, RestrictAddressFamilies, NoNewPrivileges), read from the unit
file and applied with libseccomp, exactly the kernel mechanism systemd uses: a
hardening line that would break the daemon fails here, not on a customer's server.

Run as a script (``python tests/test_deploy.py --sandbox SPEC -- ARGV``) this module is
the sandbox launcher those tests use.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import eventually, free_port, metric, wait_serving
from tests.support.paths import ROOT
from tests.support.sandbox import sandboxed

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "hefestus.service"
DOCKERFILE = DEPLOY / "Dockerfile"
MEDIA_TYPE = DEPLOY / "zabbix" / "hefestus-media-type.yaml"
WEBHOOK_JS = DEPLOY / "zabbix" / "hefestus-webhook.js"
HEFESTUS = Path(sys.executable).parent / "hefestus"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


# -- the unit ------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value in file order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"setting outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not key=value: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def _analyze() -> str:
    if not os.access(SYSTEMD_ANALYZE, os.X_OK):
        pytest.fail(f"{SYSTEMD_ANALYZE} is missing: apt-get install systemd (it ships systemd-analyze)",
                    pytrace=False)
    return SYSTEMD_ANALYZE


def _local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this venv's hefestus: verify checks it exists."""
    assert HEFESTUS.exists(), f"{HEFESTUS} missing: run `make venv`"
    text = UNIT.read_text().replace("/opt/hefestus/bin/hefestus", str(HEFESTUS))
    path = tmp_path / "hefestus.service"
    path.write_text(text)
    return path


def test_systemd_analyze_verify_passes(tmp_path: Path) -> None:
    """No warning at all: an unknown key or a typo in a value is a warning, not an error."""
    out = subprocess.run([_analyze(), "verify", str(_local_unit(tmp_path))], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0 and not (out.stdout + out.stderr).strip(), out.stdout + out.stderr


def test_systemd_analyze_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above is not vacuous: verify does complain about a bad line here."""
    path = _local_unit(tmp_path)
    path.write_text(path.read_text().replace("ProtectSystem=strict", "ProtectSystem=strickt"))
    out = subprocess.run([_analyze(), "verify", str(path)], capture_output=True, text=True,
                         timeout=60, cwd=tmp_path)
    assert "strickt" in out.stdout + out.stderr


def test_security_exposure_is_low(tmp_path: Path) -> None:
    out = subprocess.run([_analyze(), "security", "--offline=true", "--no-pager",
                          str(_local_unit(tmp_path))], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", out.stdout)
    assert found, out.stdout + out.stderr
    # 0 = fully locked down, 10 = no hardening; systemd calls up to 3.9 "OK". Ours is 1.4:
    # what remains is network access, which the daemon needs.
    assert float(found.group(1)) <= 2.0, out.stdout


def test_unit_settings(unit: dict[str, dict[str, list[str]]]) -> None:
    s = {k: v[-1] for k, v in unit["Service"].items()}
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main"
    assert 30 <= int(s["WatchdogSec"]) <= 600
    assert s["User"] == s["Group"] == "hefestus"
    assert s["ExecStart"] == "/opt/hefestus/bin/hefestus --config /etc/hefestus/hefestus.toml run"
    assert s["ExecReload"] == "/bin/kill -HUP $MAINPID" and s["KillSignal"] == "SIGTERM"
    assert s["Restart"] == "on-failure" and "2" in s["RestartPreventExitStatus"].split()
    assert int(s["TimeoutStopSec"]) >= 60
    assert "StartLimitBurst" in unit["Unit"] and "StartLimitIntervalSec" in unit["Unit"]
    assert s["EnvironmentFile"] == "-/etc/hefestus/hefestus.env"
    assert s["StateDirectory"] == "hefestus" and s["ConfigurationDirectory"] == "hefestus"
    assert s["UMask"] == "0077"
    hardening = {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                 "PrivateDevices": "yes", "NoNewPrivileges": "yes", "ProtectKernelTunables": "yes",
                 "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes",
                 "RestrictNamespaces": "yes", "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
                 "RestrictRealtime": "yes", "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": "",
                 "SystemCallArchitectures": "native",
                 "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX"}
    assert {k: s.get(k) for k in hardening} == hardening
    assert unit["Service"]["SystemCallFilter"][0] == "@system-service"
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_and_readme_install_the_same_paths() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "python3 -m venv /opt/hefestus " in readme  # ExecStart's /opt/hefestus/bin/hefestus
    assert "/etc/hefestus/hefestus.toml" in readme and "/etc/hefestus/hefestus.env" in readme


def test_env_file_names_only_known_variables_and_holds_no_secret() -> None:
    from hefestus.config import ENV_OVERRIDES

    names = set()
    for line in (DEPLOY / "hefestus.env").read_text().splitlines():
        m = re.match(r"^#?(HEFESTUS_[A-Z_]+)=(.*)$", line.strip())
        if m:
            names.add(m.group(1))
            if any(w in m.group(1) for w in ("TOKEN", "PASSWORD", "WEBHOOK_URL")):
                assert m.group(2) == "", f"{m.group(1)} must ship empty"
    assert names <= set(ENV_OVERRIDES), names - set(ENV_OVERRIDES)
    assert {"HEFESTUS_ZABBIX_URL", "HEFESTUS_ZABBIX_TOKEN", "HEFESTUS_API_TOKEN"} <= names


# -- the daemon under the unit's seccomp restrictions --------------------------------


def sandbox_spec(unit: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """What the unit restricts at the system-call level, as plain data for the launcher."""
    service = unit["Service"]
    groups = _syscall_groups()

    def expand(names: list[str]) -> set[str]:
        out: set[str] = set()
        for name in names:
            out |= expand(groups[name]) if name.startswith("@") else {name}
        return out

    allowed: set[str] = set()
    for entry in service.get("SystemCallFilter", []):
        deny = entry.startswith("~")
        names = expand(entry.lstrip("~").split())
        allowed = allowed - names if deny else allowed | names
    families = service.get("RestrictAddressFamilies", [""])[-1].split()
    return {"allow": sorted(allowed),
            "errno": getattr(errno, service.get("SystemCallErrorNumber", ["EPERM"])[-1]),
            "mdwe": service.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes",
            "families": [getattr(socket, f) for f in families]}


def _syscall_groups() -> dict[str, list[str]]:
    out = subprocess.run([_analyze(), "syscall-filter", "--no-pager"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.startswith("    ") and not line.strip().startswith("#"):
            current.append(line.strip())
    assert "@system-service" in groups, out[:500]
    return groups


def test_the_sandbox_really_restricts(unit: dict[str, dict[str, list[str]]]) -> None:
    """The launcher bites: W+X memory, a netlink socket and a @resources call are refused."""
    probe = """
import errno, mmap, os, socket
def refused(f):
    try:
        f()
    except OSError as exc:
        return exc.errno
    return 0
print(refused(lambda: mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)),
      refused(lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW)),
      refused(lambda: os.setpriority(os.PRIO_PROCESS, 0, 5)),
      refused(lambda: socket.socket(socket.AF_INET6).close()))
"""
    out = subprocess.run(sandboxed(sandbox_spec(unit), [sys.executable, "-c", probe]),
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(errno.EPERM), str(errno.EAFNOSUPPORT), str(errno.EPERM), "0"]


def test_daemon_runs_under_the_units_seccomp_restrictions(unit: dict[str, dict[str, list[str]]],
                                                          tmp_path: Path) -> None:
    """`hefestus run` with its API: polls (Zabbix is down here, so the poll fails as it
    should), answers the API, takes a push, reloads on SIGHUP and stops cleanly on SIGTERM,
    all with the syscalls and memory rules of deploy/hefestus.service."""
    import httpx

    port, dead, token = free_port(), free_port(), "sandbox-test-token-0123456789"
    config = tmp_path / "hefestus.toml"
    config.write_text(
        f'[zabbix]\nurl = "http://127.0.0.1:{dead}"\ntoken = "not-used-zabbix-is-down"\n'
        f'timeout = 2\nretries = 1\n'
        f'[intake]\npoll_interval = 1\n'
        f'[classification]\nrules_dir = "{ROOT / "rules"}"\npatterns_dir = "{ROOT / "patterns"}"\n'
        f'[state]\npath = "{tmp_path / "state.db"}"\n'
        f'[api]\nenabled = true\nlisten = "127.0.0.1:{port}"\ntoken = "{token}"\n'
        f'[logging]\nformat = "json"\n')
    log = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEFESTUS_")}
    with log.open("w") as err:
        proc = subprocess.Popen(sandboxed(sandbox_spec(unit), [str(HEFESTUS), "--config", str(config), "run"]),
                                stderr=err, stdout=subprocess.DEVNULL, env=env)
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    try:
        deadline = time.monotonic() + 30
        wait_serving(base, proc, log=log, timeout=30)
        answer = httpx.post(f"{base}/api/errors/database", headers=auth, timeout=10,
                            json={"error_details": "FATAL:  sorry, too many clients already"})
        assert answer.status_code == 200 and answer.json()["category"] == "too-many-connections"
        assert httpx.post(f"{base}/api/zabbix/events", headers=auth, timeout=10,
                          json={"eventid": "42", "event_value": "1"}).json()["status"] == "queued"
        # polls keep running (and failing: no Zabbix here)
        eventually(lambda: metric(base, token, 'hefestus_dependency_errors_total{dependency="zabbix"}') >= 2,
                   deadline - time.monotonic(), lambda: f"two failed polls; log:\n{log.read_text()[-3000:]}", 0.2)
        proc.send_signal(signal.SIGHUP)
        eventually(lambda: "rules and patterns reloaded" in log.read_text(), deadline - time.monotonic(),
                   lambda: f"the reload on SIGHUP; log:\n{log.read_text()[-3000:]}", 0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    text = log.read_text()
    assert proc.returncode == 0, text[-3000:]
    assert "zabbix unavailable" in text and '"stopped"' in text.splitlines()[-1]
    assert "Traceback" not in text and "Operation not permitted" not in text, text[-3000:]
