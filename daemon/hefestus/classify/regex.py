"""The one place that compiles regular expressions from ops-edited files.

Patterns and rules come from files anyone with repo access can edit, and event
texts come from logs anyone can write to. Python's ``re`` backtracks, so one
careless ``(a+)+$`` and one crafted log line can stall the daemon for hours.
RE2 runs in time linear in the text, whatever the pattern: it simply rejects
the constructs (backreferences, lookaround) that would need backtracking.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import re2

from hefestus.classify import prefilter

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # we report errors ourselves, with file and line
_OPTIONS.max_mem = 8 << 20

Regex = Any  # re2's compiled pattern type is not exported


class RegexError(ValueError):
    """A pattern RE2 cannot compile; the message says why."""


def _reason(exc: Exception) -> str:
    msg = exc.args[0] if exc.args else exc
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return str(msg)


def compile_regex(source: str, *, case_sensitive: bool = False) -> Regex:
    """Compile with RE2; case-insensitive unless asked otherwise."""
    text = source if case_sensitive else f"(?i){source}"
    try:
        return re2.compile(text, _OPTIONS)
    except re2.error as exc:
        hint = ""
        if any(op in source for op in ("(?=", "(?!", "(?<=", "(?<!")):
            hint = " (RE2 has no lookahead/lookbehind: rewrite without it)"
        elif "\\1" in source or "\\2" in source:
            hint = " (RE2 has no backreferences)"
        raise RegexError(f"invalid regex {source!r}: {_reason(exc)}{hint}") from None


_SET_OPTIONS = re2.Options()
_SET_OPTIONS.log_errors = False
_SET_OPTIONS.max_mem = 256 << 20  # one automaton for a whole dictionary needs room


class RegexSet:
    """Many regexes scanned in one pass; returns the indices that may match.

    Used as a pre-filter so classifying a text costs one scan for the whole
    dictionary instead of one per pattern. An ASCII text is scanned by Hyperscan
    where it is installed (see :mod:`hefestus.classify.prefilter`), any other text by
    RE2's combined set. If that automaton would exceed its memory budget, it falls
    back to trying each regex in turn: slower, but every step is still RE2 and
    still linear in the text. Callers confirm each index with its regex.
    """

    def __init__(self, sources: Sequence[str], compiled: Sequence[Regex] = (), *,
                 accelerate: bool = True) -> None:
        self._compiled = list(compiled)
        self._set: Any = None
        self._fast: prefilter.Prefilter | None = None
        self._rest: RegexSet | None = None
        if not sources:
            return
        candidate = re2.Set.SearchSet(_SET_OPTIONS)
        for src in sources:
            if candidate.Add(src) < 0:  # pragma: no cover - compile_regex vetted it first
                raise RegexError(f"invalid regex {src!r}")
        try:
            candidate.Compile()
        except re2.error:
            if len(self._compiled) != len(sources):
                raise RegexError("the patterns are too large to combine; pass them compiled") from None
        else:
            self._set = candidate
        if accelerate:
            self._fast = prefilter.build(tuple(sources))
        if self._fast is not None and self._fast.residual:
            rest = self._fast.residual
            self._rest = RegexSet([sources[i] for i in rest],
                                  [self._compiled[i] for i in rest] if self._compiled else (),
                                  accelerate=False)

    @property
    def combined(self) -> bool:
        return self._set is not None

    @property
    def engine(self) -> str:
        """What scans an ASCII text: ``hyperscan`` (with RE2 for the rest) or ``re2``."""
        return "re2" if self._fast is None else "hyperscan"

    def match(self, text: str | bytes) -> list[int]:
        """Indices of the regexes that may match ``text``, ascending: every one that does,
        and rarely one that does not (Hyperscan's ``$`` also matches before a final
        newline), so confirm with the regex. Pass the UTF-8 bytes of a text you will
        search again: re2 encodes a ``str`` on every call."""
        if self._fast is not None:
            data = text if isinstance(text, bytes) else text.encode("utf-8")
            if self._fast.takes(data):
                found = self._fast.scan(data)
                if self._rest is not None:
                    found += [self._fast.residual[i] for i in self._rest.match(data)]
                return sorted(found)
        if self._set is not None:
            return sorted(self._set.Match(text) or ())
        return [i for i, rx in enumerate(self._compiled) if rx.search(text) is not None]
