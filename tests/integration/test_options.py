"""Intake filters and write-back options, against the real Zabbix."""

from __future__ import annotations

from collections.abc import Callable

from hefestus.app.build import App
from hefestus.values import Severity
from tests.support.lab import ZabbixLab, hefestus_messages

from .test_end_to_end import run_until_quiet

DB_TEXT = "FATAL:  sorry, too many clients already"


def test_host_group_and_severity_filters(lab: ZabbixLab, make_app: Callable[..., App]) -> None:
    wanted = lab.host(lab.unique("it-f-db"), "Databases", severity=Severity.HIGH)
    other_group = lab.host(lab.unique("it-f-web"), "Linux servers", severity=Severity.HIGH)
    too_low = lab.host(lab.unique("it-f-db-low"), "Databases", severity=Severity.WARNING)
    app = make_app(intake={"host_groups": ["Databases"], "min_severity": "average"})
    run_until_quiet(app)
    hosts = [wanted, other_group, too_low]
    lab.send([(h, DB_TEXT) for h in hosts])
    assert len(lab.events_for(hosts, expect=3)) == 3
    run_until_quiet(app)
    written = {h.host: [hefestus_messages(e) for e in lab.events_for([h], expect=0, timeout=0, acks=True)]
               for h in hosts}
    assert [len(m) for m in written[wanted.host]] == [1]
    assert written[other_group.host] == [[]]
    assert written[too_low.host] == [[]]


def test_acknowledge_action_marks_the_problem_acknowledged(lab: ZabbixLab,
                                                           make_app: Callable[..., App]) -> None:
    host = lab.host(lab.unique("it-ack"), "Databases")
    app = make_app(acknowledge={"action": "acknowledge"})
    run_until_quiet(app)
    lab.send([(host, DB_TEXT)])
    lab.events_for([host], expect=1)
    run_until_quiet(app)
    [event] = lab.events_for([host], expect=0, timeout=0, acks=True)
    assert event["acknowledged"] == "1"
    [ack] = [a for a in event["acknowledges"] if a["message"].startswith("[Hefestus]")]
    assert int(ack["action"]) & 2 and int(ack["action"]) & 4
