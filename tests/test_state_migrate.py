"""``hefestus state migrate --to postgresql://…``: a SQLite state copied whole into an empty
PostgreSQL one, and ``hefestus state`` on either backend."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hefestus.cli import main
from hefestus.state import AuditEntry, Sighting, open_state
from hefestus.state.schema import TABLES
from tests.support.paths import DATA
from tests.support.zabbix_config import write_config


def _counts(where: Path | str) -> dict[str, int]:
    st = open_state(where)
    try:
        return {t: int(st.database.execute(f"SELECT COUNT(*) FROM {t}")[0][0]) for t in TABLES}
    finally:
        st.close()


def _audit(where: Path | str) -> list[tuple[object, ...]]:
    st = open_state(where)
    try:
        return st.database.execute("SELECT id, at, eventid, action, detail FROM remediation_audit ORDER BY id")
    finally:
        st.close()


def test_round_trip_keeps_every_row_and_refuses_a_second_copy(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "state.db"
    shutil.copyfile(DATA / "state-v3.db", source)
    st = open_state(source)
    st.unclassified.record([Sighting("fp-1", "linux", ("web1",), "mystery", 1000.0)])
    st.remediations.prune_remediation(0)  # leaves a gap in the audit ids...
    st.remediations.audit(AuditEntry(9000.0, 101, "web2", "clean-tmp", "job-2", "ran", "exec 90"))
    st.close()
    config = write_config(tmp_path)

    assert main(["--config", str(config), "state", "migrate", "--to", pg_url]) == 0
    out = capsys.readouterr().out
    before = _counts(source)
    assert before["events"] == 4 and before["remediation_audit"] == 1 and before["unclassified"] == 1
    assert _counts(pg_url) == before
    for table in TABLES:
        if table != "lease":
            assert f"\n{table} " in f"\n{out}" and str(before[table] - (table == "meta")) in out
    assert _audit(pg_url) == _audit(source)  # ...which the copy keeps: ids name audit entries

    target = open_state(pg_url)
    try:
        assert target.ledger.cursor == 100 and target.remediations.remediation(101) is not None
        target.remediations.audit(AuditEntry(9001.0, 1, "h", "r", "j", "ran", "after"))
        (last_id,) = target.database.execute("SELECT MAX(id) FROM remediation_audit")[0]
        assert last_id == int(str(_audit(source)[-1][0])) + 1  # the sequence goes on after them
    finally:
        target.close()

    assert main(["--config", str(config), "state", "migrate", "--to", pg_url]) == 1
    assert "already holds state (4 events" in capsys.readouterr().err

    (tmp_path / "pg").mkdir()
    pg_config = write_config(tmp_path / "pg", state={"url": pg_url})  # its own hefestus.toml
    assert main(["--config", str(pg_config), "state", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"backend: postgresql {pg_url}\nleader: no instance has held the leader lease yet\n"
                          "cursor: 100\n") and "104" in out
    assert main(["--config", str(config), "state"]) == 0
    assert capsys.readouterr().out.startswith(f"backend: sqlite {source}\n")


def test_the_target_must_be_a_postgresql_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path)
    assert main(["--config", str(config), "state", "migrate", "--to", str(tmp_path / "x.db")]) == 2
    assert "postgresql://" in capsys.readouterr().err
