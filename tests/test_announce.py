"""[[notify]] rules decide who hears about what; written acknowledgements reach Slack over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest

from hefestus.adapters.slack import SlackNotifier
from hefestus.classify.knowledge import Knowledge, load_knowledge
from hefestus.config import AcknowledgeSettings, IntakeSettings
from hefestus.errors import ConfigError
from hefestus.notify.announcer import Announcer
from hefestus.notify.dispatcher import Dispatcher
from hefestus.notify.rules import load_notify_rules
from hefestus.pipeline.after_write import Announce
from hefestus.pipeline.cycle import Pipeline
from hefestus.redact import Redactor
from hefestus.state import open_state
from hefestus.testing import FakeZabbix, problem
from hefestus.values import Severity
from tests.support.paths import DATA
from tests.support.webhooks import Receiver, Reply

DISK = "kernel: write error: No space left on device"
UNIT = "systemd[1]: nginx.service: Failed with result 'exit-code'."


def rules_dir(tmp_path: Path, notify: str) -> Path:
    d = tmp_path / "rules"
    d.mkdir()
    for f in (DATA / "rules").glob("*.toml"):
        (d / f.name).write_text(f.read_text())
    (d / "95-notify.toml").write_text(notify)
    return d


def test_rules_route_by_domain_severity_and_moment(tmp_path: Path) -> None:
    d = rules_dir(tmp_path, '''
[[notify]]
name = "db-team"
to = ["teams"]
domains = ["database"]
[[notify]]
name = "high"
to = ["slack", "teams"]
min_severity = "high"
on = ["acknowledged"]
''')
    rules = load_notify_rules(d, domains=["database", "linux"])
    assert rules.targets("database", Severity.AVERAGE, "acknowledged") == ["teams"]
    assert rules.targets("linux", Severity.AVERAGE, "acknowledged") == []
    assert rules.targets("linux", Severity.DISASTER, "acknowledged") == ["slack", "teams"]
    assert rules.targets("linux", Severity.DISASTER, "remediation") == []


@pytest.mark.parametrize(("text", "problem"), [
    ('[[notify]]\nname = "x"\nto = ["pagerduty"]\n', ":3: notify[0].to[0]: Input should be 'slack' or 'teams'"),
    ('[[notify]]\nname = "x"\nto = ["slack"]\ndomains = ["nosql"]\n', ":1: notify 'x': unknown domain 'nosql'"),
    ('[[notify]]\nname = "x"\nto = ["slack"]\nmin_severity = "urgent"\n', ":4: notify[0].min_severity:"),
])
def test_bad_notify_rule_names_file_and_line(tmp_path: Path, text: str, problem: str) -> None:
    d = rules_dir(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_notify_rules(d, domains=["database", "linux"])
    assert f"{d / '95-notify.toml'}{problem}" in str(err.value)


def test_acknowledged_events_reach_slack_with_a_link_and_no_secret(tmp_path: Path) -> None:
    """Pipeline -> announcer -> dispatcher -> a real HTTP webhook; routing by the rules."""
    d = rules_dir(tmp_path, '[[notify]]\nname = "high"\nto = ["slack", "teams"]\nmin_severity = "high"\n')
    knowledge: Knowledge = load_knowledge(d, DATA / "patterns")
    rx = Receiver("/services/T0/B0/x", Reply(200, "ok"))
    dispatcher = Dispatcher([SlackNotifier(rx.url)], redact=Redactor(), backoff=0)
    notify = load_notify_rules(d, domains=knowledge.catalog.domains)
    announcer = Announcer(dispatcher, lambda: notify, configured=dispatcher.names,
                          frontend_url="https://zabbix.example.org/zabbix/")

    zbx = FakeZabbix()
    pipe = Pipeline(zbx, open_state(tmp_path / "s.db").ledger, lambda: knowledge, intake=IntakeSettings(),
                    ack=AcknowledgeSettings(), after_write=[Announce(announcer)])
    pipe.run_once()
    zbx.add(problem(1, "disk", text=DISK + " password=Hunter2-Secret-x", severity=Severity.HIGH, triggerid=77),
            problem(2, "unit", text=UNIT, severity=Severity.WARNING))
    assert pipe.run_once().acknowledged == 2
    try:
        assert dispatcher.flush(5)
        assert len(rx.received) == 1  # the warning did not match the rule
        body = rx.received[0].json
        text = rx.bodies()
        assert "disk-full" in text and "host-1" in text
        assert "https://zabbix.example.org/zabbix/tr_events.php?triggerid=77&amp;eventid=1" in text  # mrkdwn escape
        assert "Hunter2-Secret-x" not in text
        assert body["text"]
    finally:
        dispatcher.close()
        rx.close()
