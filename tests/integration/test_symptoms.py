"""Cause and symptom events on the real Zabbix (``HEFESTUS_ZBX_VERSION`` picks 6.0 or 7.0).

7.0: an operator ranks one problem as a symptom of another (``event.acknowledge`` action
256 with ``cause_eventid``, as Admin); one ``hefestus run --once`` writes the full analysis
(and starts the self-healing run) on the cause, and one pointer line on the symptom, which
starts nothing. 6.0 has no ranks: Hefestus never asks for them and every event is a cause.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import requests
from packaging.version import Version

from hefestus.adapters.zabbix import ZabbixClient
from hefestus.config import load_settings
from hefestus.pipeline.render import MARKER
from hefestus.values import EventFilter
from tests.integration.test_selfheal_daemon import config
from tests.support.helpers import eventually
from tests.support.lab import LabHost, ZabbixLab, hefestus_messages
from tests.support.rundeck import FakeRundeck
from tests.support.selfheal import RESTART, TOKEN, UNIT_FAILED


class Recording(requests.Session):
    """Keeps every JSON-RPC request body the adapter sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[dict[str, Any]] = []

    def post(self, url: str | bytes, data: Any = None, json: Any = None, **kw: Any) -> requests.Response:
        if json is not None:
            self.sent.append(json)
        return super().post(url, data=data, json=json, **kw)


def fire(lab: ZabbixLab, host: LabHost) -> int:
    before = {e["eventid"] for e in lab.events_for([host], expect=0, timeout=0)}
    lab.send([(host, UNIT_FAILED)])
    (new,) = [e for e in lab.events_for([host], expect=len(before) + 1) if e["eventid"] not in before]
    return int(new["eventid"])


def written(lab: ZabbixLab, host: LabHost, eventid: int) -> list[str]:
    rows = lab.events_for([host], expect=0, timeout=0, acks=True)
    return next(hefestus_messages(e) for e in rows if int(e["eventid"]) == eventid)


def test_the_cause_gets_the_analysis_the_symptom_a_pointer_and_no_remediation(
        lab: ZabbixLab, admin: ZabbixClient, tmp_path: Path) -> None:
    ranks = Version(admin.connect()) >= Version("6.4")
    cause_host = lab.host(lab.unique("it-cause"), "Linux servers")
    symptom_host = lab.host(lab.unique("it-symptom"), "Linux servers")
    with FakeRundeck(token=TOKEN) as fake:
        fake.add_job(RESTART, "Restart systemd service", project="ops", required_options=("unit",))
        cfg = config(tmp_path, fake.url, "on")
        env = {**os.environ, "HEFESTUS_CONFIG": str(cfg)}
        subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], check=True, capture_output=True, env=env)
        cause, symptom = fire(lab, cause_host), fire(lab, symptom_host)
        if ranks:  # the server applies a rank change as a task: wait until event.get shows it
            admin.call("event.acknowledge", eventids=[str(symptom)], action=256, cause_eventid=str(cause))
            eventually(lambda: admin.call("event.get", eventids=[str(symptom)], output=["cause_eventid"])[0]
                       ["cause_eventid"] == str(cause), 60, "the rank applied by the server")

        # What the adapter asks for and reads: the rank on 7.0; on 6.0 never asked, all causes.
        session = Recording()
        zbx = ZabbixClient(load_settings(cfg, {}).zabbix, session=session)
        seen = {p.eventid: p for p in zbx.events(EventFilter(), eventids=[cause, symptom])}
        outputs = [r["params"]["output"] for r in session.sent if r["method"] == "event.get"
                   and "selectTags" in r["params"]]
        assert outputs and all(("cause_eventid" in o) == ranks for o in outputs), outputs
        assert (seen[cause].cause_eventid, seen[symptom].cause_eventid) == (0, cause if ranks else 0)

        subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], check=True, capture_output=True, env=env)
        on_cause = written(lab, cause_host, cause)
        assert len(on_cause) >= 1 and on_cause[0].startswith(f"{MARKER} linux / service-failed")
        assert on_cause[0].splitlines()[1].startswith("Self-healing: running Rundeck job 'Restart systemd service'")
        runs = eventually(lambda: fake.calls("run"), what="the cause's run")
        if ranks:
            problem = f"{cause_host.host}: " + str(admin.call("event.get", eventids=[str(cause)],
                                                               output=["name"])[0]["name"])
            assert written(lab, symptom_host, symptom) == [
                f"{MARKER} symptom of event {cause} ({problem}): see its Hefestus message"]
            assert [r.body["options"]["host"] for r in runs] == [cause_host.host]  # none for the symptom
        else:
            on_symptom = written(lab, symptom_host, symptom)
            assert on_symptom[0].startswith(f"{MARKER} linux / service-failed")
            eventually(lambda: len(fake.calls("run")) == 2, what="both runs: 6.0 has no symptoms")

        # Run again: exactly once, on both.
        subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], check=True, capture_output=True, env=env)
        assert len([m for m in written(lab, symptom_host, symptom) if "symptom of event" in m or
                    m.startswith(f"{MARKER} linux / ")]) == 1
        assert len([m for m in written(lab, cause_host, cause) if m.startswith(f"{MARKER} linux / ")]) == 1
