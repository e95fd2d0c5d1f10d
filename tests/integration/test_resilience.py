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
from tests.support.helpers import free_port
from tests.support.lab import ZabbixLab

from ..conftest import record_fault
from .conftest import IT_USER, write_config
from .test_end_to_end import SAMPLES, acks, fire, make_hosts


class Frontend:
    """A second, private frontend process on the same Zabbix database, so it can be stopped."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["php", "-d", "date.timezone=UTC", "-d", "memory_limit=256M", "-d", "post_max_size=16M",
             "-d", "max_execution_time=300", "-S", f"127.0.0.1:{self.port}", "-t", "/usr/share/zabbix"],
            env={**os.environ, "PHP_CLI_SERVER_WORKERS": "2"}, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("php frontend did not start")

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the workers too, not just the parent
            self.proc.wait()
            self.proc = None


@pytest.fixture
def frontend() -> Iterator[Frontend]:
    f = Frontend()
    f.start()
    yield f
    f.stop()


def test_frontend_stopped_mid_run_loses_nothing(lab: ZabbixLab, frontend: Frontend, tmp_path: Path) -> None:
    """The daemon keeps running while its API endpoint is dead; problems raised meanwhile
    are acknowledged once it is back, each exactly once."""
    hosts = make_hosts(lab)
    env = {**os.environ, "HEFESTUS_CONFIG": str(write_config(tmp_path, frontend.url))}
    subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], env=env, check=True,
                   capture_output=True)
    daemon = subprocess.Popen([sys.executable, "-m", "hefestus", "run", "--poll-interval", "1"],
                              env=env, stderr=subprocess.PIPE, text=True)
    try:
        frontend.stop()
        events = fire(lab, hosts, {d: t for d, (_, t) in SAMPLES.items()})  # server still takes values
        time.sleep(4)  # several polls against a dead endpoint
        assert daemon.poll() is None, "the daemon died while Zabbix was down"
        ids = {e["eventid"] for e in events}
        assert all(not m for m in acks(lab, hosts, ids).values())
        frontend.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(acks(lab, hosts, ids).values()):
            time.sleep(1)
        time.sleep(3)  # a few more polls: nothing must be written twice
    finally:
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=30)
    got = acks(lab, hosts, ids)
    record_fault("Zabbix frontend stopped and restarted", dict(got))
    assert sorted(len(m) for m in got.values()) == [1, 1, 1], got
    assert "zabbix unavailable; will retry at the next poll" in err


def test_expired_session_is_renewed_once(tmp_path: Path, admin: ZabbixClient) -> None:
    settings = load_settings(write_config(tmp_path), {})
    client = ZabbixClient(settings.zabbix)
    client.connect()
    old = client._api.auth
    # What auto-logout does: the session row turns passive.
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "zabbix", "-d", "zabbix", "-Xqc",
                    f"UPDATE sessions SET status = 1 WHERE sessionid = '{old}'"],
                   env={**os.environ, "PGPASSWORD": "zabbix"}, check=True)
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
    assert "[  ok] zabbix: http://127.0.0.1" in out and "(API 6.0" in out
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


