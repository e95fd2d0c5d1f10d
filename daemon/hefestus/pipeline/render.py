"""The acknowledgement message: what an operator reads in the Zabbix UI at 3 a.m.

Zabbix shows it as plain text with line breaks (HTML-escaped, no Markdown) and
rejects anything over 2048 characters with -32500, so the message is plain,
front-loads what matters (what it is, how sure we are, what to do first), and
is shortened by dropping the least important parts first: the tail of the
step list, then the matched excerpt, then the cause, and only as a last resort
a hard cut.

The first line starts with :data:`MARKER`: that is how Hefestus recognises its
own messages on an event, even after losing its state file.
"""

from __future__ import annotations

from collections.abc import Callable

from hefestus.classify.patterns import UNKNOWN_DOMAIN
from hefestus.values import Classification, Problem, Suggestion

MARKER = "[Hefestus]"
ZABBIX_MESSAGE_LIMIT = 2048
_ELLIPSIS = "…"


def header(s: Suggestion | Classification) -> str:
    """What it is and where the advice came from. A pattern's confidence is shown; a model's
    own number is not (nothing calibrates it): its advice is marked "unverified" instead."""
    if isinstance(s, Classification):
        s = Suggestion.from_pattern(s)
    c = s.classification
    what = f"{MARKER} {c.domain} / {c.category or 'unclassified'}"
    confidence = s.verified_confidence
    if confidence is None:  # a model's answer
        return f"{what} — {s.source}, unverified"
    if c.classified:
        return f"{what} — {s.source}, confidence {round(confidence * 100)}%"
    return f"{what} — no pattern matched"


#: C0 controls but tab and newline, and DEL: a NUL is refused by PostgreSQL under Zabbix, and
#: a terminal escape sequence from a log would only garble the UI.
_CONTROLS = {c: None for c in [*range(0, 9), 11, 12, *range(14, 32), 127]}


def printable(text: str) -> str:
    return text.translate(_CONTROLS)


def cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters; a cut one ends with "…" so a reader knows."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + _ELLIPSIS


def _cut(text: str, limit: int) -> str:
    """One line (whitespace runs folded unless it has several lines), cut at a word's end."""
    text = " ".join(text.split()) if "\n" not in text else text
    return text if len(text) <= limit else cut(text, limit)[:-1].rstrip() + _ELLIPSIS


def render(s: Suggestion | Classification, *, limit: int = ZABBIX_MESSAGE_LIMIT,
           remediation: str = "", excerpt: Callable[[str], str] | None = None) -> str:
    """Plain-text message for one suggestion, never longer than ``limit`` characters.

    A model answer is shared by every event of its fingerprint, so its message
    leaves out the event's own matched line: events of one storm then carry
    the same text and are written in one batched call. ``remediation`` is the
    self-healing decision ("Self-healing: running Rundeck job ..."), shown right
    under the header: it is what an operator must know before touching anything.
    """
    if isinstance(s, Classification):
        s = Suggestion.from_pattern(s)
    c = s.classification
    limit = min(limit, ZABBIX_MESSAGE_LIMIT)
    text = _render(s, c, limit, remediation, excerpt)
    return printable(text)


def _render(s: Suggestion, c: Classification, limit: int, remediation: str,
            excerpt: Callable[[str], str] | None) -> str:
    cause = s.cause if (c.classified or s.from_model) else f"Unknown. {s.cause}"
    matched = "" if s.from_model else c.matched_text
    if matched and excerpt is not None:
        matched = excerpt(matched)
    steps = list(s.steps)
    footer = f"Routed by {c.routed_by}." if c.routed_by else ""
    note = f"Note: {s.note}" if s.note else ""
    if s.from_model and not note:
        note = "Note: advice written by a language model from the event text; check it before acting."
    if not c.classified:
        where = "the right dictionary in patterns/" if c.domain == UNKNOWN_DOMAIN else f"patterns/{c.domain}.toml"
        footer = (f"{footer} Teach Hefestus this error: add a pattern to {where} "
                  "(test it with `hefestus analyze`).").strip()
    steps_title = "Next steps:" if (c.classified or s.from_model) else "Triage steps:"

    def build(cause: str, matched: str, steps: list[str], omitted: int) -> str:
        lines = [header(s)] + ([_cut(remediation, 400)] if remediation else []) + [f"Cause: {cause}"]
        if matched:
            lines.append(f"Matched: {matched}")
        if steps:
            lines.append(steps_title)
            lines.extend(f"{i}. {step}" for i, step in enumerate(steps, start=1))
        if omitted:
            lines.append(f"(+{omitted} more step{'s' if omitted > 1 else ''}: "
                         "run `hefestus analyze` on the error text for the full list)")
        if note:
            lines.append(_cut(note, 400))
        if footer:
            lines.append(footer)
        return "\n".join(lines)

    text = build(cause, matched, steps, 0)
    omitted = 0
    # 1. Long single steps are cut first so one huge command can't evict the rest.
    if len(text) > limit:
        steps = [_cut(step, 300) for step in steps]
        text = build(cause, matched, steps, 0)
    # 2. Drop steps from the end, but keep the first one as long as possible.
    while len(text) > limit and len(steps) > 1:
        steps.pop()
        omitted += 1
        text = build(cause, matched, steps, omitted)
    # 3. Shorten the excerpt, then the cause.
    if len(text) > limit:
        matched = _cut(matched, 120)
        text = build(cause, matched, steps, omitted)
    if len(text) > limit:
        cause = _cut(cause, max(80, len(cause) - (len(text) - limit)))
        text = build(cause, matched, steps, omitted)
    # 4. Last resort: a hard cut that keeps the marker line intact.
    if len(text) > limit:
        text = cut(text, limit)
    return text


def pointer(problem: Problem, *, limit: int = ZABBIX_MESSAGE_LIMIT) -> str:
    """The one line a symptom gets (``[intake] symptoms = "point"``): where its advice is."""
    what = f"{problem.cause_host}: {problem.cause_name}" if problem.cause_host else problem.cause_name
    limit = min(limit, ZABBIX_MESSAGE_LIMIT)
    about = f" ({_cut(' '.join(what.split()), max(limit - 80, 20))})" if what else ""
    text = f"{MARKER} symptom of event {problem.cause_eventid}{about}: see its Hefestus message"
    return cut(printable(text), limit)
