"""Dictionary.match's fast paths give the answers of the plain str path, offsets included.

The matcher encodes a text once and searches its UTF-8 bytes; for a non-ASCII text it maps
byte offsets back to character offsets itself, and only a match ending inside a character
(``\\C``) goes back to re2's own mapping. Each path is checked against a reference that
searches the str with each regex in file order, the way matching worked before.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from hefestus.classify.patterns import Catalog, Dictionary, Pattern, _line_around
from hefestus.classify.regex import RegexSet, compile_regex
from tests.support.helpers import dictionary_of, match_answer

SOURCES = [
    r"disk (?P<device>/dev/\S+) is full",
    r"\bOOM\b.*?killed process (?P<pid>\d+)(?: \((?P<comm>[^)]*)\))?",
    r"certificate for (?P<host>[\w.-]+) expired(?P<empty>x?)",
    r"line one\s+line two (?P<tail>\w+)",
    r"^fatal: (?P<msg>.+)$",
    r"naïve (?P<word>\w+)",
    r"timeout after (?P<secs>\d+)s",
]


def _reference(d: Dictionary, text: str) -> tuple[Any, ...] | None:
    """First pattern in file order whose str search matches: id, offsets, raw groups."""
    for p in d.patterns:
        m = p.regex.search(text)
        if m is not None:
            return p.id, m.start(), m.end(), {k: v for k, v in m.groupdict().items() if v}
    return None


def test_offsets_are_characters_after_non_ascii_text() -> None:
    d = dictionary_of(SOURCES)
    text = "Ünïcödé 日本語 — ok\nkernel: disk /dev/sdä1 is full\nnext"
    found = d.match(text)
    assert found is not None and found.pattern.id == "p0"
    assert text[found.start:found.end] == "disk /dev/sdä1 is full"
    assert found.raw == found.groups == {"device": "/dev/sdä1"}
    assert found.matched_text == "kernel: disk /dev/sdä1 is full"


def test_non_ascii_pattern_and_optional_or_empty_groups() -> None:
    d = dictionary_of(SOURCES)
    found = d.match("ßß naïve café")
    assert found is not None and found.raw == {"word": "caf"}  # RE2's \w is ASCII only
    assert (found.start, found.end) == (3, 12) and (found.pattern.id, 3, 12, found.raw) == _reference(d, "ßß naïve café")
    found = d.match("é OOM: killed process 42\n")
    assert found is not None and found.raw == {"pid": "42"}  # unmatched group left out
    found = d.match("ë certificate for ex.org expired")
    assert found is not None and found.raw == {"host": "ex.org"}  # empty group left out


def test_a_match_ending_inside_a_character_keeps_re2s_offsets() -> None:
    d = dictionary_of([r"x\C"])  # \C is one byte, even inside a UTF-8 character
    text = "aé xé b"
    found = d.match(text)
    m = d.patterns[0].regex.search(text)
    assert found is not None and (found.start, found.end) == (m.start(), m.end())


@pytest.mark.parametrize("seed", range(4))
def test_same_answers_as_the_str_path_on_mixed_texts(seed: int) -> None:
    rng = random.Random(seed)
    d = dictionary_of(SOURCES)
    pieces = ["disk /dev/sda1 is full", "OOM: killed process 7 (jäva)", "certificate for a.b expired",
              "line one\n line two end", "fatal: it broke", "naïve thing", "timeout after 30s",
              "é", "日本", "\u2028", "noise", "\t", "\n", "Ω OOM", "killed process 9", "—"]
    for _ in range(300):
        text = " ".join(rng.choice(pieces) for _ in range(rng.randrange(1, 8)))
        assert match_answer(d, text) == _reference(d, text), text


def test_regex_set_matches_str_and_bytes_alike() -> None:
    compiled = [compile_regex(s) for s in SOURCES]
    combined, fallback = RegexSet(SOURCES), RegexSet([], compiled)
    text = "Ünï fatal: boom\nnaïve x disk /dev/sda is full"
    expected = [i for i, rx in enumerate(compiled) if rx.search(text)]
    assert expected == [0, 5]  # ^ without (?m) is the start of the text only
    for s in (combined, fallback):
        assert s.match(text) == s.match(text.encode("utf-8")) == expected


@pytest.mark.parametrize("line", [
    "plain printable line", "  padded  ", "a\u2028b", "bidi \u202eevil\u202c here", "nbsp\xa0x",
    "tab\there", "x" * 299 + " " + "y" * 10,
])
def test_line_around_printable_shortcut_changes_nothing(line: str) -> None:
    from hefestus.classify.patterns import _LAYOUT, _MAX_MATCHED_TEXT

    text = f"before\n{line}\nafter"
    start = text.index(line) + 1
    end = start + 2
    expected = text[start - 1:start - 1 + len(line)].strip()
    if len(expected) > _MAX_MATCHED_TEXT:
        expected = text[start:end].strip()[:_MAX_MATCHED_TEXT]
    assert _line_around(text, start, end) == expected.translate(_LAYOUT).strip()


def test_best_reuses_the_match_and_answers_like_classify() -> None:
    a = dictionary_of(SOURCES)
    b = Dictionary("u", [Pattern("q", "c", "test", compile_regex(r"disk (?P<device>\S+)"), "cause {device}",
                                 ("look at {device}",), 0.9, ())])
    text = "é kernel: disk /dev/sdä1 is full"
    best = Catalog([a, b]).best(text)
    assert best == b.classify(text, routed_by="best match of all dictionaries")
    assert best.groups == {"device": "/dev/sdä1"}
