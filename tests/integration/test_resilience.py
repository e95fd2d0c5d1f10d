"""Zabbix going away, sessions expiring, and what `hefestus check` says about it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hefestus.adapters.zabbix import ZabbixClient
from hefestus.cli import main
from hefestus.config import load_settings
from hefestus.errors import ZabbixAuthError
from tests.support.faults import record_fault
from tests.support.helpers import eventually, free_port, metric, wait_serving
from tests.support.lab import ZabbixLab
from tests.support.zabbix_config import IT_USER, write_config

from .test_end_to_end import SAMPLES, acks, fire, make_hosts

ZABBIX_ERRORS = 'hefestus_dependency_errors_total{dependency="zabbix"}'
POLLS = "hefestus_poll_cycles_total"


class Frontend:
    """A second, private frontend process on the same Zabbix database, so it can be stopped.
    ``root`` is the dev Zabbix's own frontend copy (deploy/dev/zabbix-up.sh: <run dir>/ui), whose
    conf/zabbix.conf.php names that database."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["php", "-d", "date.timezone=UTC", "-d", "memory_limit=256M", "-d", "post_max_size=16M",
             "-d", "max_execution_time=300", "-S", f"127.0.0.1:{self.port}", "-t", str(self.root)],
            env={**os.environ, "PHP_CLI_SERVER_WORKERS": "2"}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        eventually(self._listening, 20, "the php frontend to start", 0.2)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the workers too, not just the parent
            self.proc.wait()
            self.proc = None


@pytest.fixture
def frontend(lab: ZabbixLab) -> Iterator[Frontend]:
    f = Frontend(Path(lab.server_config).with_name("ui"))  # the run dir holds both
    f.start()
    yield f
    f.stop()


def test_frontend_stopped_mid_run_loses_nothing(lab: ZabbixLab, frontend: Frontend, tmp_path: Path) -> None:
    """The daemon keeps running while its API endpoint is dead; problems raised meanwhile
    are acknowledged once it is back, each exactly once."""
    hosts = make_hosts(lab)
    port, token = free_port(), "resilience-it-token-0123456789"  # the API: poll counts in /metrics
    config = write_config(tmp_path, frontend.url, api={"enabled": True, "listen": f"127.0.0.1:{port}",
                                                       "token": token})
    env = {**os.environ, "HEFESTUS_CONFIG": str(config)}
    subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], env=env, check=True,
                   capture_output=True)
    daemon = subprocess.Popen([sys.executable, "-m", "hefestus", "run", "--poll-interval", "1"],
                              env=env, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_serving(base, daemon)
        frontend.stop()
        events = fire(lab, hosts, {d: t for d, (_, t) in SAMPLES.items()})  # server still takes values
        failed = metric(base, token, ZABBIX_ERRORS)
        eventually(lambda: metric(base, token, ZABBIX_ERRORS) >= failed + 3, 30,
                   "three polls against the dead endpoint", 0.2)
        assert daemon.poll() is None, "the daemon died while Zabbix was down"
        ids = {e["eventid"] for e in events}
        assert all(not m for m in acks(lab, hosts, ids).values())
        frontend.start()
        eventually(lambda: all(acks(lab, hosts, ids).values()), 60,
                   lambda: f"a message on every event: {acks(lab, hosts, ids)}", 1)
        polls = metric(base, token, POLLS)  # a few more polls: nothing must be written twice
        eventually(lambda: metric(base, token, POLLS) >= polls + 3, 30, "three more polls", 0.2)
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    got = acks(lab, hosts, ids)
    record_fault("Zabbix frontend stopped and restarted", dict(got))
    assert sorted(len(m) for m in got.values()) == [1, 1, 1], got
    assert "zabbix unavailable; will retry at the next poll" in err


def _server_db(lab: ZabbixLab) -> dict[str, str]:
    """The Zabbix database (DBHost, DBPort, DBName, DBUser, DBPassword) as the dev server's own
    configuration names it: deploy/dev/zabbix-up.sh decides the names, not the tests."""
    lines = Path(lab.server_config).read_text().splitlines()
    return dict(ln.split("=", 1) for ln in lines if ln.startswith("DB") and "=" in ln)


def test_expired_session_is_renewed_once(tmp_path: Path, admin: ZabbixClient, lab: ZabbixLab) -> None:
    settings = load_settings(write_config(tmp_path), {})
    client = ZabbixClient(settings.zabbix)
    client.connect()
    old = client._api.auth
    # What auto-logout does: the session row turns passive.
    db = _server_db(lab)
    subprocess.run(["psql", "-h", db.get("DBHost", "127.0.0.1"), "-p", db.get("DBPort", "5432"),
                    "-U", db["DBUser"], "-d", db["DBName"], "-Xqc",
                    f"UPDATE sessions SET status = 1 WHERE sessionid = '{old}'"],
                   env={**os.environ, "PGPASSWORD": db.get("DBPassword", "")}, check=True)
    assert client.call("event.get", output=["eventid"], limit=1) is not None
    assert client._api.auth and client._api.auth != old


def test_bad_token_is_fatal_not_retried(tmp_path: Path, admin: ZabbixClient) -> None:
    cfg = write_config(tmp_path)
    settings = load_settings(cfg, {"HEFESTUS_ZABBIX_TOKEN": "0" * 64})
    client = ZabbixClient(settings.zabbix)
    with pytest.raises(ZabbixAuthError, match="Not authorized"):
        client.call("event.get", output=["eventid"], limit=1)


def test_check_with_api_token_reports_permissions(tmp_path: Path, admin: ZabbixClient,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    user = admin.call("user.get", output=["userid"], filter={"username": [IT_USER[0]]})[0]
    name = f"it-{int(time.time() * 1000)}"
    tokenid = admin.call("token.create", name=name, userid=user["userid"])["tokenids"][0]
    token = admin.call("token.generate", tokenid)[0]["token"]
    cfg = write_config(tmp_path)
    cfg.write_text(cfg.read_text().replace(f'user = "{IT_USER[0]}"', "").replace(
        f'password = "{IT_USER[1]}"', f'token = "{token}"'))
    assert main(["--config", str(cfg), "check"]) == 0
    out = capsys.readouterr().out
    version = admin.connect()  # the detected version, never a literal: 6.0 and 7.0 both run this
    assert "[  ok] zabbix: http://127.0.0.1" in out and f"(API {version})" in out
    assert f"[  ok] zabbix user: {IT_USER[0]}" in out
    assert "[  ok] permission 'Add problem comments'" in out
    assert token not in out


def test_role_without_comment_permission_is_reported(tmp_path: Path, admin: ZabbixClient,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    role = admin.call("role.get", output=["roleid"], filter={"name": ["hefestus-it-readonly"]})
    if role:
        roleid = role[0]["roleid"]
    else:
        roleid = admin.call("role.create", name="hefestus-it-readonly", type=2, rules={
            "actions": [{"name": "add_problem_comments", "status": 0}]})["roleids"][0]
    username, password = "hefestus-it-ro", "Ro-S3cret-it-7q!"
    if not admin.call("user.get", output=["userid"], filter={"username": [username]}):
        admin.call("user.create", username=username, passwd=password, roleid=roleid,
                   usrgrps=[{"usrgrpid": "7"}])
    cfg = write_config(tmp_path, user=(username, password))
    assert main(["--config", str(cfg), "check"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] permission 'Add problem comments': the role forbids it" in out


