"""The command line: analyze offline, and clean errors (exit 2, file:line) for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hefestus.cli import main
from tests.support.helpers import offline_config
from tests.support.paths import DATA


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return offline_config(tmp_path, DATA)


def test_analyze_json_picks_the_best_domain(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "analyze", "--json", "FATAL:  sorry, too many clients already"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["domain"] == "database" and out["category"] == "too-many-connections"
    assert out["pattern_id"] == "pg-too-many-clients" and out["confidence"] == 0.95
    assert out["cause"] and out["solutions"] and out["matched_text"] == "FATAL:  sorry, too many clients already"


def test_analyze_reads_stdin_and_honours_domain(config: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "hefestus", "--config", str(config), "analyze", "--domain",
                          "linux", "-"], input="disk: No space left on device\n", capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("[Hefestus] linux / disk-full")


def test_analyze_unknown_domain_is_exit_2(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "analyze", "--domain", "nosql", "x"]) == 2
    assert "unknown domain 'nosql'" in capsys.readouterr().err


def test_bad_config_is_exit_2_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "hefestus.toml"
    p.write_text('[zabbix]\nurl = "http://z"\ntoken = "t"\ntimeout = -1\n')
    assert main(["--config", str(p), "check"]) == 2
    err = capsys.readouterr().err
    assert f"{p}:4: zabbix.timeout: Input should be greater than 0" in err
    assert "Traceback" not in err


def test_broken_pattern_file_is_reported_by_check(tmp_path: Path, config: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    patterns = tmp_path / "patterns"
    patterns.mkdir()
    (patterns / "linux.toml").write_text('[dictionary]\ndomain = "linux"\n[[pattern]]\nid = "x"\n'
                                         'category = "c"\ncause = "c"\nsolutions = ["s"]\nregex = "a(b"\n')
    config.write_text(config.read_text().replace(str(DATA / "patterns"), str(patterns)))
    assert main(["--config", str(config), "check"]) == 2
    assert f"{patterns / 'linux.toml'}:8: pattern 'x': invalid regex 'a(b': missing )" in capsys.readouterr().err


def test_check_reports_zabbix_down_as_failure(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config.write_text(config.read_text().replace('token = "x"', 'token = "x"\nretries = 1\ntimeout = 2'))
    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "[  ok] patterns linux" in out
    assert "[FAIL] zabbix: user.login: cannot connect to http://127.0.0.1:9" in out


def test_analyze_asks_the_model_when_one_is_configured(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A text no pattern knows gets the model's answer; --no-model keeps to the patterns."""
    from tests.support.ollama import FakeOllama

    with FakeOllama() as fake:
        config.write_text(config.read_text() + f'[ollama]\nurl = "{fake.url}"\nmodel = "llama3.1:8b"\n')
        assert main(["--config", str(config), "analyze", "--json", "frobnicator wedged again"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["source"] == "model llama3.1:8b" and out["model"] == "llama3.1:8b"
        assert out["cause"].startswith("Diagnosed by the fake model") and out["solutions"]
        assert main(["--config", str(config), "analyze", "--no-model", "frobnicator wedged again"]) == 0
        assert "no pattern matched" in capsys.readouterr().out.splitlines()[0]
        assert fake.chat_calls == 1


def test_check_tells_model_not_pulled_from_server_down(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.ollama import FakeOllama

    base = config.read_text().replace('token = "x"', 'token = "x"\nretries = 1\ntimeout = 2')
    with FakeOllama(models=["mistral:7b"]) as fake:
        config.write_text(base + f'[ollama]\nurl = "{fake.url}"\nmodel = "llama3.1:8b"\n')
        assert main(["--config", str(config), "check"]) == 1
        out = capsys.readouterr().out
        assert (f"[FAIL] model: Ollama at {fake.url} is up but does not have llama3.1:8b "
                "(run `ollama pull llama3.1:8b`; it has: mistral:7b)") in out
    config.write_text(base + '[ollama]\nurl = "http://127.0.0.1:9"\nmodel = "llama3.1:8b"\n')
    assert main(["--config", str(config), "check"]) == 1
    assert "[FAIL] model: Ollama at http://127.0.0.1:9: cannot connect (is it running?)" in capsys.readouterr().out
