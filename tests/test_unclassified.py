"""The teach loop: unclassified event kinds recorded by the pipeline, listed, and drafted as patterns."""

from __future__ import annotations

import shutil
import sqlite3
import time
import tomllib
from pathlib import Path

import pytest

from hefestus.analysis.teach import draft, generalise, parse_since
from hefestus.classify.knowledge import Knowledge
from hefestus.classify.patterns import load_dictionary
from hefestus.classify.regex import compile_regex
from hefestus.cli import main
from hefestus.config import AcknowledgeSettings, IntakeSettings
from hefestus.errors import StateError
from hefestus.pipeline.cycle import Pipeline
from hefestus.redact import REDACTED, Redactor
from hefestus.state import SCHEMA_VERSION, Sighting, State, UnclassifiedKind, open_state
from hefestus.state.unclassified import MAX_HOSTS, SAMPLE_LIMIT
from hefestus.testing import FakeZabbix, problem
from tests.support.paths import DATA, ROOT
from tests.support.zabbix_config import write_config

MYSTERY = "Apr 23 12:34:56 {host} frobd[{pid}]: spool 0x{hex} wedged after {n} retries, password=hunter2"
DISK = "kernel: write error: No space left on device"


def _text(host: str, pid: int) -> str:
    return MYSTERY.format(host=host, pid=pid, hex=f"{pid:08x}", n=pid % 7)


def _pipeline(zbx: FakeZabbix, state: State, knowledge: Knowledge) -> Pipeline:
    return Pipeline(zbx, state.ledger, lambda: knowledge, intake=IntakeSettings(first_start="backlog"),
                    ack=AcknowledgeSettings(), redact=Redactor(), unclassified=state.unclassified)


def test_the_pipeline_counts_one_kind_per_masked_text_and_redacts_the_sample(
        state_at: Path | str, test_knowledge: Knowledge) -> None:
    zbx = FakeZabbix()
    zbx.add(*(problem(i, "frobd log", text=_text(f"web-{i:02d}", 1000 + i), host=f"web-{i:02d}")
              for i in range(1, 26)),
            problem(40, "disk", text=DISK))
    state = open_state(state_at)
    try:
        report = _pipeline(zbx, state, test_knowledge).run_once()
        assert report.acknowledged == 26  # recording took nothing away
        kinds = state.unclassified.kinds()
        assert len(kinds) == 1  # one kind: hosts, pids, ids and counters differ only
        k = kinds[0]
        assert k.count == 25 and k.domain == test_knowledge.classify(zbx.visible[1]).domain  # as routed
        assert k.hosts == tuple(f"web-{i:02d}" for i in range(1, MAX_HOSTS + 1))  # bounded
        assert "hunter2" not in k.sample and REDACTED in k.sample
        assert k.sample.startswith("frobd log\n") and "web-01" in k.sample
        assert k.first_seen <= k.last_seen
        # Seen again (the overlap window re-reads handled events): not counted twice.
        _pipeline(zbx, state, test_knowledge).run_once()
        assert state.unclassified.kinds()[0].count == 25
    finally:
        state.close()


def test_a_failing_record_never_costs_an_event(tmp_path: Path, test_knowledge: Knowledge) -> None:
    class Broken:
        def record(self, sightings: object) -> None:
            raise StateError("disk on fire")

        def prune(self, older_than_days: int) -> int:
            raise StateError("disk on fire")

    zbx = FakeZabbix()
    zbx.add(problem(1, "x", text="frobnicator wedged again"))
    state = open_state(tmp_path / "s.db")
    try:
        pipe = Pipeline(zbx, state.ledger, lambda: test_knowledge, intake=IntakeSettings(first_start="backlog"),
                        ack=AcknowledgeSettings(), unclassified=Broken())
        assert pipe.run_once().acknowledged == 1
        assert state.ledger.states([1])[1].state == "done"
    finally:
        state.close()


def test_a_dry_run_records_nothing(tmp_path: Path, test_knowledge: Knowledge) -> None:
    zbx = FakeZabbix()
    zbx.add(problem(1, "x", text="frobnicator wedged again"))
    state = open_state(tmp_path / "s.db")
    try:
        _pipeline(zbx, state, test_knowledge).run_once(dry_run=True)
        assert state.unclassified.kinds() == []
    finally:
        state.close()


