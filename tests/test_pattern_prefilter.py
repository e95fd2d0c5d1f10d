"""The Hyperscan prefilter changes no answer: each shipped dictionary, accelerated, answers
every text (corpus, examples, look-alikes, generated mixes) exactly as RE2's set alone does.

Hyperscan is a declared dependency on x86-64: there a dictionary that ends up on RE2 alone
is a failure, not a skip. The corners where PCRE's semantics differ from RE2's (``$`` before a
final newline, ``\\s`` and the vertical tab, Unicode case folding, patterns Hyperscan cannot
compile) are each checked against RE2's own answer.
"""

from __future__ import annotations

import platform
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hefestus.classify import prefilter
from hefestus.classify.evaluate import load_corpus
from hefestus.classify.patterns import Catalog, Dictionary, Pattern, load_catalog
from hefestus.classify.regex import RegexSet, compile_regex
from tests.support.helpers import dictionary_of, match_answer
from tests.support.paths import DATA, ROOT

ON_X86_64 = platform.machine() in ("x86_64", "AMD64")


@pytest.fixture(scope="module")
def pairs() -> list[tuple[Dictionary, Dictionary]]:
    """(as shipped, RE2 alone) for every shipped dictionary."""
    catalog = load_catalog(ROOT / "patterns")
    return [(catalog[d], Dictionary(d, catalog[d].patterns, accelerate=False)) for d in catalog.domains]


def _examples() -> list[str]:
    catalog = load_catalog(ROOT / "patterns")
    return [e for d in catalog.domains for p in catalog[d].patterns for e in p.examples]


EXAMPLES = _examples()
TEXTS = ([s.text for s in load_corpus(sorted((DATA / "corpus").glob("*.jsonl")))]
         + [c["text"] for c in tomllib.loads((DATA / "patterns" / "lookalikes" / "cases.toml").read_text())["case"]]
         + EXAMPLES)


def test_hyperscan_scans_every_shipped_dictionary_on_x86_64(pairs: list[tuple[Dictionary, Dictionary]]) -> None:
    for fast, plain in pairs:
        assert plain.engine == "re2"
        if ON_X86_64:  # a declared dependency there: missing means a broken install, not a skip
            assert prefilter.available(), "hyperscan is not installed (pyproject declares it on x86-64)"
            assert fast.engine == "hyperscan", fast.domain
        else:  # pragma: no cover - no wheel for other machines
            assert fast.engine == "re2"


def test_same_answers_on_corpus_lookalikes_and_examples(pairs: list[tuple[Dictionary, Dictionary]]) -> None:
    assert len(TEXTS) > 700
    for fast, plain in pairs:
        for text in TEXTS:
            assert match_answer(fast, text) == match_answer(plain, text), (fast.domain, text)


def test_same_best_match_across_dictionaries(pairs: list[tuple[Dictionary, Dictionary]]) -> None:
    fast, plain = Catalog(f for f, _ in pairs), Catalog(p for _, p in pairs)
    for text in TEXTS:
        assert fast.best(text) == plain.best(text), text


# Pieces that stress the differences between PCRE and RE2, mixed with real examples.
_TRICKS = ["\x0b", "\n", "\r\n", " ", "\t", "é", "\u212a", "\u017f", "K", "s", "“", "0", "-", "/", ":", "$"]


@st.composite
def _mixed_text(draw: st.DrawFn) -> str:
    parts: list[str] = []
    for _ in range(draw(st.integers(1, 4))):
        piece = draw(st.sampled_from(EXAMPLES))
        cut = draw(st.integers(0, len(piece)))
        if draw(st.booleans()):  # a piece broken by a trick character at a random point
            piece = piece[:cut] + draw(st.sampled_from(_TRICKS)) + piece[cut:]
        if draw(st.booleans()):
            piece = piece.swapcase()
        parts.append(piece)
    return draw(st.sampled_from(["\n", " ", "", "\x0b"])).join(parts) + draw(st.sampled_from(["", "\n", "\u212a"]))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_mixed_text())
def test_same_answers_on_generated_mixes(text: str, pairs: list[tuple[Dictionary, Dictionary]]) -> None:
    for fast, plain in pairs:
        assert match_answer(fast, text) == match_answer(plain, text), (fast.domain, text)


