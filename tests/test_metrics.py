"""/metrics reads the daemon's plain counters: events by outcome, classifications by source,
model calls and latency, notifications, remediation audit by action."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from hefestus.analysis.analyzer import AnalysisStats
from hefestus.api.metrics import DaemonCollector, Totals
from hefestus.classify.knowledge import Knowledge
from hefestus.notify.dispatcher import NotifierStats
from hefestus.pipeline.plan import CycleReport, Planned
from hefestus.testing import problem
from hefestus.values import Suggestion


def test_metrics_families_from_the_daemon_counters(test_knowledge: Knowledge) -> None:
    totals = Totals()
    p = problem(1, "disk", text="kernel: write error: No space left on device")
    c = test_knowledge.classify(p)
    report = CycleReport(fetched=3, acknowledged=2, skipped=1, api_writes=1,
                         planned=[Planned(p, c, "m", suggestion=Suggestion.from_pattern(c))])
    totals.add(report)
    totals.error("zabbix")
    stats = AnalysisStats(model_calls=2, cache_hits=5)
    stats.observe(0.7)
    stats.observe(30.0)
    reg = CollectorRegistry()
    reg.register(DaemonCollector(totals, analysis=lambda: stats,
                                 notifiers=lambda: {"slack": NotifierStats(sent=4, failed=1)},
                                 extra=lambda: {"hefestus_remediations": {"dry-run": 3, "succeeded": 1}}))
    text = generate_latest(reg).decode()
    for line in ('hefestus_events_total{outcome="acknowledged"} 2.0',
                 'hefestus_events_total{outcome="skipped"} 1.0',
                 'hefestus_zabbix_writes_total 1.0',
                 'hefestus_classifications_total{domain="linux",source="pattern"} 1.0',
                 'hefestus_dependency_errors_total{dependency="zabbix"} 1.0',
                 'hefestus_model_cache_hits_total 5.0',
                 'hefestus_model_seconds_bucket{le="1.0"} 1.0',
                 'hefestus_model_seconds_bucket{le="40.0"} 2.0',
                 'hefestus_notifications_total{notifier="slack",result="sent"} 4.0',
                 'hefestus_remediations{action="dry-run"} 3.0'):
        assert line in text, line
