"""Issue 12, the files: allow-lists that mean it, a state file that is refused rather than
trusted or damaged, only regular files read from rules/ and patterns/, and environment
errors blamed on the variable. Each test is a reproduction from the issue, now fixed.

The allow-list check also has Hypothesis properties: whatever allow it accepts, no value
that allow admits carries a dangerous character or a leading ``-``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hefestus.app.reload import load_ruleset
from hefestus.classify.knowledge import load_knowledge
from hefestus.classify.patterns import Catalog
from hefestus.classify.regex import compile_regex
from hefestus.cli import main
from hefestus.config import load_settings
from hefestus.errors import ConfigError, StateError
from hefestus.remediation.allow import DANGEROUS, problems
from hefestus.remediation.rules import load_remediation_rules
from hefestus.state import open_state
from hefestus.tomlfile import MAX_FILE_BYTES, listing, load
from tests.support.helpers import toml_value
from tests.support.paths import DATA, ROOT

# -- 7. allow-lists -------------------------------------------------------------------------

RULE = """\
[[remediation]]
name = "restart-service"
domain = "linux"
category = "service-failed"
project = "ops"
job_id = "job-1"
options.unit = {{ value = "{{unit}}", allow = '^(nginx|php8\\.2-fpm)\\.service$' }}
options.target = {{ value = "{value}", allow = {allow}{extra} }}
"""


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_knowledge(DATA / "rules", DATA / "patterns").catalog


def load_rule(tmp_path: Path, catalog: Catalog, allow: str, *, value: str = "{host}",
              extra: str = "") -> None:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "50-x.toml").write_text(RULE.format(value=value, allow=toml_value(allow), extra=extra))
    load_remediation_rules(d, catalog=catalog)


@pytest.mark.parametrize(("allow", "admits"), [
    # The reproductions: "$HOME *", "a${IFS}b" and "-rf /" reached the job options.
    (r"^[A-Za-z0-9 $*{}./-]{1,100}$", "shell metacharacters"),
    # A deny-list that passed "(x) {y} #z !w" and a full-width semicolon.
    (r"""[^;|&`$<>\\'"\n]+""", "shell metacharacters"),
    (r"^[^;|&`$<>]+$", "shell metacharacters"),
    (r".+", "shell metacharacters"),
    (r"^[A-Za-z0-9.-]+$", "a leading '-'"),
    (r"^[a-z]+( [a-z]+)?$", "whitespace"),
    (r"^\pL+$", "non-ASCII characters"),
])
def test_loose_allows_are_refused_with_file_and_line(tmp_path: Path, catalog: Catalog, allow: str,
                                                     admits: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_rule(tmp_path, catalog, allow)
    assert "50-x.toml:8: remediation 'restart-service': option 'target': allow " in str(err.value)
    assert f"accepts {admits}" in str(err.value) or f"; {admits}" in str(err.value)


def _class(chars: str) -> str:
    """A character class both RE2 and Python's re read the same way."""
    return "[" + "".join("\\" + c if c in "\\]^-[" else c for c in chars) + "]"


@pytest.mark.parametrize("ch", list(DANGEROUS), ids=[f"U+{ord(c):04X}" for c in DANGEROUS])
@pytest.mark.parametrize("where", ["start", "middle", "end"])
def test_each_dangerous_character_is_found_wherever_the_allow_admits_it(ch: str, where: str) -> None:
    """Five fixed positions; the character is admitted at one of them only."""
    slots = ["[a-h]"] * 5
    slots[{"start": 0, "middle": 2, "end": 4}[where]] = _class("abcdefgh" + ch)
    allow = "^" + "".join(slots) + "$"
    found = problems(compile_regex(allow, case_sensitive=True), allow, [("field", "x")], path=False)
    assert found is not None and ascii(ch)[1:-1] in found


def test_path_options_refuse_dot_dot_and_empty_segments(tmp_path: Path, catalog: Catalog) -> None:
    """The old shipped allow admitted "/../../etc" and "//": with ``path = true`` it is refused."""
    with pytest.raises(ConfigError, match=r"accepts '\.\.' path segments .*'//'"):
        load_rule(tmp_path, catalog, r"^/[A-Za-z0-9/._-]{0,200}$", extra=", path = true")
    load_rule(tmp_path, catalog, r"^/[A-Za-z0-9/._-]{0,200}$")  # not marked: only the characters


def test_the_shipped_examples_name_their_units_and_keep_paths_inside() -> None:
    k = load_knowledge(ROOT / "rules", ROOT / "patterns")
    rules = {r.name: r for r in load_remediation_rules(ROOT / "rules", catalog=k.catalog).rules}
    unit = dict(rules["restart-failed-service"].options)["unit"].allow
    path = dict(rules["clean-full-disk"].options)["path"].allow
    assert unit is not None and path is not None
    assert unit.fullmatch("nginx.service") and not unit.fullmatch("sshd.service")
    assert not unit.fullmatch("a.service") and not unit.fullmatch("-x.service")
    for ok in ("/", "/var", "/var/lib/docker", "/boot/efi"):
        assert path.fullmatch(ok), ok
    for bad in ("/../../etc", "//", "/var//log", "/var/..", "/./x", "/-rf", "/var/lib/../../etc"):
        assert not path.fullmatch(bad), bad
    text = (ROOT / "rules" / "50-linux.toml").read_text()
    assert "comes from LOG TEXT" in text and "path = true" in text


_SAFE = "abcxyz019ABZ._:@/"
_RISKY = "-" + DANGEROUS


@st.composite
def allows(draw: st.DrawFn) -> str:
    """Allow-lists of the kind people write: classes and literals, repeated, in sequence,
    sometimes two alternatives."""
    def piece() -> str:  # mostly safe characters, so that many allows pass and are put to the test
        chars = draw(st.text(alphabet=_SAFE, min_size=1, max_size=6))
        if draw(st.integers(0, 9)) == 0:
            chars += draw(st.sampled_from(_RISKY))
        low = draw(st.integers(0, 2))
        high = draw(st.integers(max(low, 1), 4))
        return _class(chars) + f"{{{low},{high}}}"

    def sequence() -> str:
        return "".join(piece() for _ in range(draw(st.integers(1, 3))))

    return sequence() if draw(st.booleans()) else f"({sequence()}|{sequence()})"


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(allow=allows(), data=st.data())
def test_an_accepted_allow_never_admits_a_dangerous_value(allow: str, data: st.DataObject) -> None:
    """Soundness: if the check lets an allow through, no value the allow admits (as Python's
    re generates them: the same language for these constructs) is dangerous."""
    if problems(compile_regex(allow, case_sensitive=True), allow, [("field", "x")], path=False):
        return
    for _ in range(20):
        value = data.draw(st.from_regex(allow, fullmatch=True))
        assert not value.startswith("-"), (allow, value)
        assert not any(c in DANGEROUS or not c.isascii() for c in value), (allow, value)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(prefix=st.text(alphabet="abc", min_size=1, max_size=3), ch=st.sampled_from(DANGEROUS + "-"))
def test_an_allow_that_admits_a_dangerous_character_anywhere_is_refused(prefix: str, ch: str) -> None:
    """Completeness for the common shape: safe characters plus one dangerous one."""
    allow = "^" + _class("abc" + ch) + "{1,20}$"
    assert problems(compile_regex(allow, case_sensitive=True), allow, [("field", "x")], path=False)


# -- 10. the state file --------------------------------------------------------------------


def _damaged(tmp_path: Path) -> Path:
    """A state file whose interior table page is overwritten: PRAGMA quick_check reports it,
    while the schema and the first pages still read fine."""
    path = tmp_path / "state.db"
    st_ = open_state(path)
    st_.ledger.record([(i, "done", "linux", "x", "y", f"detail {i}" * 5) for i in range(1, 3000)])
    st_.close()
    db = sqlite3.connect(path)
    page_size = db.execute("PRAGMA page_size").fetchone()[0]
    db.close()
    data = bytearray(path.read_bytes())
    interior = next(n for n in range(1, len(data) // page_size) if data[n * page_size] == 0x05)
    offset = interior * page_size + 8  # its right-most child and its cell pointers
    data[offset:offset + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA quick_check").fetchone()[0] != "ok"  # the premise
    check.close()
    return path


def _config(tmp_path: Path, state: Path) -> Path:
    p = tmp_path / "hefestus.toml"
    p.write_text(f'[zabbix]\nurl = "http://127.0.0.1:9"\ntoken = "x"\n[classification]\n'
                 f'rules_dir = "{DATA / "rules"}"\npatterns_dir = "{DATA / "patterns"}"\n'
                 f'[state]\npath = "{state}"\n')
    return p


def test_a_damaged_file_is_refused_untouched_and_state_says_so(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = _damaged(tmp_path)
    before = path.read_bytes()
    with pytest.raises(StateError, match=r"damaged \(PRAGMA quick_check: .*corrupt; move it aside"):
        open_state(path)
    assert main(["--config", str(_config(tmp_path, path)), "state"]) == 1
    err = capsys.readouterr().err
    assert "damaged" in err and "Traceback" not in err
    assert path.read_bytes() == before


@pytest.mark.parametrize(("key", "value"), [("schema_version", "3x"), ("cursor", "abc"),
                                            ("cursor", "1.5"), ("floor", "")])
def test_a_meta_value_that_is_not_a_number_is_a_clear_error(tmp_path: Path, key: str, value: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "state.db"
    open_state(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(StateError, match=rf"meta '{key}' is '{value}', not a whole number"):
        open_state(path)
    assert main(["--config", str(_config(tmp_path, path)), "state"]) == 1
    assert "Traceback" not in capsys.readouterr().err and path.read_bytes() == before


@pytest.mark.parametrize("tables", [
    "CREATE TABLE t (x); INSERT INTO t VALUES (1)",
    "CREATE TABLE meta (name TEXT, data BLOB)",  # a meta table of another program
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('a', 'b')",
])
def test_a_foreign_sqlite_file_is_refused_and_left_byte_for_byte(tmp_path: Path, tables: str) -> None:
    path = tmp_path / "someone-else.db"
    db = sqlite3.connect(path)
    db.executescript(tables)
    db.close()
    before = path.read_bytes()
    with pytest.raises(StateError, match="not a Hefestus state file .* left untouched"):
        open_state(path)
    assert path.read_bytes() == before
    assert not Path(f"{path}-wal").exists()


def test_a_read_only_state_file_fails_at_open_and_in_check(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Before, it opened fine and `check` said "ok": only the first write failed, mid-cycle.
    (A read-only mount: root ignores file modes, so chmod proves nothing.)"""
    d = Path(tempfile.mkdtemp(prefix="hefestus-ro-"))
    mounted = False
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(d)], check=True)
        mounted = True
        open_state(d / "state.db").close()
        subprocess.run(["mount", "-o", "remount,ro", str(d)], check=True)
        with pytest.raises(StateError, match="read-only|cannot be opened"):
            open_state(d / "state.db")
        assert main(["--config", str(_config(tmp_path, d / "state.db")), "check"]) == 1
        err = capsys.readouterr().err
        assert str(d / "state.db") in err and "Traceback" not in err
    finally:
        if mounted:
            subprocess.run(["umount", str(d)], check=False)
        d.rmdir()


# -- 11. special files in rules/ and patterns/ ---------------------------------------------


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    rules, patterns = tmp_path / "rules", tmp_path / "patterns"
    shutil.copytree(DATA / "rules", rules)
    shutil.copytree(DATA / "patterns", patterns)
    return rules, patterns


def _settings(tmp_path: Path, rules: Path, patterns: Path) -> object:
    p = tmp_path / "hefestus.toml"
    p.write_text(f'[zabbix]\nurl = "http://127.0.0.1:9"\ntoken = "x"\n[classification]\n'
                 f'rules_dir = "{rules}"\npatterns_dir = "{patterns}"\n')
    return load_settings(p, {})


def _load_in_thread(tmp_path: Path, rules: Path, patterns: Path) -> BaseException | None:
    """load_ruleset in a thread, so that a hang fails the test in 5 s instead of blocking."""
    out: dict[str, BaseException | None] = {}

    def run() -> None:
        try:
            load_ruleset(_settings(tmp_path, rules, patterns))  # type: ignore[arg-type]
            out["error"] = None
        except BaseException as exc:  # noqa: BLE001 - reported below
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    assert "error" in out, "the loader hung"
    return out["error"]


@pytest.mark.parametrize(("name", "make", "message"), [
    ("60-x.toml", lambda p: os.mkfifo(p), "a FIFO, not a regular file"),
    ("60-x.toml", lambda p: p.symlink_to("/dev/zero"), "a character device, not a regular file"),
    ("Linux.TOML", lambda p: p.write_text("[[rule]]\n"), "the name ends in '.TOML', which is not read"),
    ("60-x.toml", lambda p: p.symlink_to(p.parent / "gone.toml"), "dangling symbolic link"),
    ("60-x.toml", lambda p: p.mkdir(), "a directory, not a regular file"),
], ids=["fifo", "dev-zero", "upper-case", "dangling", "directory"])
@pytest.mark.parametrize("where", ["rules", "patterns"])
def test_only_regular_rule_files_are_read_and_the_others_are_named(
        tmp_path: Path, dirs: tuple[Path, Path], name: str, make: object, message: str, where: str) -> None:
    rules, patterns = dirs
    target = (rules if where == "rules" else patterns) / name
    make(target)  # type: ignore[operator]
    error = _load_in_thread(tmp_path, rules, patterns)
    assert isinstance(error, ConfigError), error
    assert error.path == str(target) and message in str(error)


def test_listing_names_what_a_patterns_directory_would_skip(tmp_path: Path) -> None:
    """The same listing for pattern dictionaries (*.toml and *.json)."""
    (tmp_path / "linux.toml").write_text("")
    (tmp_path / "seed.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("")
    assert [p.name for p in listing(tmp_path, (".toml", ".json"))] == ["linux.toml", "seed.json"]
    (tmp_path / "Seed.JSON").write_text("{}")
    with pytest.raises(ConfigError, match=r"Seed\.JSON: the name ends in '\.JSON'"):
        listing(tmp_path, (".toml", ".json"))


def test_a_huge_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    with big.open("wb") as f:
        f.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(ConfigError, match=r"big\.toml: file is larger than 4 MiB"):
        load(big)


# -- 12. environment errors ----------------------------------------------------------------


def test_an_environment_error_names_the_variable_not_a_line(tmp_path: Path) -> None:
    """HEFESTUS_LOG_LEVEL=verbose was reported as "hefestus.toml:152: logging.level"."""
    p = tmp_path / "hefestus.toml"
    p.write_text('[zabbix]\nurl = "http://z"\ntoken = "t"\n[logging]\nlevel = "info"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(p, {"HEFESTUS_LOG_LEVEL": "verbose", "HEFESTUS_API_LISTEN": "nowhere"})
    text = str(err.value)
    assert text.startswith(f"{p}: environment variable HEFESTUS_LOG_LEVEL (sets logging.level): ")
    assert "environment variable HEFESTUS_API_LISTEN (sets api.listen): " in text
    assert err.value.line is None and ":5:" not in text


def test_a_file_error_beside_an_environment_error_keeps_its_line(tmp_path: Path) -> None:
    p = tmp_path / "hefestus.toml"
    p.write_text('[zabbix]\nurl = "http://z"\ntoken = "t"\ntimeout = -1\n')
    with pytest.raises(ConfigError) as err:
        load_settings(p, {"HEFESTUS_LOG_LEVEL": "verbose"})
    assert err.value.line == 4 and "zabbix.timeout" in str(err.value)
    assert "environment variable HEFESTUS_LOG_LEVEL" in str(err.value)