@pytest.mark.parametrize(("source", "text", "expected"), [
    (r"^fatal: (?P<msg>.+)$", "fatal: it broke\n", None),  # PCRE's $ also before a final \n
    (r"^fatal: (?P<msg>.+)$", "fatal: it broke", {"msg": "it broke"}),
    (r"disk (?P<dev>\S+) is full", "disk /dev/s\x0bda is full", {"dev": "/dev/s\x0bda"}),  # RE2's \S takes VT
    (r"kubelet (?P<what>\w+)", "\u212aUBELET stopped", {"what": "stopped"}),  # Kelvin sign folds to k
    (r"\x{17F}tart (?P<unit>\w+)", "START nginx", {"unit": "nginx"}),  # long s folds to s: residual
    (r"ſtart (?P<unit>\w+)", "Start nginx", {"unit": "nginx"}),  # a non-ASCII source: residual
    (r"(?U)a+(?P<b>b)", "xaab", {"b": "b"}),  # a flag Hyperscan refuses: residual
])
def test_pcre_corners_answer_as_re2(source: str, text: str, expected: dict[str, str] | None) -> None:
    fast, plain = dictionary_of(["no such thing", source]), dictionary_of(["no such thing", source], accelerate=False)
    found = fast.match(text)
    assert (None if found is None else dict(found.raw)) == expected
    assert match_answer(fast, text) == match_answer(plain, text)


def test_dollar_is_a_false_candidate_that_re2_turns_down() -> None:
    rs = RegexSet([r"(?i)^fatal: .+$"])
    assert rs.engine == ("hyperscan" if ON_X86_64 else "re2")
    if ON_X86_64:
        assert rs.match(b"fatal: x\n") == [0]  # a candidate only ...
    assert dictionary_of([r"^fatal: .+$"]).match("fatal: x\n") is None  # ... confirmed by nobody


def test_uncompilable_patterns_stay_in_a_residual_re2_set() -> None:
    sources = [r"(?i)disk \S+ full", r"(?i)\x{212A}ube", "(?i)naïve (\\w+)", r"(?i)timeout"]
    pf = prefilter.build(tuple(sources))
    if not ON_X86_64:  # pragma: no cover
        assert pf is None
        return
    assert pf is not None and pf.covered == (0, 3) and pf.residual == (1, 2)
    rs = RegexSet(sources)
    assert rs.match("kube timeout; disk /a full") == [0, 1, 3]
    assert rs.match("naïve x") == [2]  # not ASCII: RE2's set


def test_threads_share_adictionary_of(pairs: list[tuple[Dictionary, Dictionary]]) -> None:
    """A scan releases the GIL and a scratch space serves one scan at a time: one per thread."""
    fast, plain = pairs[0][0], pairs[0][1]
    texts = [t for t in TEXTS if t.isascii()][:200]
    expected = [match_answer(plain, t) for t in texts]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                assert [match_answer(fast, t) for t in texts] == expected
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


@pytest.fixture
def wrong_prefilter(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A real Hyperscan database that disagrees with RE2: compiled from other patterns."""
    if not ON_X86_64:  # pragma: no cover
        pytest.fail("needs Hyperscan (x86-64)")
    real = prefilter.build

    def build(sources: tuple[str, ...]) -> prefilter.Prefilter | None:
        return real(tuple("(?i)nothing like it" for _ in sources))

    monkeypatch.setattr(prefilter, "build", build)
    yield


@pytest.mark.usefixtures("wrong_prefilter")
def test_a_prefilter_that_misses_an_example_is_dropped() -> None:
    p = Pattern("p", "c", "test", compile_regex(r"disk (?P<d>\S+) full"), "cause", ("step",), 0.8,
                ("kernel: disk /dev/sda full",))
    d = Dictionary("t", [p])
    assert d.engine == "re2"
    assert d.match("disk /dev/sdb full") is not None


def test_without_hyperscan_re2_answers_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = TEXTS[::7]
    shipped = load_catalog(ROOT / "patterns")
    expected = [shipped.best(t) for t in texts]
    monkeypatch.setattr(prefilter, "hyperscan", None)
    prefilter.build.cache_clear()
    try:
        catalog = load_catalog(ROOT / "patterns")
        assert {catalog[d].engine for d in catalog.domains} == {"re2"}
        assert [catalog.best(t) for t in texts] == expected
        assert sum(c.classified for c in expected) > len(texts) // 2
    finally:
        prefilter.build.cache_clear()


def test_a_changed_dictionary_file_gets_its_own_prefilter(tmp_path: Path) -> None:
    """The compile cache is keyed by the sources: an edited pattern is never answered by the
    database of its previous text."""
    head = '[dictionary]\ndomain = "t"\n\n[[pattern]]\nid = "p"\ncategory = "c"\ncause = "x"\nsolutions = ["Check y."]\n'
    (tmp_path / "t.toml").write_text(head + 'regex = "alpha fault"\n')
    assert load_catalog(tmp_path)["t"].match("an alpha fault") is not None
    (tmp_path / "t.toml").write_text(head + 'regex = "beta fault"\n')
    d = load_catalog(tmp_path)["t"]
    assert d.match("an alpha fault") is None and d.match("a beta fault") is not None
