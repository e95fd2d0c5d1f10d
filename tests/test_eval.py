"""`hefestus eval`: corpus loading, scoring, the command, and the committed corpus as a gate."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections import Counter
from pathlib import Path

import pytest

from hefestus.classify.evaluate import (
    UNCLASSIFIED,
    CorpusError,
    Sample,
    evaluate,
    format_table,
    load_corpus,
    misses,
)
from hefestus.classify.knowledge import load_knowledge
from hefestus.classify.patterns import load_catalog
from hefestus.cli import main
from hefestus.values import Classification, Suggestion
from tests.support.helpers import offline_config
from tests.support.paths import DATA, ROOT

CORPUS = DATA / "corpus"
DOMAINS = ("kubernetes", "github-actions", "argocd", "linux", "database")


def _c(domain: str, category: str | None) -> Classification:
    return Classification(domain=domain, category=category, pattern_id=category, confidence=0.9 if category else 0.0,
                          matched_text="", cause="c", solutions=("s",))


def _write(tmp_path: Path, name: str, lines: list[object]) -> Path:
    p = tmp_path / name
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return p


# ------------------------------------------------------------------------------ loading


def test_load_corpus_reads_every_file_and_skips_blank_lines(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.jsonl", [{"text": "disk full", "domain": "linux", "category": "disk-full",
                                      "source": "https://example.org/1"}, ""])
    b = _write(tmp_path, "b.jsonl", [{"text": "all good", "domain": "none"}])
    samples = load_corpus([a, b], domains=["linux"])
    assert [(s.domain, s.category, s.origin) for s in samples] == [
        ("linux", "disk-full", f"{a}:1"), ("none", None, f"{b}:1")]


def test_every_bad_line_is_named_with_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "bad.jsonl", [
        "{not json", ["a", "list"], {"text": "x"}, {"text": "", "domain": "linux"},
        {"text": "x", "domain": "kubernets"}, {"text": "x", "domain": "linux", "label": "y"},
        {"text": "x", "domain": "none", "category": "oom"}, {"text": "ok", "domain": "linux"}])
    with pytest.raises(CorpusError) as err:
        load_corpus([p], domains=["linux", "kubernetes"])
    problems = err.value.problems
    assert [msg.split(": ", 1)[0] for msg in problems] == [f"{p}:{n}" for n in range(1, 8)]
    text = str(err.value)
    assert "not a JSON object" in text and "unknown domain 'kubernets'" in text
    assert "unknown key(s) label" in text and 'a "none" text has no category' in text


def test_a_missing_file_is_a_corpus_error(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="cannot read"):
        load_corpus([tmp_path / "nope.jsonl"])


# ------------------------------------------------------------------------------ scoring


SAMPLES = [
    Sample("oom a", "linux", "oom", "s", "f:1"),
    Sample("oom b", "linux", "oom", "s", "f:2"),
    Sample("pod x", "kubernetes", None, "s", "f:3"),
    Sample("unknown", "kubernetes", "crashloop", "s", "f:4"),
    Sample("test failed", "none", None, "s", "f:5"),
    Sample("oom in a test", "none", None, "s", "f:6"),
]
ANSWERS = {"oom a": _c("linux", "oom"), "oom b": _c("linux", "disk-full"), "pod x": _c("linux", "oom"),
           "unknown": _c("kubernetes", None), "test failed": _c("linux", None),
           "oom in a test": _c("linux", "oom")}


def test_figures_per_domain_overall_and_confusions() -> None:
    report = evaluate(SAMPLES, lambda text: ANSWERS[text])
    out = report.as_dict()
    assert out["count"] == 6
    assert out["known_domain_accuracy"] == 0.5  # 2 of 4 known texts in the right domain
    assert out["none_left_alone"] == 0.5
    assert out["per_domain"]["linux"] == {"count": 2, "coverage": 1.0, "domain_accuracy": 1.0,
                                          "category_labelled": 2, "category_accuracy": 0.5}
    assert out["per_domain"]["kubernetes"]["coverage"] == 0.5
    assert out["per_domain"]["kubernetes"]["category_accuracy"] == 0.0
    assert {(c["expected"], c["got"]): c["count"] for c in out["confusions"]} == {
        ("kubernetes", "linux"): 1, ("kubernetes", UNCLASSIFIED): 1, ("none", "linux"): 1}
    assert "model" not in out
    assert [o.sample.origin for o in misses(report)] == ["f:3", "f:4", "f:6"]
    table = format_table(report)
    assert "known domain accuracy: 50.0%" in table and "kubernetes -> unclassified: 1" in table


def test_an_empty_corpus_has_no_figures_rather_than_zero() -> None:
    out = evaluate([], lambda text: _c("linux", None)).as_dict()
    assert out["known_domain_accuracy"] is None and out["none_left_alone"] is None


def test_model_figures_count_answers_used_and_time_them() -> None:
    calls = iter(range(100))

    def suggest(text: str, c: Classification) -> Suggestion | None:
        if c.classified:
            return None  # the pattern's answer stands: the model is not asked
        if text == "unknown":
            return Suggestion(c, "cause", ("step",), 0.5, "model m", model="m")
        return _refused(c, ("placeholder-cause", "steps-repeat"))  # the answer and its retry

    # Each call of the clock is one second later: every suggestion takes one second.
    report = evaluate(SAMPLES, lambda text: ANSWERS[text], suggest=suggest,
                      clock=lambda: float(next(calls)))
    model = report.as_dict()["model"]
    assert model["asked"] == 2 and model["answered"] == 1 and model["answers_used"] == 0.5
    assert model["passed_gate"] == round(1 / 3, 4)  # 1 answer passed, 2 were refused
    assert model["no_answer"] == 0 and model["mean_answer_seconds"] == 1.0
    assert model["rejections"] == {"placeholder-cause": 1, "steps-repeat": 1}
    assert "answers that passed the gate: 33.3%" in format_table(report)


def _refused(c: Classification, reasons: tuple[str, ...]) -> Suggestion:
    """The pattern's advice after the gate refused the model's answers (Suggestion.rejected)."""
    s = Suggestion.from_pattern(c, note="Model m gave no usable answer")
    return dataclasses.replace(s, rejected=reasons) if hasattr(s, "rejected") else s


def test_gate_reasons_are_read_from_the_suggestion() -> None:
    c = _c("linux", None)
    assert Suggestion(c, "x", ("y",), 0.5, "model m", model="m").rejected == ()
    assert Suggestion.from_pattern(c).rejected == ()  # model down: no answer to judge
    assert _refused(c, ("too-short",)).rejected == ("too-short",)


# ------------------------------------------------------------------------------ the command


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return offline_config(tmp_path, ROOT)


def test_eval_command_prints_json_with_the_documented_keys(config: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    corpus = _write(tmp_path, "c.jsonl", [
        {"text": "FATAL:  sorry, too many clients already", "domain": "database"},
        {"text": "=== 3 passed in 0.12s ===", "domain": "none"}])
    assert main(["--config", str(config), "eval", "--json", str(corpus)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"known_domain_accuracy", "none_left_alone", "per_domain", "confusions"} <= set(out)
    assert out["known_domain_accuracy"] == 1.0 and out["none_left_alone"] == 1.0
    assert main(["--config", str(config), "eval", "--domain", "linux", str(corpus)]) == 0
    assert "database -> unclassified: 1" in capsys.readouterr().out


def test_eval_command_reports_bad_lines_with_exit_2(config: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    corpus = _write(tmp_path, "c.jsonl", [{"text": "x", "domain": "linux"}, "oops"])
    assert main(["--config", str(config), "eval", str(corpus)]) == 2
    assert f"{corpus}:2: not a JSON object" in capsys.readouterr().err
    assert main(["--config", str(config), "eval", "--model", str(corpus)]) == 2  # no model configured


def test_eval_with_the_model_reports_its_answers(config: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from tests.support.ollama import FakeOllama

    corpus = _write(tmp_path, "c.jsonl", [{"text": "frobnicator wedged again", "domain": "linux"},
                                          {"text": "FATAL:  sorry, too many clients already", "domain": "database"}])
    with FakeOllama() as fake:
        config.write_text(config.read_text() + f'[ollama]\nurl = "{fake.url}"\nmodel = "llama3.1:8b"\n')
        assert main(["--config", str(config), "eval", "--json", "--model", str(corpus)]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["asked"] == 1  # only the text no pattern knows, as the daemon would
    assert model["mean_answer_seconds"] is not None and "model_calls" in model["analyzer_stats"]


# ------------------------------------------------------------------------------ the corpus


def _corpus() -> list[Sample]:
    return load_corpus(sorted(CORPUS.glob("*.jsonl")), domains=load_catalog(ROOT / "patterns").domains)


def test_corpus_is_big_enough_and_every_text_has_a_source() -> None:
    samples = _corpus()
    per = Counter(s.domain for s in samples)
    assert sum(per[d] for d in DOMAINS) >= 400, per
    assert all(per[d] >= 40 for d in DOMAINS), per
    assert per["none"] >= 30
    assert all(s.source.strip() for s in samples), [s.origin for s in samples if not s.source.strip()]
    db = [f"{s.source} {s.text}".lower() for s in samples if s.domain == "database"]
    for engine, words in {"mysql/mariadb": ("mysql", "mariadb"), "redis": ("redis",),
                          "mongodb": ("mongo",), "postgresql": ("postgres",)}.items():
        assert sum(any(w in t for w in words) for t in db) >= 10, engine
    assert len({s.text for s in samples}) == len(samples), "a text is in the corpus twice"


def test_no_corpus_text_is_a_copy_of_a_pattern_example() -> None:
    """The corpus measures the dictionaries; a copied example would only measure itself."""
    catalog = load_catalog(ROOT / "patterns")
    examples = {" ".join(e.split()) for d in catalog.domains for p in catalog[d].patterns for e in p.examples}
    copies = [s.origin for s in _corpus() if " ".join(s.text.split()) in examples]
    assert not copies, copies


def test_committed_corpus_holds_the_thresholds(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The gate: the shipped rules and dictionaries, through `hefestus eval` as operators run it."""
    floor = tomllib.loads((CORPUS / "thresholds.toml").read_text())
    files = [str(p) for p in sorted(CORPUS.glob("*.jsonl"))]
    assert main(["--config", str(config), "eval", "--json", "--no-model", *files]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["known_domain_accuracy"] >= floor["known_domain_accuracy"], out["confusions"]
    assert out["none_left_alone"] >= floor["none_left_alone"], out["confusions"]


# ------------------------------------------------------------------------------ issue 13 wordings


def test_debian12_failed_to_start_captures_the_unit() -> None:
    k = load_knowledge(ROOT / "rules", ROOT / "patterns")
    c = k.analyze("Jan 10 08:00:01 deb systemd[1]: Failed to start mariadb.service - MariaDB 10.11.6 database server.")
    assert (c.domain, c.category) == ("linux", "service-failed")
    assert c.groups.get("unit") == "mariadb.service"


@pytest.mark.parametrize("text", ["PostgreSQL: too many connections",
                                  'FATAL:  too many connections for role "app"'])
def test_postgresql_connection_limits_do_not_get_mysql_advice(text: str) -> None:
    c = load_knowledge(ROOT / "rules", ROOT / "patterns").analyze(text)
    assert c.domain == "database" and c.pattern_id is not None and not c.pattern_id.startswith("mysql")
