"""The webhook media type of deploy/zabbix/, imported into the real Zabbix (6.0, and 7.0 with
HEFESTUS_ZBX_VERSION=7.0: `make test` runs both), pushes new problems to a running Hefestus,
which handles them at once; a lost push is caught by polling. The export stays in 6.0's
format: 7.0 imports it as it is.

The Zabbix server itself runs the webhook (its alerter executes the JavaScript), so this
proves the export imports, the script runs in Zabbix's Duktape, the macros resolve, the
bearer token is accepted, and Hefestus's answer counts as success for Zabbix.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from hefestus.adapters.zabbix import ZabbixClient
from tests.support import push
from tests.support.helpers import eventually, free_port, metric
from tests.support.lab import LabHost, ZabbixLab, hefestus_messages
from tests.support.zabbix_config import write_config

PUSH_USER = ("hefestus-push-it", "Hx-push-S3cret-7q1w!")
TOKEN = f"push-it-{uuid.uuid4().hex}"
CLASSIFIED = re.compile(r"\[Hefestus\] [\w-]+ / ")
LINUX = "Nov 24 03:12:09 web systemd[1]: nginx.service: Failed with result 'exit-code'."
#: Alert statuses (alert.get): 0 not sent yet, 1 sent, 2 failed after its attempts, 3 new.
SENT, FAILED = "1", "2"


@pytest.fixture(scope="module")
def media_type(admin: ZabbixClient) -> Iterator[str]:
    """deploy/zabbix/hefestus-media-type.yaml imported as ops would (configuration.import)."""

    push.import_media_type(admin)
    rows = admin.call("mediatype.get", output=["mediatypeid", "type", "status", "parameters"],
                      filter={"name": "Hefestus"})
    assert len(rows) == 1 and rows[0]["type"] == "4" and rows[0]["status"] == "0", rows  # an enabled webhook
    # Every parameter (the macros the script reads) survived this version's import of a 6.0 export.
    shipped = yaml.safe_load(push.MEDIA_TYPE.read_text())["zabbix_export"]["media_types"][0]["parameters"]
    assert {p["name"]: p["value"] for p in rows[0]["parameters"]} == {p["name"]: p["value"] for p in shipped}
    yield str(rows[0]["mediatypeid"])
    push.import_media_type(admin)  # undo a test's changes (attempts)


@pytest.fixture(scope="module")
def push_user(admin: ZabbixClient, media_type: str) -> Iterator[str]:
    """The user the action sends the push to: any "send to" value, the media type does the rest."""
    userid = push.push_user(admin, media_type, *PUSH_USER)
    yield userid
    admin.call("user.delete", userid)


@contextmanager
def push_action(admin: ZabbixClient, lab: ZabbixLab, host: LabHost, media_type: str, user: str, *,
                url: str, token: str) -> Iterator[str]:
    """The set-up README's "Push intake" describes: the two global macros (the token as a
    secret macro) and a trigger action whose problem operation sends the Hefestus media.
    Its condition is this test's trigger, so no other test's events reach it."""
    macro_ids = push.set_global_macros(admin, {"{$HEFESTUS.URL}": (url, 0), "{$HEFESTUS.TOKEN}": (token, 1)})
    actionid = push.create_push_action(admin, lab.unique("hefestus-push-it"), media_type, user,
                                       condition=push.TRIGGER, value=host.triggerid)
    try:
        push.reload_server_config(lab)
        yield actionid
    finally:
        admin.call("action.delete", actionid)
        admin.call("usermacro.deleteglobal", *macro_ids)


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    base: str
    token: str
    log: Path

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def polls(self) -> float:
        """Poll cycles that reached Zabbix (Prometheus counter)."""
        return metric(self.base, self.token, "hefestus_poll_cycles_total")

    def requests(self, path: str) -> list[str]:
        return [ln for ln in self.log.read_text().splitlines()
                if '"api request"' in ln and f'"path": "{path}"' in ln]


@contextmanager
def running_daemon(tmp_path: Path, *, poll_interval: float, token: str) -> Iterator[Daemon]:
    """`hefestus run` with the API on, as its own process; ready once the first poll is done
    (that poll sets the cursor: only events made after it are new)."""
    port = free_port()
    config = write_config(tmp_path, intake={"poll_interval": poll_interval},
                          api={"enabled": True, "listen": f"127.0.0.1:{port}", "token": token})
    log = tmp_path / "daemon.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEFESTUS_")}
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "hefestus", "--config", str(config), "run"],
                                stderr=err, stdout=subprocess.DEVNULL, env=env)
    daemon = Daemon(proc, f"http://127.0.0.1:{port}", token, log)

    def ready() -> bool:
        assert proc.poll() is None, f"hefestus run exited {proc.returncode}: {log.read_text()[-3000:]}"
        try:
            return httpx.get(f"{daemon.base}/readyz", headers=daemon.auth, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        eventually(ready, 60, lambda: f"hefestus to become ready: {log.read_text()[-3000:]}", 0.2)
        yield daemon
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, log.read_text()[-3000:]


def fire(lab: ZabbixLab, host: LabHost, text: str) -> str:
    before = {e["eventid"] for e in lab.events_for([host], expect=0, timeout=0)}
    lab.send([(host, text)])
    new = [e["eventid"] for e in lab.events_for([host], expect=len(before) + 1) if e["eventid"] not in before]
    assert len(new) == 1, f"zabbix made {len(new)} events for one value"
    return str(new[0])


def messages(lab: ZabbixLab, host: LabHost, eventid: str) -> list[str]:
    """Hefestus's classification messages on the event ("[Hefestus] <domain> / <category>"):
    the one that must exist exactly once. Self-healing reports ("[Hefestus] self-healing: ...")
    are other messages, written when a remediation rule applies."""
    rows = lab.events_for([host], expect=0, timeout=0, acks=True)
    found = next((hefestus_messages(e) for e in rows if e["eventid"] == eventid), [])
    return [m for m in found if CLASSIFIED.match(m)]


def alerts(admin: ZabbixClient, eventid: str, media_type: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = admin.call("alert.get", eventids=[eventid], mediatypeids=[media_type],
                                            output=["alertid", "status", "error", "retries", "clock"])
    return rows


def why(admin: ZabbixClient, lab: ZabbixLab, eventid: str, media_type: str, daemon: Daemon) -> str:
    """What an assertion message needs when the push did not work."""
    server_log = Path(lab.server_config).with_name("zabbix_server.log")
    tail = server_log.read_text(errors="replace").splitlines()[-15:] if server_log.exists() else []
    return (f"\nalerts of event {eventid}: {alerts(admin, eventid, media_type)} (none: the action did not "
            f"fire; status 2: see error)\npushes Hefestus received: {daemon.requests('/api/zabbix/events')}"
            f"\nhefestus log tail:\n{daemon.log.read_text()[-1500:]}\nzabbix_server.log tail:\n"
            + "\n".join(tail))


def test_webhook_push_gets_a_problem_handled_at_once(admin: ZabbixClient, lab: ZabbixLab, media_type: str,
                                                     push_user: str, tmp_path: Path) -> None:
    """Poll interval 300 s: only the push can explain a message within a minute."""
    host = lab.host(lab.unique("it-push"), "Linux servers")
    with running_daemon(tmp_path, poll_interval=300, token=TOKEN) as daemon, \
            push_action(admin, lab, host, media_type, push_user, url=daemon.base, token=TOKEN):
        assert daemon.polls() == 1  # the start-up poll; the next one is 5 minutes away
        started = time.monotonic()
        eventid = fire(lab, host, LINUX)
        got = eventually(lambda: messages(lab, host, eventid), 60,
                         lambda: f"a Hefestus message{why(admin, lab, eventid, media_type, daemon)}", 0.5)
        took = time.monotonic() - started
        assert len(got) == 1 and got[0].startswith("[Hefestus] linux / service-failed"), got
        sent = eventually(lambda: [a for a in alerts(admin, eventid, media_type) if a["status"] == SENT], 30,
                          lambda: f"the alert sent{why(admin, lab, eventid, media_type, daemon)}", 0.5)
        assert len(sent) == 1 and sent[0]["error"] == "", why(admin, lab, eventid, media_type, daemon)
        pushes = daemon.requests("/api/zabbix/events")
        assert len(pushes) == 1 and '"status": 202' in pushes[0], pushes
        assert daemon.polls() >= 2, "the push should have run a poll cycle"

        # Zabbix retrying, or a second action: the same push again writes nothing new.
        polls = daemon.polls()
        again = httpx.post(f"{daemon.base}/api/zabbix/events", headers=daemon.auth, timeout=10,
                           json={"eventid": eventid, "event_value": "1"})
        assert again.status_code == 202 and again.json() == {"status": "queued", "eventid": int(eventid)}
        eventually(lambda: daemon.polls() > polls, 30, "a cycle run by the second push", 0.5)
        assert len(messages(lab, host, eventid)) == 1
    log = daemon.log.read_text()
    assert TOKEN not in log
    print(f"push to message: {took:.1f} s")


def test_a_lost_push_is_caught_by_the_next_poll_exactly_once(admin: ZabbixClient, lab: ZabbixLab,
                                                            media_type: str, push_user: str,
                                                            tmp_path: Path) -> None:
    """The media type holds a wrong token: Hefestus refuses the push (401), Zabbix records a
    failed alert with the reason, and polling still writes exactly one message."""
    host = lab.host(lab.unique("it-lost"), "Linux servers")
    wrong = f"wrong-token-{uuid.uuid4().hex}"
    admin.call("mediatype.update", mediatypeid=media_type, maxattempts="1")  # fail fast; the fixture restores it
    with running_daemon(tmp_path, poll_interval=5, token=TOKEN) as daemon, \
            push_action(admin, lab, host, media_type, push_user, url=daemon.base, token=wrong):
        eventid = fire(lab, host, LINUX)
        failed = eventually(lambda: [a for a in alerts(admin, eventid, media_type) if a["status"] == FAILED], 60,
                            lambda: f"the push to fail{why(admin, lab, eventid, media_type, daemon)}", 0.5)
        error = failed[0]["error"]
        assert "HTTP 401" in error and "does not match" in error, error
        assert wrong not in error and TOKEN not in error
        print(f"zabbix recorded the failed push as: {error}")
        eventually(lambda: messages(lab, host, eventid), 60,
                   lambda: f"polling to catch the event{why(admin, lab, eventid, media_type, daemon)}", 0.5)
        polls = daemon.polls()
        eventually(lambda: daemon.polls() >= polls + 2, 40, "two more polls (polling stopped?)", 0.5)
        assert len(messages(lab, host, eventid)) == 1
        refused = daemon.requests("/api/zabbix/events")
        assert refused and all('"status": 401' in r for r in refused), refused
    log = daemon.log.read_text()
    assert TOKEN not in log and wrong not in log
