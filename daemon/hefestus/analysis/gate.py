"""The gate a model answer passes before an operator sees it.

Schema validation (:mod:`hefestus.analysis.prompt`) only proves an answer has the right
*shape*. A grammar-constrained small model fills that shape with anything: ``make demo``'s
SmolLM2-135M once answered ``"cause": "error_message"`` with the steps ``1.0.2.3`` and
``4:5,6:7``, and Hefestus wrote that into Zabbix as advice. This module holds the checks
that catch such answers. Each failure has a fixed reason code (:data:`RejectReason`), so
``/metrics`` and ``hefestus eval`` can count them with bounded labels, and a human-readable
detail for the note and the retry prompt.

The checks, in order (the first failure is reported):

``event-text-in-step``
    a step contains text copied from the event that holds a shell metacharacter
    (``$(``, ``${``, a backtick, ``;``, ``|``, ``&&``, ``>``, ``<(``): whoever can write a
    log line could otherwise have a command of theirs printed as advice (issue 12). Event
    text is evidence, never part of a command.
``placeholder``
    the cause is a schema field name or a placeholder (``error_message``, ``cause``,
    ``string``, ``solutions``, ``N/A``…), or the cause or a step names one of the request's
    own snake_case field names (``./error_text.json``, as SmolLM2 once offered as a step).
``short-cause``
    the cause has fewer than :data:`MIN_CAUSE_WORDS` words: not a sentence.
``echoed-event``
    the cause is a piece of the event text copied back (case and spacing aside): it
    explains nothing, and it would repeat whatever an attacker wrote into the log.
``step-without-action``
    a step holds no command and no instruction: once numbers, addresses, versions and
    punctuation are taken out, no word is left (``1.0.2.3``, ``4:5,6:7``), or only a
    placeholder word is.
``repeated-steps``
    two steps say the same (compared case- and whitespace-insensitively).
``off-topic``
    the answer shares no *significant word* with the event text, the domain's description
    or the pattern hint. A significant word is a lowercase run of letters of at least
    :data:`MIN_WORD` letters that is not a stop word; two words are the same when their
    first :data:`STEM` letters are (so "rejected" meets "rejection"). When the event itself
    has no significant word there is nothing to compare with, and this check is skipped.

All of it is plain string work on texts already cut to the model's input size; the
regular expressions are single character classes (linear time on crafted input).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal, get_args

RejectReason = Literal["event-text-in-step", "placeholder", "short-cause", "echoed-event",
                       "step-without-action", "repeated-steps", "off-topic"]
#: Every reason code, in check order: the only label values ``/metrics`` ever exports.
REJECT_REASONS: Final[tuple[RejectReason, ...]] = get_args(RejectReason)

#: A cause needs this many words (runs holding a letter) to count as a sentence.
MIN_CAUSE_WORDS: Final = 4
#: Shortest significant word, and the prefix length two words are compared on.
MIN_WORD: Final = 4
STEM: Final = 5
#: Shortest copy of event text around a metacharacter that counts as spliced in. Short
#: enough to catch ``|sh)`` copied from the event, long enough that a step's own `` | grep``
#: only matches when the event holds that very text.
MIN_SPLICE: Final = 5

#: Names from the answer schema and the request's event object, and what small models put
#: in a field when they have nothing to say. Compared with the whole cause, normalised.
FIELD_NAMES: Final = frozenset({
    "cause", "causes", "steps", "step", "confidence", "solution", "solutions", "error_message",
    "error_text", "pattern_hint", "host_groups", "trigger", "severity", "tags", "host",
    "category", "description", "message", "text", "value", "answer", "diagnosis"})
PLACEHOLDERS: Final = frozenset({
    "string", "number", "array", "object", "null", "none", "nil", "n/a", "na", "unknown", "todo",
    "tbd", "tba", "example", "placeholder", "lorem ipsum", "error", "the error", "error message",
    "the most likely cause", "most likely cause", "your answer", "insert cause here", "...", "…",
    "-", "?", "x"})
#: Snake_case names from the request that no real diagnosis quotes.
_SCHEMA_IDENTIFIERS: Final = frozenset(n for n in FIELD_NAMES if "_" in n)

#: English function words and the generic words of any ops text: sharing only these with
#: the event proves nothing about having read it.
STOP_WORDS: Final = frozenset("""
    about above after again against also although among another anything because been before
    being below between both cannot could does doing down during each either else even ever
    every from further have having here herself himself however into itself just least less
    like make many might more most much must myself neither never none nothing often only
    other otherwise over own perhaps please rather same several should since some such sure
    than that their theirs them themselves then there these they this those though through
    thus together under until upon very want were what whatever when where whether which while
    whom whose will with within without would your yours yourself
    error errors failed failure fails problem problems issue issues event events host hosts
    check checks cause causes step steps solution solutions message messages string value
    values text null true false answer likely most possible probably unknown trigger severity
    confidence category description pattern hint system service services redacted
