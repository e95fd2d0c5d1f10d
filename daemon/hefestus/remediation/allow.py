"""The load-time check of a remediation option's ``allow`` regex: does it mean it?

A rendered option value ends up in a Rundeck job, and Rundeck script steps paste
``${option.x}`` into shell commands; the value comes from event text, which anyone
who can write a log line controls. So an ``allow`` must refuse every character that
can change what a shell command does, even when it is only *part* of a value that is
otherwise valid. Probing a dozen fixed strings (``a;b``, ``a$(b)``) proves little: an
allow of ``^[A-Za-z0-9 $*{}./-]{1,100}$`` refuses them all and still passes
``$HOME *``, ``a${IFS}b`` and ``-rf /``.

The check is systematic instead:

1. **Valid values.** Witnesses are derived from the regex itself: Python's regex
   parser (``sre_parse``, the same syntax as RE2 for everything an allow-list needs:
   literals, classes, alternatives, repetitions) gives the tree, and each node
   contributes its shortest forms (each alternative; a repetition at its minimum and
   one more). Every witness is confirmed with RE2, which is what rendering uses; when
   the parser cannot read RE2-only syntax, sample values stand in. Only witnesses of
   the template's shape count (its fixed text before the first and after the last
   placeholder, such as ``name: `` in ``name: {host}``): those are the values that
   can actually be rendered, and the fixed text is the rule author's, not the event's.
2. **Probes.** Each :data:`DANGEROUS` character (whitespace, quotes, backslash,
   ``$ ` ; | & < > ( ) { } [ ] * ? ! # ~ %``, newline, and non-ASCII stand-ins such
   as a full-width semicolon or a zero-width space) is inserted at, and substituted
   for, every position of the variable part of each witness (start, middle and end
   at least, for long ones); a ``-`` at its start (option injection:
   ``systemctl restart -rf``); for options marked ``path = true``, ``..`` segments
   and ``//``. Any probe the allow accepts refuses the rule, naming what it let in.

This is a sound check for the allow-lists it is meant for (classes, alternatives and
repetitions of them), property-tested with Hypothesis in tests/test_security_files.py;
for anything cleverer it errs towards refusing (no witness found is a refusal too).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from hefestus.classify.regex import Regex

with warnings.catch_warnings():  # deprecated aliases of re._parser, which typeshed does not cover
    warnings.simplefilter("ignore", DeprecationWarning)
    import sre_constants as sre
    import sre_parse

#: Characters no value taken from an event may carry into a job option.
SHELL = "'\"\\$`;|&<>(){}[]*?!#~%"
WHITESPACE = " \t\n\r\v\f"
#: Stand-ins for "any non-ASCII": look-alikes of shell syntax, invisible and line-breaking ones.
NON_ASCII = "\u00e9\u00a0\u200b\u2028\uff1b\uff04\u0130\U0001f600"
DANGEROUS = WHITESPACE + SHELL + NON_ASCII

#: When the regex cannot be parsed here (RE2-only syntax), these stand in as valid values.
_SAMPLES = ("a", "a1", "web-1", "nginx.service", "/var/log", "db1.example.com", "1", "abc", "A")
#: Characters tried, in order, as the representative of a character class.
_PREFERRED = "a0Az_.-/:@" + "".join(chr(c) for c in range(0x21, 0x7F))
_MAX_WITNESSES = 48
_ALL_POSITIONS = 32  # regions up to this long are probed at every position


def problems(allow: Regex, source: str, parts: Sequence[tuple[str, str]], *, path: bool) -> str | None:
    """Why ``allow`` is too loose for the template ``parts``; None when it holds.

    ``parts`` are the template's ("text", literal) / ("field", placeholder) pieces; a
    template without placeholders renders one fixed value, which has nothing to probe.
    """
    if not any(kind == "field" for kind, _ in parts):
        return None
    prefix = "".join(_leading_text(parts))
    suffix = "".join(reversed(list(_leading_text(list(reversed(parts))))))
    witnesses = [w for w in _witnesses(allow, source, prefix, suffix)
                 if w.startswith(prefix) and w.endswith(suffix) and len(w) >= len(prefix) + len(suffix)]
    if not witnesses:
        shape = "".join(text if kind == "text" else "…" for kind, text in parts)
        return (f"allow {source!r} accepts no value of the form {shape!r} that could be found "
                "to test it: write it as character classes, alternatives and repetitions")
    found: dict[str, list[str]] = {}
    for w in witnesses:
        region = w[len(prefix):len(w) - len(suffix)]
        for what, probe in _probes(region, path=path):
            value = prefix + probe + suffix
            if allow.fullmatch(value) is not None and value not in found.setdefault(what, []):
                found[what].append(value)
    if not found:
        return None
    order = ["shell metacharacters", "whitespace", "non-ASCII characters", "a leading '-'"]
    listed = sorted(found.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 9)
    shown = "; ".join(f"{what} ({', '.join(_show(v) for v in values[:2])})" for what, values in listed)
    return f"allow {source!r} accepts {shown}: list only the characters a valid value needs"


def _leading_text(parts: Sequence[tuple[str, str]]) -> Iterator[str]:
    for kind, text in parts:
        if kind != "text":
            return
        yield text


def _kind(ch: str) -> str:
    if ch in WHITESPACE:
        return "whitespace"
    return "non-ASCII characters" if not ch.isascii() else "shell metacharacters"


def _probes(region: str, *, path: bool) -> Iterator[tuple[str, str]]:
    """(what it tests, probe) for one witness's variable part."""
    n = len(region)
    positions = sorted(set(range(n + 1)) if n <= _ALL_POSITIONS
                       else {0, 1, n // 4, n // 2, 3 * n // 4, n - 1, n})
    for ch in region:  # a witness may carry one already (an alternative, an optional part)
        if ch in DANGEROUS or not ch.isascii():
            yield _kind(ch), region
    for ch in DANGEROUS:
        what = _kind(ch)
        for i in positions:
            yield what, region[:i] + ch + region[i:]
            if i < n:
                yield what, region[:i] + ch + region[i + 1:]
    yield "a leading '-'", "-" + region
    if n:
        yield "a leading '-'", "-" + region[1:]
    if path:
        rest = region.lstrip("/")
        for probe in ("..", "/..", "../" + rest, "/../" + rest, "/../../" + rest, region + "/..",
                      region + "/../" + (rest or "x"), region.replace("/", "/../", 1)):
            yield "'..' path segments", probe
        for probe in ("//", "/" + region, region + "//", region + "//x", region.replace("/", "//", 1)):
            yield "'//' (an empty path segment)", probe


def _show(value: str) -> str:
    shown = value if len(value) <= 60 else value[:59] + "…"
    return ascii(shown)  # quoted, with invisible and non-ASCII characters spelled out


# -- witnesses --------------------------------------------------------------------------


def _witnesses(allow: Regex, source: str, prefix: str, suffix: str) -> list[str]:
    """Values ``allow`` accepts, shortest forms first; see the module docstring."""
    out: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree: Any = sre_parse.parse(source)  # typeshed's node types are too narrow to walk
        out = _forms(list(tree))
    except (sre.error, ValueError, RecursionError, OverflowError):
        pass
    for sample in _SAMPLES:  # also when parsing worked: a second opinion costs little
        out.extend((sample, prefix + sample + suffix))
    seen: dict[str, None] = {}
    for w in out:
        if w not in seen and allow.fullmatch(w) is not None:
            seen[w] = None
    return list(seen)[:_MAX_WITNESSES]


def _forms(seq: list[tuple[Any, Any]]) -> list[str]:
    """Short strings the node sequence ``seq`` matches (not checked: RE2 has the last word)."""
    forms = [""]
    for op, av in seq:
        node = _node(op, av)
        forms = [a + b for a, b in itertools.product(forms, node)][:_MAX_WITNESSES]
    return forms


def _node(op: Any, av: Any) -> list[str]:
    if op is sre.LITERAL:
        return [chr(av)]
    if op is sre.NOT_LITERAL:
        return [next(c for c in _PREFERRED if ord(c) != av)]
    if op is sre.ANY:
        return ["a"]
    if op is sre.IN:
        return [_member(av)]
    if op is sre.CATEGORY:
        return [_member([(op, av)])]
    if op is sre.AT:
        return [""]
    if op is sre.SUBPATTERN:
        return _forms(list(av[-1]))
    if op is sre.BRANCH:
        return [f for branch in av[1] for f in _forms(list(branch))][:_MAX_WITNESSES]
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", object())):
        low, high, sub = av
        inner = _forms(list(sub))
        counts = [low] + ([low + 1] if high == sre.MAXREPEAT or high > low else [])
        return ["".join(combo) for count in counts
                for combo in itertools.islice(itertools.product(inner, repeat=count), 4)]
    raise ValueError(f"cannot derive a value for {op}")


def _member(items: Sequence[tuple[Any, Any]]) -> str:
    """A character of the class ``items``, preferring letters and digits."""
    negate = any(op is sre.NEGATE for op, _ in items)
    for ch in _PREFERRED:
        if _in_class(items, ch) != negate:
            return ch
    raise ValueError("a character class with no printable ASCII member")


_CATEGORIES = {
    sre.CATEGORY_DIGIT: str.isdigit, sre.CATEGORY_WORD: lambda c: c.isalnum() or c == "_",
    sre.CATEGORY_SPACE: str.isspace,
}


def _in_class(items: Sequence[tuple[Any, Any]], ch: str) -> bool:
    code = ord(ch)
    for op, av in items:
        if op is sre.LITERAL and av == code:
            return True
        if op is sre.RANGE and av[0] <= code <= av[1]:
            return True
        if op is sre.CATEGORY:
            name = str(av).replace("UNI_", "").replace("NOT_", "")
            test = next((f for k, f in _CATEGORIES.items() if str(k) == name), None)
            if test is None:
                raise ValueError(f"unknown class {av}")
            if test(ch) != ("NOT_" in str(av)):
                return True
    return False
