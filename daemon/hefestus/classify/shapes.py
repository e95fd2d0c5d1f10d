"""Shapes: what a value captured from event text must look like to be pasted into advice.

Event text is written by whoever can write a log line, and operators copy the steps of a
message into a terminal at 3 a.m. A captured value therefore goes into a cause or a step
only when it matches, in full, the shape its pattern declares for that group
(``[pattern.shapes]``, RE2, validated at load) or else :data:`DEFAULT_SHAPE`, and never
when it starts with ``-`` (it would become an option). Otherwise the text shows ``<group>``
and the suggestion carries :func:`withheld_note`, which names the group, never the value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hefestus import tomlfile
from hefestus.classify.regex import Regex, RegexError, compile_regex
from hefestus.errors import ConfigError

#: What a captured value must look like to be pasted into a cause or step when its pattern
#: declares no shape for it: a name, a path, a host, an address. Nothing a shell or SQL reads
#: as syntax (quotes, spaces, $, `, ;, |, &, <, >, parentheses, backslash), because event
#: text is written by whoever can write a log line, and operators copy steps into a terminal.
DEFAULT_SHAPE = r"[A-Za-z0-9._@:/+-]{1,120}"
_DEFAULT_SHAPE = compile_regex(DEFAULT_SHAPE, case_sensitive=True)


def admits(value: str, shape: Regex | None) -> bool:
    """Whether ``value`` may be pasted into advice under ``shape`` (None: the default)."""
    if not value or value.startswith("-") or not value.isprintable():
        return False
    return (_DEFAULT_SHAPE if shape is None else shape).fullmatch(value) is not None


def withheld_note(names: Sequence[str]) -> str:
    """Why a step shows ``<name>`` although the event had a value (never the value itself)."""
    if not names:
        return ""
    shown = ", ".join(f"<{n}>" for n in names)
    kinds = " or a ".join(n.replace("_", " ") for n in names)
    one = len(names) == 1
    return (f"The event's {'value' if one else 'values'} for {shown} {'was' if one else 'were'} withheld "
            f"from the advice: {'it does' if one else 'they do'} not look like a {kinds}. Read "
            f"{'it' if one else 'them'} in the event itself, and check before using {'it' if one else 'them'} "
            "in a command.")


def compile_shapes(declared: Mapping[str, str], regex: Regex, *, pattern_id: str, path: Path, text: str,
                   index: int) -> dict[str, Regex]:
    """The index-th pattern's declared shapes, compiled with RE2 (case-sensitive: each is an
    allow-list); a shape for a group the regex lacks, or one RE2 refuses, names file:line."""
    shapes: dict[str, Regex] = {}
    for name, source in declared.items():
        line = _shape_line(text, index, name) or tomlfile.locate(text, ("pattern", index, "shapes", name))
        if name not in regex.groupindex:
            raise ConfigError(f"pattern {pattern_id!r}: shapes.{name}: the regex has no group named {name!r}",
                              path=str(path), line=line)
        try:
            shapes[name] = compile_regex(source, case_sensitive=True)
        except RegexError as exc:
            raise ConfigError(f"pattern {pattern_id!r}: shapes.{name}: {exc}", path=str(path), line=line) from None
    return shapes


def _shape_line(text: str, index: int, name: str) -> int | None:
    """The line of ``name =`` in the ``[pattern.shapes]`` table of the index-th ``[[pattern]]``
    (tomlfile.locate knows inline ``shapes = {...}``, not a sub-table of an array of tables)."""
    count, in_shapes = -1, False
    for n, line in enumerate(text.splitlines(), start=1):
        head = line.split("#", 1)[0].replace(" ", "")
        if head == "[[pattern]]":
            count, in_shapes = count + 1, False
        elif head.startswith("["):
            in_shapes = count == index and head == "[pattern.shapes]"
        elif in_shapes and head.split("=", 1)[0].strip("\"'") == name:
            return n
    return None
