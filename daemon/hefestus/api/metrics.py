"""Prometheus metrics, read from the counters the daemon keeps anyway.

Core modules count in plain Python (:class:`Totals`, the analyzer's
``AnalysisStats``, the dispatcher's ``NotifierStats``, the remediation audit);
no core module imports prometheus_client. This collector turns those counters
into metric families at scrape time, so nothing on the event path waits on
metrics. (The HTTP API's own request metrics are :mod:`hefestus.api.middleware`'s.)
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from hefestus.analysis.analyzer import LATENCY_BUCKETS, AnalysisStats
from hefestus.analysis.gate import REJECT_REASONS
from hefestus.pipeline.plan import CycleReport
from hefestus.state.lease import LeaseStats


@dataclass
class Totals:
    """Running totals of poll cycles; fed by :meth:`add` after each cycle."""

    events: Counter[str] = field(default_factory=Counter)
    classifications: Counter[tuple[str, str]] = field(default_factory=Counter)
    dependency_errors: Counter[str] = field(default_factory=Counter)
    cycles: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, report: CycleReport) -> None:
        with self._lock:
            self.cycles += 1
            for key, value in report.as_dict().items():
                self.events[key] += value
            for plan in report.planned:
                s = plan.suggestion
                if s is None:
                    continue
                kind = "model" if s.from_model else ("pattern" if s.classification.classified else "none")
                self.classifications[(s.classification.domain, kind)] += 1

    def error(self, dependency: str) -> None:
        with self._lock:
            self.dependency_errors[dependency] += 1


class DaemonCollector(Collector):
    def __init__(self, totals: Totals, analysis: Callable[[], AnalysisStats] | None = None,
                 notifiers: Callable[[], Mapping[str, Any]] | None = None,
                 extra: Callable[[], Mapping[str, Mapping[str, int]]] | None = None,
                 leadership: Callable[[], tuple[bool, LeaseStats]] | None = None) -> None:
        self._totals = totals
        self._leadership = leadership
        self._analysis = analysis
        self._notifiers = notifiers
        self._extra = extra

    def collect(self) -> Iterator[Any]:
        t = self._totals
        with t._lock:
            events = dict(t.events)
            classes = dict(t.classifications)
            errors = dict(t.dependency_errors)
            cycles = t.cycles
        yield CounterMetricFamily("hefestus_poll_cycles", "Poll cycles run", value=cycles)
        ev = CounterMetricFamily("hefestus_events", "Problem events by what happened to them "
                                 "(fetched, acknowledged, skipped, already_marked, failed, deferred)",
                                 labels=["outcome"])
        for outcome in ("fetched", "acknowledged", "skipped", "already_marked", "failed", "deferred"):
            ev.add_metric([outcome], events.get(outcome, 0))
        yield ev
        yield CounterMetricFamily("hefestus_zabbix_writes", "event.acknowledge calls made",
                                  value=events.get("api_writes", 0))
        cl = CounterMetricFamily("hefestus_classifications", "Suggestions by domain and source "
                                 "(pattern, model, none)", labels=["domain", "source"])
        for (domain, kind), n in sorted(classes.items()):
            cl.add_metric([domain, kind], n)
        yield cl
        dep = CounterMetricFamily("hefestus_dependency_errors", "Failures talking to a dependency",
                                  labels=["dependency"])
        for name, n in sorted(errors.items()):
            dep.add_metric([name], n)
        if self._analysis is not None:
            a = self._analysis()
            dep.add_metric(["model"], a.model_failures)
            yield from _model_metrics(a)
        yield dep
        if self._notifiers is not None:
            yield from _notify_metrics(self._notifiers())
        if self._leadership is not None:
            yield from _lease_metrics(*self._leadership())
        if self._extra is not None:
            for name, by_label in self._extra().items():
                fam = GaugeMetricFamily(name, "Self-healing decisions and outcomes in the audit trail "
                                        "(kept state.ledger_days), by action", labels=["action"])
                for label, n in sorted(by_label.items()):
                    fam.add_metric([label], n)
                yield fam


def _lease_metrics(leader: bool, st: LeaseStats) -> Iterator[Any]:
    yield GaugeMetricFamily("hefestus_leader", "1 when this instance is the leader (polls, writes, "
                            "runs jobs), 0 on a standby", value=int(leader))
    yield CounterMetricFamily("hefestus_lease_acquisitions", "Times this instance took the leader lease",
                              value=st.acquisitions)
    yield CounterMetricFamily("hefestus_lease_renewals", "Leader lease renewals", value=st.renewals)
    yield CounterMetricFamily("hefestus_lease_losses", "Times this instance lost the leader lease",
                              value=st.losses)
    yield CounterMetricFamily("hefestus_lease_failures", "Heartbeats that could not reach the state "
                              "database", value=st.failures)


def _model_metrics(a: AnalysisStats) -> Iterator[Any]:
    yield CounterMetricFamily("hefestus_model_calls", "Model calls answered", value=a.model_calls)
    yield CounterMetricFamily("hefestus_model_cache_hits", "Answers reused from the fingerprint cache",
                              value=a.cache_hits)
    yield CounterMetricFamily("hefestus_model_bad_answers", "Model answers rejected by validation",
                              value=a.bad_answers)
    yield CounterMetricFamily("hefestus_model_breaker_skips", "Calls not made: circuit breaker open",
                              value=a.breaker_skips)
    rejected = CounterMetricFamily("hefestus_model_answers_rejected", "Schema-valid model answers the "
                                   "gate refused, by reason (hefestus.analysis.gate)", labels=["reason"])
    for reason in REJECT_REASONS:  # the fixed set only: a label value never comes from the answer
        rejected.add_metric([reason], a.rejected.get(reason, 0))
    yield rejected
    buckets = [(str(b), n) for b, n in zip(LATENCY_BUCKETS, a.buckets, strict=True)]
    buckets.append(("+Inf", a.model_calls))
    yield HistogramMetricFamily("hefestus_model_seconds", "Time for one model answer",
                                buckets=buckets, sum_value=a.seconds_sum)


def _notify_metrics(stats: Mapping[str, Any]) -> Iterator[Any]:
    sent = CounterMetricFamily("hefestus_notifications", "Notifications by notifier and result",
                               labels=["notifier", "result"])
    queued = GaugeMetricFamily("hefestus_notifications_queued", "Notifications waiting",
                               labels=["notifier"])
    for name, st in sorted(stats.items()):
        for result in ("sent", "failed", "dropped", "retries"):
            sent.add_metric([name, result], getattr(st, result))
        queued.add_metric([name], st.queued)
    yield sent
    yield queued
