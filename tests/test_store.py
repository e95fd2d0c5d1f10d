"""The state store survives restarts and refuses to silently reset (the behaviour on both
backends, via ``state_at``; the file's failure modes on SQLite)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pytest

from hefestus.errors import StateError
from hefestus.state import EventState, State, open_state


def test_cursor_and_ledger_survive_reopen(state_at: Path | str) -> None:
    st = open_state(state_at)
    s = st.ledger
    assert s.cursor is None
    s.advance_cursor(10)
    s.advance_cursor(7)  # never backwards
    s.record([(5, "done", "linux", "disk-full", "disk-full", "")])
    st.close()
    st = open_state(state_at)
    s = st.ledger
    assert s.cursor == 10
    assert s.states([5, 6])[5].state == "done" and 6 not in s.states([5, 6])
    st.close()


def test_failures_count_up_to_give_up(state_at: Path | str) -> None:
    st = open_state(state_at)
    s = st.ledger
    assert s.record_failure(3, "refused", give_up_after=2) is False
    assert s.states([3])[3].state == "pending"
    assert s.record_failure(3, "refused", give_up_after=2) is True
    assert s.states([3])[3].state == "failed" and s.states([3])[3].attempts == 2
    st.close()


def test_corrupt_file_is_a_clear_error_not_a_reset(tmp_path: Path) -> None:
    p = tmp_path / "state.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="corrupt; move it aside"):
        open_state(p)
    assert p.read_bytes().startswith(b"this is not sqlite")


def test_read_only_file_is_a_clear_error(tmp_path: Path) -> None:
    """A state file on a read-only mount (root ignores file modes, so chmod proves nothing)."""
    d = Path(tempfile.mkdtemp(prefix="hefestus-ro-"))
    mounted = False
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], check=True)
        mounted = True
        s = open_state(d / "state.db")
        s.ledger.advance_cursor(5)
        s.close()
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
        ro: State | None = None
        with pytest.raises(StateError) as err:
            ro = open_state(d / "state.db")
            ro.ledger.advance_cursor(6)
        if ro is not None:
            ro.close()
        assert str(d / "state.db") in str(err.value)
        assert "read-only" in str(err.value) or "cannot be opened" in str(err.value)
    finally:
        if mounted:
            subprocess.run(["umount", str(d)], check=False)
        d.rmdir()


def test_prune_keeps_pending_and_recent(state_at: Path | str) -> None:
    st = open_state(state_at)
    s = st.ledger
    s.record([(1, "done", None, None, None, ""), (2, "pending", None, None, None, "")])
    st.database.execute("UPDATE events SET updated_at = 0")
    assert s.prune(1, keep_above=100) == 1
    assert set(s.states([1, 2])) == {2}
    st.close()


def test_large_ids_and_many_at_once(state_at: Path | str) -> None:
    """Zabbix event ids are 64-bit, and a page of events is read in chunks below the
    bound-parameter limits."""
    st = open_state(state_at)
    big = 2**62 + 7
    rows: list[tuple[int, EventState, str | None, str | None, str | None, str]] = [
        (big, "done", "linux", "x", "y", "")]
    st.ledger.record(rows + [(i, "skipped", None, None, None, "") for i in range(1, 1201)])
    st.ledger.advance_cursor(big)
    assert st.ledger.cursor == big and len(st.ledger.states([big, *range(1, 1301)])) == 1201
    st.close()
