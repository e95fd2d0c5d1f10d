"""Hyperscan in front of a dictionary's RE2 set: which patterns can match an ASCII text.

Why: classifying a text is one scan of a combined automaton for the whole dictionary.
RE2's set builds its DFA lazily, state by state, and over log lines full of ids, pids and
timestamps it keeps meeting new states: for a few hundred patterns that is several
microseconds per kilobyte of text, the bulk of a classification. Hyperscan compiles the
patterns ahead of time (literal factoring, SIMD filters, small automata) and scans the same
text several times faster; ``make bench`` prints both engines side by side.

Why only a prefilter: RE2 stays the engine of record; Hyperscan only narrows down which
patterns RE2 confirms (:meth:`hefestus.classify.patterns.Dictionary.match` searches every
candidate with its RE2 regex before it counts, in file order). Hyperscan follows PCRE,
whose semantics differ from RE2's in a few corners, and each is made harmless:

* ``$`` also matches before a final newline: a superset, a candidate RE2 turns down;
* ``\\s`` also takes the vertical tab, so ``\\S`` refuses it; ``(?i)`` folds the Kelvin
  sign and the long s onto ASCII letters only in RE2; without UTF-8 mode ``.`` is one byte,
  not one character: texts that are not pure ASCII, or hold a vertical tab, are never given
  to Hyperscan (they go to the RE2 set, as before), and only patterns whose source is
  ASCII are compiled into it (the others stay in a residual RE2 set scanned alongside);
* a pattern Hyperscan cannot compile exactly is compiled in its prefilter mode (may give
  false candidates, never misses one); one it cannot compile at all stays residual.

Hyperscan ships wheels for x86-64 only. Where it is missing everything goes to the RE2 set:
the same answers, slower.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

try:
    import hyperscan
except ImportError:  # pragma: no cover - only where no wheel exists (not x86-64)
    hyperscan = None  # type: ignore[assignment]

_VERTICAL_TAB = b"\x0b"


def available() -> bool:
    return hyperscan is not None


def _on_match(index: int, start: int, end: int, flags: int, found: list[int]) -> None:
    found.append(index)


class Prefilter:
    """The Hyperscan database of a dictionary's ASCII patterns; one scratch space per thread
    (a scan releases the GIL, and a scratch serves one scan at a time)."""

    def __init__(self, database: Any, covered: Sequence[int], residual: Sequence[int]) -> None:
        self._db = database
        self.covered = tuple(covered)
        self.residual = tuple(residual)
        self._local = threading.local()

    @staticmethod
    def takes(data: bytes) -> bool:
        """Whether Hyperscan's answer for ``data`` may stand for RE2's (see the module doc)."""
        return data.isascii() and _VERTICAL_TAB not in data

    def scan(self, data: bytes) -> list[int]:
        """Indices (in the dictionary) of covered patterns that may match ``data``, unordered."""
        found: list[int] = []
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = hyperscan.Scratch(self._db)
        self._db.scan(data, match_event_handler=_on_match, context=found, scratch=scratch)
        return found


@functools.lru_cache(maxsize=64)
def build(sources: tuple[str, ...]) -> Prefilter | None:
    """The prefilter for ``sources`` (RE2 syntax, as compiled); None without Hyperscan, or
    when it can take none of them.

    Cached by source: a reload (SIGHUP) or a test that loads the same dictionaries again
    reuses the compiled database instead of compiling it anew (about 0.1 s a dictionary).
    """
    if hyperscan is None:
        return None
    ascii_ids = [i for i, src in enumerate(sources) if src.isascii()]
    flags = {i: hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_ALLOWEMPTY for i in ascii_ids}
    database = _compile(sources, ascii_ids, flags) if ascii_ids else None
    if ascii_ids and database is None:
        # One pattern spoils the whole compile: sort them out one by one (rare, so slow is fine).
        for i in list(ascii_ids):
            if _compile(sources, [i], flags) is not None:
                continue
            flags[i] |= hyperscan.HS_FLAG_PREFILTER
            if _compile(sources, [i], flags) is None:
                ascii_ids.remove(i)
        database = _compile(sources, ascii_ids, flags) if ascii_ids else None
    if database is None:
        return None
    covered = set(ascii_ids)
    return Prefilter(database, ascii_ids, [i for i in range(len(sources)) if i not in covered])


def _compile(sources: Sequence[str], ids: Sequence[int], flags: dict[int, int]) -> Any:
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    try:
        database.compile(expressions=[sources[i].encode("ascii") for i in ids], ids=list(ids),
                         elements=len(ids), flags=[flags[i] for i in ids])
    except hyperscan.error:
        return None
    return database
