"""Shared fixtures. Integration fixtures live in tests/integration/conftest.py."""

from __future__ import annotations

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
