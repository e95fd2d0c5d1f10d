"""Self-healing against the real Zabbix 6.0 (and FakeRundeck): problem -> job run once ->
outcome acknowledgement on the real event -> closed loop reads the real recovery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from hefestus.adapters.rundeck import RundeckClient
from hefestus.adapters.zabbix import ZabbixClient
from hefestus.classify.knowledge import load_knowledge
from hefestus.config import RemediationSettings, RundeckSettings, load_settings
from hefestus.pipeline.render import MARKER
from hefestus.redact import Redactor
from hefestus.remediation.remediator import Remediator, audit_lines
from hefestus.remediation.rules import load_remediation_rules
from hefestus.state import open_state
from hefestus.values import EventFilter, Problem
from tests.support.helpers import eventually
from tests.support.lab import LabHost, ZabbixLab
from tests.support.paths import ROOT
from tests.support.rundeck import FakeRundeck
from tests.support.zabbix_config import write_config

TOKEN = "it-rundeck-token-0123456789"
RESTART = "3f2a9c1e-6b0d-4c55-9a57-2b8f0e6d1c44"
CLEAN = "7b1d0c2e-1111-4c55-9a57-2b8f0e6d1c45"
RULES = f"""
[[remediation]]
name = "restart-service"
domain = "linux"
category = "service-failed"
project = "ops"
job_id = "{RESTART}"
job_name = "Restart service"
options.unit = {{ value = "{{unit}}", allow = '^[A-Za-z0-9][A-Za-z0-9@_.:-]*\\.service$' }}
options.host = {{ value = "{{host}}", allow = '^[A-Za-z0-9][A-Za-z0-9.-]*$' }}
recovery_window = 3

[[remediation]]
name = "clean-disk"
domain = "linux"
category = "disk-full"
project = "ops"
job_id = "{CLEAN}"
job_name = "Clean disk"
options.host = {{ value = "{{host}}", allow = '^[A-Za-z0-9][A-Za-z0-9.-]*$' }}
recovery_window = 60
"""


def fire(lab: ZabbixLab, host: LabHost, text: str) -> int:
    before = {e["eventid"] for e in lab.events_for([host], expect=0, timeout=0)}
    lab.send([(host, text)])
    rows = lab.events_for([host], expect=len(before) + 1)
    (new,) = [e for e in rows if e["eventid"] not in before]
    return int(new["eventid"])


def messages(lab: ZabbixLab, host: LabHost, eventid: int) -> list[str]:
    rows = lab.events_for([host], expect=0, timeout=0, acks=True)
    acks = next(e["acknowledges"] for e in rows if int(e["eventid"]) == eventid)
    return [a["message"] for a in sorted(acks, key=lambda a: (int(a["clock"]), a["message"]))
            if a["message"].startswith(MARKER)]


def test_problem_to_job_to_outcome_and_the_closed_loop(lab: ZabbixLab, tmp_path: Path) -> None:
    settings = load_settings(write_config(tmp_path), {})
    zbx = ZabbixClient(settings.zabbix)  # Hefestus's own user, as the daemon runs
    knowledge = load_knowledge(ROOT / "rules", ROOT / "patterns")
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "10-it.toml").write_text(RULES)
    rules = load_remediation_rules(tmp_path / "rules", catalog=knowledge.catalog)
    web = lab.host(lab.unique("it-heal-web"), "Linux servers")
    disk = lab.host(lab.unique("it-heal-disk"), "Linux servers")
    remediation = RemediationSettings(mode="on", poll_min=0.2, poll_max=1, cooldown=0)
    with FakeRundeck(token=TOKEN) as fake:
        fake.add_job(RESTART, "restart-service", required_options=("unit",),
                     output=("stopping nginx", "starting nginx", "nginx is active"))
        fake.add_job(CLEAN, "clean-disk", polls_to_finish=10**6, output=("freed 3 GB",))
        rundeck = RundeckClient(RundeckSettings(url=fake.url, token=SecretStr(TOKEN), timeout=5))
        state = open_state(tmp_path / "state.db")
        store = state.remediations

        def remediator() -> Remediator:
            return Remediator(remediation, lambda: rules, rundeck, zbx, store, redact=Redactor())

        def handle(r: Remediator, eventid: int) -> None:
            """What the pipeline does: decide, write the first message with the summary, execute."""
            (p,) = zbx.events(EventFilter(), eventids=[eventid])
            assert isinstance(p, Problem)
            d = r.decide(p, knowledge.classify(p))
            assert d is not None and d.action == "run", d
            zbx.acknowledge([eventid], f"{MARKER} linux / {d.rule.category}\n{d.summary}", action=4)
            r.execute(d)

        first = remediator()
        unit_failed = fire(lab, web, "Nov 24 03:12:09 web systemd[1]: nginx.service: Failed with "
                                     "result 'exit-code'.")
        handle(first, unit_failed)
        disk_full = fire(lab, disk, "write /var/lib/app/blob: No space left on device")
        handle(first, disk_full)

        # the restart succeeds: its outcome is the second message on the real event ...
        got = eventually(lambda: len(m := messages(lab, web, unit_failed)) >= 2 and m, what="outcome")
        assert got[0].endswith(f"Self-healing: running Rundeck job 'Restart service' (ops) with "
                               f"unit=nginx.service, host={web.host} — outcome will follow")
        assert got[1].startswith(f"{MARKER} self-healing: Rundeck job 'Restart service' (ops) "
                                 "succeeded in ")
        assert "nginx is active" in got[1] and f"{fake.url}/project/ops/execution/show/" in got[1]
        # ... and, the problem left open, the closed loop says so after the window
        still = eventually(lambda: len(m := messages(lab, web, unit_failed)) >= 3 and m[2], what="still open")
        assert still.startswith(f"{MARKER} self-healing: remediation ran but the problem is still open")

        # the daemon "dies" while the disk clean-up runs; the next one follows it, never reruns it
        eventually(lambda: (rec := store.remediation(disk_full)) and rec.state == "running", what="running")
        first.stop(0)
        second = remediator()
        assert second.resume() == {"running": 1}
        assert second.decide(*_again(zbx, knowledge, disk_full)).action == "already"  # type: ignore[union-attr]
        exec_id = store.remediation(disk_full).exec_id  # type: ignore[union-attr]
        assert exec_id is not None
        fake.finish(exec_id)
        got = eventually(lambda: len(m := messages(lab, disk, disk_full)) >= 2 and m, what="disk outcome")
        assert "Rundeck job 'Clean disk' (ops) succeeded" in got[1]
        lab.send([(disk, "")])  # the trigger recovers: Zabbix sets the event's r_eventid
        eventually(lambda: store.remediation(disk_full).result == "recovered",  # type: ignore[union-attr]
             what="recovered")
        assert second.wait_idle(5)
        assert len(messages(lab, disk, disk_full)) == 2  # recovered: nothing more to say
        assert len(fake.calls("run")) == 2
        assert any("resumed" in line for line in audit_lines(store))
        second.stop(5)
        state.close()


def _again(zbx: ZabbixClient, knowledge: Any, eventid: int) -> tuple[Problem, Any]:
    (p,) = zbx.events(EventFilter(), eventids=[eventid])
    return p, knowledge.classify(p)
