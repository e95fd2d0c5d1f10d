"""Model calls in parallel (`make bench`): the storm's 10 kinds put to a model server that
answers several requests at once, with ``[ollama] max_concurrency`` 1 and then 4.

The server is the test suite's Ollama stand-in (tests/support/ollama.py, Ollama's API over
HTTP, streamed answers) with a fixed answer time per request, so the figure is Hefestus's
own scheduling: the analysis stage (analysis/analyzer.py), the Ollama adapter and the real
``ollama`` client, one call per fingerprint. With 10 calls of ``delay`` seconds, 4 at a time
is 3 rounds: the best it can be is 3/10 of the serial time.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

from storm_kinds import KINDS, storm
from tests.support.ollama import FakeOllama

from hefestus import logs
from hefestus.adapters.ollama import OllamaModel
from hefestus.analysis.analyzer import Analyzer, MemoryCache, compile_profiles
from hefestus.classify.knowledge import load_knowledge
from hefestus.config import AnalysisSettings, OllamaSettings
from hefestus.redact import Redactor
from hefestus.testing import problem

MODEL = "llama3.1:8b"


@dataclass
class ParallelResult:
    delay: float
    concurrency: int
    serial: float  # seconds with max_concurrency 1
    parallel: float  # seconds with max_concurrency = concurrency
    calls: tuple[int, int]  # chat requests the server answered in each run
    max_in_flight: tuple[int, int]


def _once(delay: float, concurrency: int) -> tuple[float, int, int]:
    knowledge = load_knowledge(ROOT / "rules", ROOT / "patterns")
    items = []
    for i, (kind, host, text) in enumerate(storm(7, per_kind=10)):
        p = problem(1 + i, f"Error reported on {host}", text=text, host=host, groups=(kind.group,))
        items.append((p, knowledge.classify(p)))
    with FakeOllama(models=[MODEL], delay=delay) as server:
        o = OllamaSettings(url=server.url, model=MODEL, max_concurrency=concurrency, timeout=60)
        analyzer = Analyzer(settings=AnalysisSettings(mode="model-always"), ollama=o,
                            profiles=compile_profiles(o, {}), model=OllamaModel(o), cache=MemoryCache(),
                            redact=Redactor())
        started = time.perf_counter()
        analyzer.suggest(items)
        seconds = time.perf_counter() - started
        analyzer.close()
        return seconds, server.chat_calls, server.max_in_flight


def run(delay: float = 1.0, concurrency: int = 4) -> ParallelResult:
    logs.setup("warning", "json", redact=Redactor())  # figures only: no "model answered" lines
    serial, calls_s, flight_s = _once(delay, 1)
    parallel, calls_p, flight_p = _once(delay, concurrency)
    return ParallelResult(delay, concurrency, serial, parallel, (calls_s, calls_p), (flight_s, flight_p))


def describe(r: ParallelResult) -> str:
    return (f"{len(KINDS)} kinds, one model call each, {r.delay:g} s per answer: serial (max_concurrency 1) "
            f"{r.serial:.2f} s, max_concurrency {r.concurrency} {r.parallel:.2f} s = "
            f"{r.parallel / r.serial:.2f} of serial (best possible {-(-len(KINDS) // r.concurrency)}/{len(KINDS)}); "
            f"calls answered {r.calls[0]} / {r.calls[1]}, most in flight at once {r.max_in_flight[0]} / "
            f"{r.max_in_flight[1]}")


if __name__ == "__main__":
    print(describe(run()))
