"""Read a TOML file and point errors at the line that caused them.

``tomllib`` reports syntax errors with a line number but forgets positions
once parsing succeeds, so a *semantic* error (wrong type, unknown key, bad
regex) would otherwise only name a key path. :func:`locate` maps such a key
path back to a line by a light scan of the source: good enough to send ops to
the right place, and it never raises.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import StringConstraints

from hefestus.errors import ConfigError

#: Ids in rule and pattern files and hefestus.toml: domains, categories, pattern ids.
#: Lower case, so they read the same in Zabbix, metrics and file names.
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY = re.compile(r"""^\s*((?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+)(?:\s*\.\s*(?:"[^"]*"|'[^']*'|[A-Za-z0-9_-]+))*)\s*=""")


def _split_key(raw: str) -> tuple[str, ...]:
    parts = re.findall(r""""([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+)""", raw)
    return tuple(a or b or c for a, b, c in parts)


def locate(text: str, path: Sequence[str | int]) -> int | None:
    """Best-effort 1-based line of the key ``path`` in TOML ``text``.

    Returns the line of the longest prefix of ``path`` found, so an error
    inside an inline array still lands on the key that holds it.
    """
    want = tuple(path)
    best: tuple[int, int] | None = None  # (matched length, line)
    table: tuple[str | int, ...] = ()
    aot_counts: dict[tuple[str | int, ...], int] = {}
    in_multiline: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if line.count(in_multiline) % 2 == 1:
                in_multiline = None
            continue
        header = _HEADER.match(line)
        if header:
            keys: tuple[str | int, ...] = _split_key(header.group(2))
            if header.group(1) == "[[":
                index = aot_counts.get(keys, 0)
                aot_counts[keys] = index + 1
                keys = (*keys, index)
            table = keys
            full: tuple[str | int, ...] = table
        else:
            key = _KEY.match(line)
            if not key:
                continue
            full = (*table, *_split_key(key.group(1)))
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_multiline = quote
        n = _common_prefix(full, want)
        if n and n == len(full) and (best is None or n > best[0]):
            best = (n, lineno)
    return best[1] if best else None


def _common_prefix(a: Sequence[Any], b: Sequence[Any]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def load(path: Path) -> tuple[dict[str, Any], str]:
    """Parse ``path``; return the data and the source text (kept for :func:`locate`)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("file is not valid UTF-8", path=str(path),
                          line=raw[: exc.start].count(b"\n") + 1) from exc
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        line = int(m.group(1)) if m else None
        problem = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
        raise ConfigError(f"invalid TOML: {problem}", path=str(path), line=line) from exc


def validation_error(
    exc: pydantic.ValidationError, *, path: Path, text: str, prefix: Sequence[str | int] = ()
) -> ConfigError:
    """Turn pydantic's first error into a ``file:line: key: problem`` ConfigError.

    All problems are listed in the message; the line is that of the first.
    """
    problems: list[str] = []
    first_line: int | None = None
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        line = locate(text, loc)
        if first_line is None:
            first_line = line
        where = f"line {line}: " if line and problems else ""
        problems.append(f"{where}{dotted}: {msg}" if dotted else f"{where}{msg}")
    return ConfigError("; ".join(problems), path=str(path), line=first_line)