""".split())

_WORD = re.compile(r"[a-z]+")
_HAS_LETTER = re.compile(r"[^\W\d_]")
#: Things that look like data, not action: IPv4/IPv6 addresses, versions, numbers, hex ids.
_DATA = re.compile(r"[0-9a-fA-F]*[0-9][0-9a-fA-F:.,/_+-]*|v\d[\w.+-]*")
_META = ("$(", "${", "`", ";", "|", "&&", ">", "<(")
#: ``<redacted>``, ``<host>``: placeholders, not shell syntax.
_MARKUP = re.compile(r"<[A-Za-z][\w-]{0,30}>")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why an answer was refused: a fixed code for counting, a detail for people."""

    reason: RejectReason
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


def significant(text: str) -> set[str]:
    """The stems of ``text``'s significant words (see the module docstring)."""
    return {w[:STEM] for w in _WORD.findall(text.lower()) if len(w) >= MIN_WORD and w not in STOP_WORDS}


def _norm(text: str) -> str:
    """Lowercase, whitespace folded, surrounding quotes and punctuation dropped."""
    return " ".join(text.lower().split()).strip(" \t\"'`.,;:!()[]{}<>")


def _identifiers(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9_]+", text.lower()))


def _words(text: str) -> list[str]:
    return [w for w in text.split() if _HAS_LETTER.search(w)]


def _spliced(step: str, event_text: str) -> str | None:
    """The shell metacharacter around which ``step`` repeats a piece of ``event_text``, if any.

    Every window of :data:`MIN_SPLICE` characters of the step that covers a metacharacter is
    looked up in the event text (windows starting or ending in a blank are skipped: "`` | ``"
    is too common to prove a copy). The brackets of markers such as ``<redacted>`` are
    blanked in both first: their ``>`` is no redirection.
    """
    step, event_text = _unmark(step), _unmark(event_text)
    for meta in _META:
        start = step.find(meta)
        while start >= 0:
            for lo in range(max(0, start + len(meta) - MIN_SPLICE), start + 1):
                piece = step[lo:lo + MIN_SPLICE]
                if len(piece) == MIN_SPLICE and piece.strip() == piece and piece in event_text:
                    return meta
            start = step.find(meta, start + 1)
    return None


def _unmark(text: str) -> str:
    """``text`` with the brackets of ``<redacted>``-style markers blanked."""
    return _MARKUP.sub(lambda m: f"\0{m.group()[1:-1]}\0", text)


def _no_action(step: str) -> bool:
    """True when ``step`` is only data and punctuation, or a lone placeholder word."""
    if _norm(step) in PLACEHOLDERS | FIELD_NAMES:
        return True
    rest = _DATA.sub(" ", step)
    return not any(len(w) >= 2 for w in re.findall(r"[^\W\d_]+", rest))


def check(cause: str, steps: Sequence[str], *, event_text: str,
          context: Iterable[str] = ()) -> Rejection | None:
    """The first reason to refuse this answer, or None when it may be shown.

    ``event_text`` is what the model was shown of the event (trigger name and error text,
    redacted); ``context`` the texts an answer may legitimately echo besides it: the
    domain's description and the pattern hint.
    """
    for i, step in enumerate(steps, start=1):
        meta = _spliced(step, event_text)
        if meta is not None:
            return Rejection("event-text-in-step", f"step {i} copies event text holding the shell "
                                                   f"metacharacter {meta!r} into a command")
    norm = _norm(cause)
    named = sorted(_identifiers(cause) & _SCHEMA_IDENTIFIERS)
    if norm in PLACEHOLDERS or norm in FIELD_NAMES or named:
        return Rejection("placeholder",
                         f"the cause is a field name or placeholder ({(named[0] if named else norm)!r})")
    for i, step in enumerate(steps, start=1):
        named = sorted(_identifiers(step) & _SCHEMA_IDENTIFIERS)
        if named:
            return Rejection("placeholder", f"step {i} names the request's field {named[0]!r}")
    words = _words(cause)
    if len(words) < MIN_CAUSE_WORDS:
        return Rejection("short-cause", f"the cause has {len(words)} word{'s' if len(words) != 1 else ''}, "
                                        f"fewer than {MIN_CAUSE_WORDS}: not a sentence")
    if norm and norm in " ".join(event_text.lower().split()):
        return Rejection("echoed-event", "the cause is a copy of the event text, not a diagnosis")
    for i, step in enumerate(steps, start=1):
        if _no_action(step):
            return Rejection("step-without-action", f"step {i} holds no command or instruction "
                                                    "(only numbers, addresses or punctuation)")
    seen: dict[str, int] = {}
    for i, step in enumerate(steps, start=1):
        key = _norm(step)
        if key in seen:
            return Rejection("repeated-steps", f"step {i} repeats step {seen[key]}")
        seen[key] = i
    known = significant(event_text)
    if known:
        for text in context:
            known |= significant(text)
        said = significant(" ".join([cause, *steps]))
        if not said & known:
            return Rejection("off-topic", "the answer shares no significant word with the event "
                                          "or the domain's description")
    return None
