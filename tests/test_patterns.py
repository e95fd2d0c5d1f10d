"""Pattern dictionaries: loading, matching, and the shipped dictionaries' own examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hefestus.classify.patterns import load_catalog, load_dictionary
from hefestus.errors import ConfigError
from tests.support.paths import ROOT

SHIPPED = sorted((ROOT / "patterns").glob("*.toml"))
REQUIRED_DOMAINS = {"kubernetes", "github-actions", "argocd", "linux", "database"}


def _examples() -> list[tuple[str, str, str]]:
    out = []
    for path in SHIPPED:
        d = load_dictionary(path)
        for p in d.patterns:
            for ex in p.examples:
                out.append((d.domain, p.id, ex))
    return out


def test_required_domains_are_shipped_with_examples() -> None:
    catalog = load_catalog(ROOT / "patterns")
    assert REQUIRED_DOMAINS <= set(catalog.domains)
    for domain in REQUIRED_DOMAINS:
        d = catalog[domain]
        assert len(d) >= 20, f"{domain}: only {len(d)} patterns"
        assert all(p.examples for p in d.patterns), f"{domain}: a pattern has no example"
        assert d.fallback, f"{domain}: no fallback triage steps"


@pytest.mark.parametrize(("domain", "pattern_id", "example"), _examples(),
                         ids=lambda v: v if len(v) < 40 else v[:40])
def test_each_example_is_won_by_its_own_pattern(domain: str, pattern_id: str, example: str) -> None:
    """Within a file the first match wins: an example must not be shadowed by an earlier pattern."""
    d = load_dictionary(ROOT / "patterns" / f"{domain}.toml")
    found = d.match(example)
    assert found is not None, f"{pattern_id}: its example does not match"
    assert found.pattern.id == pattern_id


def test_solutions_use_named_groups_only_where_captured(tmp_path: Path) -> None:
    d = load_dictionary(Path(__file__).parent / "data" / "patterns" / "linux.toml")
    c = d.classify("Nov 24 host systemd[1]: php8.2-fpm.service: Failed with result 'timeout'.")
    assert c.category == "service-failed" and c.pattern_id == "systemd-unit-failed"
    assert c.solutions[0] == "systemctl status php8.2-fpm.service"
    assert c.cause == "A systemd unit (php8.2-fpm.service) failed."
    assert c.solutions[2].endswith("jsonpath='{.status.phase}'")  # not a group: left alone
    assert c.matched_text.startswith("Nov 24 host systemd[1]")
    assert c.groups == {"unit": "php8.2-fpm.service", "result": "timeout"}


def test_no_match_is_honestly_unclassified() -> None:
    d = load_dictionary(Path(__file__).parent / "data" / "patterns" / "linux.toml")
    c = d.classify("everything is fine")
    assert not c.classified and c.category is None and c.pattern_id is None and c.confidence == 0
    assert c.solutions == d.fallback


def test_matching_is_case_insensitive_by_default() -> None:
    d = load_dictionary(Path(__file__).parent / "data" / "patterns" / "linux.toml")
    assert d.match("NO SPACE LEFT ON DEVICE") is not None


def test_best_domain_prefers_the_most_confident_match() -> None:
    catalog = load_catalog(Path(__file__).parent / "data" / "patterns")
    text = 'ERROR:  could not extend file "base/16384/2619": No space left on device'
    c = catalog.best(text)
    assert (c.domain, c.pattern_id) == ("database", "pg-disk-full")


def _write(tmp_path: Path, name: str, body: str) -> Path:
    p = tmp_path / name
    p.write_text(body)
    return p


HEAD = '[dictionary]\ndomain = "x"\n\n'


def test_bad_regex_names_file_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "x.toml", HEAD + '[[pattern]]\nid = "a"\ncategory = "c"\ncause = "c"\n'
               'solutions = ["s"]\nregex = \'foo(?=bar)\'\n')
    with pytest.raises(ConfigError) as err:
        load_dictionary(p)
    assert err.value.line == 9
    assert "no lookahead" in str(err.value) and str(p) in str(err.value)


def test_missing_key_and_bad_id(tmp_path: Path) -> None:
    p = _write(tmp_path, "x.toml", HEAD + '[[pattern]]\nid = "a"\ncategory = "c"\nregex = "r"\n'
               'solutions = ["s"]\n\n[[pattern]]\nid = "Bad Id"\ncategory = "c"\nregex = "r"\ncause = "c"\n'
               'solutions = ["s"]\n')
    with pytest.raises(ConfigError) as err:
        load_dictionary(p)
    msg = str(err.value)
    assert "pattern[0].cause: required key is missing" in msg
    assert "; line 11: pattern[1].id: String should match pattern" in msg
    assert err.value.line == 4


def test_domain_must_match_file_name(tmp_path: Path) -> None:
    p = _write(tmp_path, "y.toml", HEAD)
    with pytest.raises(ConfigError, match=r"y.toml:2: dictionary.domain is 'x'"):
        load_dictionary(p)


def test_duplicate_pattern_id(tmp_path: Path) -> None:
    one = '[[pattern]]\nid = "a"\ncategory = "c"\nregex = "r"\ncause = "c"\nsolutions = ["s"]\n'
    p = _write(tmp_path, "x.toml", HEAD + one + one)
    with pytest.raises(ConfigError, match=r"x.toml:11: duplicate pattern id 'a'"):
        load_dictionary(p)


def test_seed_json_format_carries_over(tmp_path: Path) -> None:
    seed = {"patterns": {
        "image_pull_error": {"pattern": "ErrImagePull|ImagePullBackOff", "category": "Image",
                             "solutions": ["Check the image name", "Check registry credentials"]},
        "oom": {"pattern": "OOMKilled", "category": "resources",
                "solutions": ["kubectl describe pod <pod>   # Last State: OOMKilled", "Raise the memory limit"],
                "description": "The container used more memory than its limit."},
    }}
    p = _write(tmp_path, "kubernetes.json", json.dumps(seed, indent=2))
    d = load_dictionary(p)
    assert d.domain == "kubernetes" and len(d) == 2
    c = d.classify("Warning  Failed  kubelet  Error: ImagePullBackOff")
    assert (c.category, c.pattern_id) == ("image", "image_pull_error")
    assert c.solutions == ("Check the image name", "Check registry credentials")
    assert d.classify("Reason: OOMKilled").cause == "The container used more memory than its limit."


def test_seed_json_errors_name_the_pattern_and_line(tmp_path: Path) -> None:
    p = _write(tmp_path, "k.json", '{"patterns": {\n  "a": {"pattern": "(", "category": "c", "solutions": ["s"]}\n}}')
    with pytest.raises(ConfigError, match=r"k.json:2: pattern 'a': invalid regex"):
        load_dictionary(p)
    p = _write(tmp_path, "k.json", '{"patterns": {\n  "a": {"pattern": "x"}\n}}')
    with pytest.raises(ConfigError, match=r"k.json:2: pattern 'a': category: Field required"):
        load_dictionary(p)
    p = _write(tmp_path, "k.json", '{"patterns": {\n  "a": \n}')
    with pytest.raises(ConfigError, match=r"k.json:3: invalid JSON"):
        load_dictionary(p)


@pytest.mark.timeout(20)
def test_catastrophic_backtracking_cannot_stall_matching(tmp_path: Path) -> None:
    """(a+)+$ against 'aaaa...b' takes exponential time in a backtracking engine; RE2 is linear.

    The bound is pytest-timeout's: with Python's re this would not finish in our lifetime.
    """
    p = _write(tmp_path, "x.toml", HEAD + '[[pattern]]\nid = "evil"\ncategory = "c"\nregex = "(a+)+$"\n'
               'cause = "c"\nsolutions = ["s"]\n')
    d = load_dictionary(p)
    text = "a" * 100_000 + "b"
    assert d.match(text) is None
    assert d.match("a" * 50) is not None


def test_invalid_utf8_file_is_a_clean_error(tmp_path: Path) -> None:
    p = tmp_path / "x.toml"
    p.write_bytes(HEAD.encode() + b'# caf\xe9\n')
    with pytest.raises(ConfigError, match=r"x.toml:4: file is not valid UTF-8"):
        load_dictionary(p)


def test_dictionary_too_big_for_one_automaton_still_matches_in_order() -> None:
    """RE2's combined set has a memory budget; past it, each regex is tried in turn (still RE2)."""
    from hefestus.classify import regex

    saved = regex._SET_OPTIONS.max_mem
    regex._SET_OPTIONS.max_mem = 1 << 12
    try:
        sources = [f"error {i}[^\\n]{{0,40}}code {i}" for i in range(50)]
        rs = regex.RegexSet([f"(?i){s}" for s in sources], [regex.compile_regex(s) for s in sources])
        assert not rs.combined
        assert rs.match("ERROR 7 happened: code 7; error 3 x code 3") == [3, 7]
    finally:
        regex._SET_OPTIONS.max_mem = saved
