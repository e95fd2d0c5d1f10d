"""The teach loop: what no pattern matched, and a dictionary entry to start from.

The pipeline records each unclassified event as a :class:`~hefestus.state.Sighting`
(:func:`sighting`): keyed by the fingerprint of its redacted, host-masked text, so
one kind of event is one row however many hosts and times it fires. ``hefestus
unclassified`` lists the kinds (:func:`listing`); with ``--draft`` it prints, for
each, a ``[[pattern]]`` skeleton (:func:`draft`) whose regex is generalised from
the masked sample (volatile parts become ``\\S+`` / ``\\d+``), checked to compile
with the dictionaries' own :func:`~hefestus.classify.regex.compile_regex` and to
match the sample it was drawn from. ``cause`` and ``solutions`` are left to the
operator: a pattern's advice is written from what the software means, not guessed.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

from hefestus.analysis.fingerprint import RAW_LIMIT, fingerprint, mask_hosts, normalise
from hefestus.classify.regex import RegexError, compile_regex
from hefestus.redact import REDACTED
from hefestus.state.unclassified import SAMPLE_LIMIT, Sighting, UnclassifiedKind
from hefestus.values import Classification, Problem

#: Fingerprint "prompt version" of the teach loop's key: no model is involved.
_KEY = "unclassified"
#: Characters of the masked line the draft regex is drawn from.
REGEX_LIMIT = 160

# Placeholders of normalise(), mask_hosts() and the redactor -> what they stand for.
_WILD: dict[str, str] = {
    "time": r".+?", "uuid": r"\S+", "ip": r"\S+", "mac": r"\S+", "pod": r"\S+", "hex": r"\S+",
    "dur": r"\S+", "n": r"[-+]?[\d.]+", "host": r"\S+", REDACTED.strip("<>"): r"\S+",
}
_PLACEHOLDER = re.compile("<(" + "|".join(re.escape(k) for k in _WILD) + ")>")


def sighting(problem: Problem, c: Classification, *, redact: Callable[[str], str], at: float) -> Sighting:
    """One unclassified event as the state store keeps it: redacted, keyed by its masked text."""
    text = redact(problem.error_text[:RAW_LIMIT])
    fp = fingerprint(domain=c.domain, model="", prompt_version=_KEY, text=mask_hosts(text, problem.hosts))
    return Sighting(fp, c.domain, problem.hosts, text[:SAMPLE_LIMIT], at)


def parse_since(value: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s`` (or plain seconds) -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", value)
    if m is None:
        raise ValueError(f"{value!r} is not a duration like 7d, 12h or 30m")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def generalise(sample: str, hosts: tuple[str, ...] = ()) -> str:
    """An RE2 regex for the sample's most telling line, volatile parts as wildcards.

    The line with the most literal letters once masked is taken (a trigger name is often
    generic, the log line under it is not), cut to :data:`REGEX_LIMIT` characters at a space;
    literal text is escaped, runs of spaces become ``\\s+``, and wildcards at either end are
    dropped (a pattern is searched for anywhere in the text). The result always compiles and
    matches ``sample``: when the generalised form would not, the line's literal head is used.
    """
    lines = [ln for ln in sample.splitlines() if ln.strip()] or [sample]

    def literal_letters(masked: str) -> int:
        return sum(ch.isalpha() for ch in _PLACEHOLDER.sub("", masked))

    masked = [normalise(mask_hosts(ln, hosts)) for ln in lines]
    best = max(range(len(lines)), key=lambda i: literal_letters(masked[i]))
    line = masked[best]
    if len(line) > REGEX_LIMIT:
        head = line[:REGEX_LIMIT + 1]
        line = head.rsplit(" ", 1)[0] if " " in head else line[:REGEX_LIMIT]
    tokens = [_token(t) for t in line.split(" ") if t]
    while tokens and tokens[0][1]:
        tokens.pop(0)
    while tokens and tokens[-1][1]:
        tokens.pop()
    source = r"\s+".join(t for t, _ in tokens)
    if source and _matches(source, sample):
        return source
    raw = lines[best].strip()[:REGEX_LIMIT]  # literal: matches its own text by construction
    return r"\s+".join(_escape(t) for t in raw.split())


def _escape(literal: str) -> str:
    """RE2's metacharacters escaped, nothing else (re.escape also escapes ``-``, ``#``, ...)."""
    return "".join("\\" + ch if ch in _META else ch for ch in literal)


_META = frozenset("\\.+*?()|[]{}^$")


def _token(token: str) -> tuple[str, bool]:
    """(regex, whether the token is nothing but placeholders)."""
    out, pos, literal = [], 0, False
    for m in _PLACEHOLDER.finditer(token):
        if m.start() > pos:
            out.append(_escape(token[pos:m.start()]))
            literal = True
        out.append(_WILD[m.group(1)])
        pos = m.end()
    if pos < len(token):
        out.append(_escape(token[pos:]))
        literal = True
    return "".join(out), not literal


def _matches(source: str, text: str) -> bool:
    try:
        return compile_regex(source).search(text) is not None
    except RegexError:
        return False


_Q3 = "'" * 3  # a TOML multi-line literal string's delimiter


def _toml(value: str) -> str:
    """A TOML string: literal ('...') when it can be, else basic with escapes."""
    if "'" not in value and value.isprintable():
        return f"'{value}'"
    if _Q3 not in value and value.isprintable() and "'" not in (value[0], value[-1]):
        return _Q3 + value + _Q3
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in "\n\t":
            out.append("\\n" if ch == "\n" else "\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:  # TOML forbids control characters unescaped
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def listing(kinds: list[UnclassifiedKind], *, width: int = 160) -> list[str]:
    """The human-readable list: one header line per kind, its hosts, its sample's head."""
    lines = []
    for k in kinds:
        more = "" if len(k.hosts) < 20 else "+"
        lines.append(f"{k.count:>7}x  {k.domain:<14} {len(k.hosts)}{more} host(s)  first {_when(k.first_seen)}"
                     f"  last {_when(k.last_seen)}  {k.fingerprint[:12]}")
        lines.append(f"          hosts:  {', '.join(k.hosts) or '-'}")
        sample = " ".join(k.sample.split())
        lines.append(f"          sample: {sample[:width]}{'...' if len(sample) > width else ''}")
    return lines


def draft(k: UnclassifiedKind) -> str:
    """A ``[[pattern]]`` entry for ``patterns/<domain>.toml``: regex and example filled in,
    id, category, cause and solutions left for the operator (marked TODO)."""
    regex = generalise(k.sample, k.hosts)
    assert _matches(regex, k.sample), regex  # generalise() guarantees it
    return "\n".join((
        f"# {k.count} event(s) on {len(k.hosts)} host(s), {_when(k.first_seen)} .. {_when(k.last_seen)}",
        f"# paste into patterns/{k.domain}.toml; then: hefestus analyze -d {k.domain} '<the sample>' "
        "and hefestus check",
        "[[pattern]]",
        f'id = "todo-{k.fingerprint[:10]}"   # TODO: a name for this message',
        'category = "todo"   # TODO: the category (remediation rules match on it)',
        f"regex = {_toml(regex)}",
        'cause = "TODO: what this message means, from the emitting software\'s code or docs"',
        'solutions = ["TODO: a read-only first step (status, logs)", "TODO: the fix, with a caution if it '
        'changes state"]',
        "confidence = 0.8   # TODO",
        f"examples = [{_toml(k.sample)}]",
        "",
    ))
