"""Read a TOML file and point errors at the line that caused them.

``tomllib`` reports syntax errors with a line number but forgets positions
once parsing succeeds, so a *semantic* error (wrong type, unknown key, bad
regex) would otherwise only name a key path. :func:`locate` maps such a key
path back to a line by a light scan of the source: good enough to send ops to
the right place, and it never raises.

Only regular files are read, and only up to :data:`MAX_FILE_BYTES`: a FIFO named
``60-x.toml`` would hang the loader, a symlink to ``/dev/zero`` would eat memory.
:func:`listing` is how a directory of rule files is read: a name that *looks* like
one but would be skipped (``Linux.TOML``, a dangling symlink, a directory ``x.toml``)
is an error naming it, never a silent skip, because an operator who dropped a rule
there believes it is live. (Refused at start: the daemon does not start; on SIGHUP:
the last good set stays live and the error is logged.)
"""

from __future__ import annotations

import functools
import os
import re
import stat
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import pydantic
from pydantic import StringConstraints

from hefestus.errors import ConfigError

#: Ids in rule and pattern files and hefestus.toml: domains, categories, pattern ids.
#: Lower case, so they read the same in Zabbix, metrics and file names.
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]

#: Far above any real rule, pattern or settings file (the largest shipped is under 100 KB).
MAX_FILE_BYTES = 4 * 1024 * 1024

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
    index = _key_lines(text)
    for n in range(len(want), 0, -1):
        line = index.get(want[:n])
        if line is not None:
            return line
    return None


@functools.lru_cache(maxsize=8)
def _key_lines(text: str) -> dict[tuple[str | int, ...], int]:
    """Every table and key path of ``text`` -> the first line that names it in full.

    Scanned once per text: loaders ask for a line per pattern or rule (so that a later
    check can point at it), and a scan per question made loading a dictionary quadratic.
    """
    index: dict[tuple[str | int, ...], int] = {}
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
                index_in_array = aot_counts.get(keys, 0)
                aot_counts[keys] = index_in_array + 1
                keys = (*keys, index_in_array)
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
        if full:
            index.setdefault(full, lineno)
    return index


def load(path: Path) -> tuple[dict[str, Any], str]:
    """Parse ``path``; return the data and the source text (kept for :func:`locate`)."""
    raw = read_regular(path)
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


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def read_regular(path: Path, *, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path``, which must be a regular file (a symlink to one is fine) of at
    most ``limit`` bytes; anything else is a ConfigError naming the path.

    Opened with O_NONBLOCK, then checked with fstat on the open descriptor (no race with a
    rename in between): a FIFO opens at once instead of waiting for a writer, and a device
    is refused before a byte is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        if path.is_symlink():
            raise _dangling(path) from exc
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from exc
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{_kind(info.st_mode)}, not a regular file: only regular files "
                              "are read", path=str(path))
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from exc
    finally:
        os.close(fd)
    if size > limit:
        raise ConfigError(f"file is larger than {limit // (1024 * 1024)} MiB: not a rule, pattern "
                          "or settings file", path=str(path))
    return b"".join(chunks)


def _dangling(path: Path) -> ConfigError:
    return ConfigError(f"dangling symbolic link (to {os.readlink(path)}): fix or remove it",
                       path=str(path))


def listing(directory: Path, suffixes: Sequence[str] = (".toml",)) -> list[Path]:
    """The files of ``directory`` ending in one of ``suffixes``, in name order.

    Every entry whose name ends in a suffix *ignoring case* must be a readable regular
    file (or a symlink to one) with the suffix in lower case; anything else raises a
    ConfigError naming it (see the module docstring for why skipping is worse).
    """
    try:
        entries = sorted(directory.iterdir())
    except OSError as exc:
        raise ConfigError(f"cannot list directory: {exc.strerror or exc}", path=str(directory)) from exc
    out: list[Path] = []
    for entry in entries:
        lower = entry.name.lower()
        wanted = next((sfx for sfx in suffixes if lower.endswith(sfx)), None)
        if wanted is None:
            continue
        if not entry.name.endswith(wanted):
            raise ConfigError(f"the name ends in {entry.name[-len(wanted):]!r}, which is not read: "
                              f"rename it to end in {wanted!r} (or move it out of this directory)",
                              path=str(entry))
        if entry.is_symlink() and not entry.exists():
            raise _dangling(entry)
        try:
            mode = entry.stat().st_mode
        except OSError as exc:
            raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=str(entry)) from exc
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{_kind(mode)}, not a regular file: only regular files are read "
                              "(rename or move it)", path=str(entry))
        out.append(entry)
    return out


def validation_error(
    exc: pydantic.ValidationError, *, path: Path, text: str, prefix: Sequence[str | int] = (),
    environment: Mapping[tuple[str, str], str] | None = None,
) -> ConfigError:
    """Turn pydantic's first error into a ``file:line: key: problem`` ConfigError.

    All problems are listed in the message; the line is that of the first. A value that
    came from an environment variable (``environment``: (section, key) -> variable) is
    blamed on that variable, never on a line of the file: the file's line may be valid,
    and the operator would look in the wrong place.
    """
    problems: list[str] = []
    first_line: int | None = None
    in_file = False  # a problem located in the file was listed: its line heads the message
    for err in exc.errors():
        loc = (*prefix, *err["loc"])
        dotted = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in loc).replace(".[", "[")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        variable = (environment or {}).get((str(loc[0]), str(loc[1]))) if len(loc) >= 2 else None
        if variable is not None:
            problems.append(f"environment variable {variable} (sets {dotted}): {msg}")
            continue
        line = locate(text, loc)
        where = f"line {line}: " if line and in_file else ""
        in_file, first_line = True, first_line if in_file else line
        problems.append(f"{where}{dotted}: {msg}" if dotted else f"{where}{msg}")
    return ConfigError("; ".join(problems), path=str(path), line=first_line)