def test_listing_order_since_limit_bounds_and_prune(state_at: Path | str) -> None:
    state = open_state(state_at)
    now = time.time()
    try:
        u = state.unclassified
        u.record([Sighting("rare", "linux", ("a",), "rare thing", now - 3600)])
        u.record([Sighting("often", "database", (f"h{i}",), "x" * (SAMPLE_LIMIT + 50), now - 60)
                  for i in range(30)])
        u.record([Sighting("old", "linux", ("b",), "old thing", now - 30 * 86400)])
        u.record([Sighting("rare", "linux", ("c",), "rare thing", now - 7200)])  # seen earlier
        rare = next(k for k in u.kinds() if k.fingerprint == "rare")
        assert (rare.count, rare.hosts, rare.first_seen, rare.last_seen) == (
            2, ("a", "c"), now - 7200, now - 3600)
        assert [k.fingerprint for k in u.kinds()] == ["often", "rare", "old"]  # most frequent first
        assert [k.fingerprint for k in u.kinds(since=now - 7 * 86400)] == ["often", "rare"]
        assert [k.fingerprint for k in u.kinds(limit=1)] == ["often"]
        often = u.kinds(limit=1)[0]
        assert often.count == 30 and len(often.hosts) == MAX_HOSTS and len(often.sample) == SAMPLE_LIMIT
        assert u.prune(7) == 1
        assert {k.fingerprint for k in u.kinds()} == {"often", "rare"}
    finally:
        state.close()


def test_parse_since() -> None:
    assert parse_since("7d") == 7 * 86400 and parse_since("12h") == 43200 and parse_since("90") == 90
    with pytest.raises(ValueError, match="duration"):
        parse_since("a week")


@pytest.mark.parametrize("sample", [
    _text("web-01", 2231),
    "frobd log\n" + _text("web-01", 2231),
    "kube: pod api-7d9f8b6c5d-x2k4p in ns prod: Back-off pulling image 'reg/x:1.2' (x12 over 5m) #1 a\\b ^$ {x}",
    'it\'s "quoted" \t and tabbed',
    "12345 67890",  # nothing literal but numbers
    "weird\u00a0space and émojis 🙂 at 2024-04-23T12:34:56Z from 10.0.0.5:5432",
])
def test_the_draft_regex_compiles_and_matches_its_sample(sample: str) -> None:
    redacted = Redactor()(sample)
    rx = generalise(redacted, ("web-01",))
    assert compile_regex(rx).search(redacted) is not None, rx
    assert "web-01" not in rx  # the event's own host is volatile


def test_the_regex_generalises_volatile_parts() -> None:
    rx = generalise(Redactor()(_text("web-01", 2231)), ("web-01",))
    assert "2231" not in rx and "web-01" not in rx and "hunter2" not in rx
    other = _text("db-07", 4711).replace("hunter2", "s3cret")  # another event of the same kind
    assert compile_regex(rx).search(other) is not None, rx


def test_the_draft_pasted_into_a_dictionary_loads_and_classifies_its_sample(tmp_path: Path) -> None:
    sample = Redactor()("frobd log\n" + _text("web-01", 2231))
    kind = UnclassifiedKind("f" * 64, "linux", 3, ("web-01",), sample, time.time() - 60, time.time())
    assert load_dictionary(ROOT / "patterns" / "linux.toml").match(sample) is None  # truly unclassified
    text = draft(kind)
    assert "TODO" in text and "[[pattern]]" in text
    entry = tomllib.loads(text)["pattern"][0]
    assert entry["examples"] == [sample]
    copy = tmp_path / "linux.toml"
    shutil.copyfile(ROOT / "patterns" / "linux.toml", copy)
    with copy.open("a") as f:
        f.write("\n" + text)
    d = load_dictionary(copy)
    assert d.classify(sample).pattern_id == entry["id"]
    # And into a small dictionary of the test set, with a sample that needs a basic TOML string.
    tricky = 'frobd: it\'s "wedged"\n\tagain (x3)'
    small = tmp_path / "patterns"
    shutil.copytree(DATA / "patterns", small)
    target = sorted(small.glob("*.toml"))[0]
    kind2 = UnclassifiedKind("e" * 64, target.stem, 1, (), tricky, 0.0, 0.0)
    with target.open("a") as f:
        f.write("\n" + draft(kind2))
    assert load_dictionary(target).classify(tricky).pattern_id == "todo-eeeeeeeeee"


def test_cli_lists_and_drafts(tmp_path: Path, state_at: Path | str,
                             capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, state={"url": state_at} if isinstance(state_at, str) else {})
    state = open_state(state_at)
    now = time.time()
    state.unclassified.record([Sighting("a" * 64, "linux", ("web1", "web2"), "frobd: spool wedged", now - 10),
                               Sighting("a" * 64, "linux", ("web2",), "frobd: spool wedged", now - 5),
                               Sighting("b" * 64, "linux", ("old",), "ancient", now - 9 * 86400)])
    state.close()
    assert main(["--config", str(config), "unclassified"]) == 0
    out = capsys.readouterr().out
    assert "2x" in out and "web1, web2" in out and "frobd: spool wedged" in out and "ancient" not in out
    assert main(["--config", str(config), "unclassified", "--since", "30d", "--draft"]) == 0
    out = capsys.readouterr().out
    assert out.count("[[pattern]]") == 2 and "regex = 'frobd:\\s+spool\\s+wedged'" in out
    assert main(["--config", str(config), "unclassified", "--since", "soon"]) == 2


def test_a_newer_state_file_is_still_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    open_state(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(StateError, match="newer Hefestus"):
        open_state(path)
