"""patterns/ -> compiled error dictionaries, and matching an error text against them.

A dictionary is one domain's knowledge: regexes with a category, a cause and
ordered solution steps. Within a file the first pattern in file order that
matches wins, so ops control precedence by position, the way they read it.

Two file formats are read:

* ``patterns/<domain>.toml``: the native format (see README, "Writing patterns");
* ``patterns/<domain>.json``: the seed's ``{"patterns": {name: {"pattern",
  "category", "solutions"}}}``, so existing dictionaries carry over unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pydantic
import re2
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hefestus import tomlfile
from hefestus.classify.regex import Regex, RegexError, RegexSet, compile_regex
from hefestus.errors import ConfigError
from hefestus.tomlfile import Slug
from hefestus.values import Classification

NonEmpty = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]

DEFAULT_CONFIDENCE = 0.8
UNKNOWN_DOMAIN = "unknown"
#: Last-resort steps when no dictionary knows the text: where to look first.
GENERIC_TRIAGE = (
    "Open the problem in Zabbix and read the full latest value of its items (Latest data), "
    "not only the shortened operational data.",
    "Check what changed on the host just before the problem: deploys, configuration, package "
    "updates, reboots (journalctl --since '-1h' -p warning).",
    "Check the host's basics: free disk (df -h), memory (free -m), load (uptime), failed units "
    "(systemctl --failed).",
)
_GROUP_REF = re2.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MAX_GROUP_VALUE = 120
_MAX_MATCHED_TEXT = 300


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatternSpec(_Spec):
    id: Slug
    category: Slug
    regex: NonEmpty
    cause: NonEmpty
    solutions: Annotated[list[NonEmpty], Field(min_length=1)]
    confidence: Annotated[float, Field(ge=0, le=1)] = DEFAULT_CONFIDENCE
    case_sensitive: bool = False
    examples: list[str] = []


class DictionarySpec(_Spec):
    domain: Slug
    description: str = ""
    fallback: list[NonEmpty] = []


class FileSpec(_Spec):
    dictionary: DictionarySpec
    pattern: list[PatternSpec] = []


@dataclass(frozen=True, slots=True)
class Pattern:
    id: str
    category: str
    source: str
    regex: Regex
    cause: str
    solutions: tuple[str, ...]
    confidence: float
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Match:
    pattern: Pattern
    start: int
    end: int
    groups: Mapping[str, str]
    matched_text: str


class Dictionary:
    """One domain's compiled patterns."""

    def __init__(
        self, domain: str, patterns: Iterable[Pattern], *, description: str = "",
        fallback: Iterable[str] = (), path: Path | None = None,
    ) -> None:
        self.domain = domain
        self.description = description
        self.patterns = tuple(patterns)
        self.fallback = tuple(fallback)
        self.path = path
        self._set = RegexSet([p.regex.pattern for p in self.patterns], [p.regex for p in self.patterns])

    def __len__(self) -> int:
        return len(self.patterns)

    def match(self, text: str) -> Match | None:
        """The first pattern, in file order, that matches anywhere in ``text``."""
        for index in self._set.match(text):
            pattern = self.patterns[index]
            m = pattern.regex.search(text)
            if m is None:  # pragma: no cover - the set and the regex agree
                continue
            groups = {k: _clean(v) for k, v in m.groupdict().items() if v}
            return Match(pattern, m.start(), m.end(), groups, _line_around(text, m.start(), m.end()))
        return None

    def classify(self, text: str, *, routed_by: str = "") -> Classification:
        found = self.match(text)
        if found is None:
            return Classification(
                domain=self.domain, category=None, pattern_id=None, confidence=0.0,
                matched_text="", cause=f"No pattern of the {self.domain} dictionary matched this text.",
                solutions=self.fallback, routed_by=routed_by,
            )
        p = found.pattern
        return Classification(
            domain=self.domain, category=p.category, pattern_id=p.id, confidence=p.confidence,
            matched_text=found.matched_text, cause=_fill(p.cause, found.groups, p.regex.groupindex),
            solutions=tuple(_fill(step, found.groups, p.regex.groupindex) for step in p.solutions),
            routed_by=routed_by, groups=dict(found.groups),
        )


class Catalog:
    """All dictionaries, by domain."""

    def __init__(self, dictionaries: Iterable[Dictionary]) -> None:
        self.by_domain = {d.domain: d for d in dictionaries}

    @property
    def domains(self) -> list[str]:
        return sorted(self.by_domain)

    def __contains__(self, domain: object) -> bool:
        return domain in self.by_domain

    def __getitem__(self, domain: str) -> Dictionary:
        return self.by_domain[domain]

    def classify(self, text: str, domain: str, *, routed_by: str = "") -> Classification:
        return self.by_domain[domain].classify(text, routed_by=routed_by)

    def best(self, text: str, *, fallback_domain: str | None = None) -> Classification:
        """Try every dictionary; keep the most confident match (longest match breaks ties).

        With no match anywhere, the honest answer is "unclassified" in
        ``fallback_domain`` (or the first domain), with that domain's triage steps.
        """
        best: tuple[float, int, Classification] | None = None
        for domain in self.domains:
            dictionary = self.by_domain[domain]
            found = dictionary.match(text)
            if found is None:
                continue
            score = (found.pattern.confidence, found.end - found.start)
            if best is None or score > best[:2]:
                best = (*score, dictionary.classify(text, routed_by="best match of all dictionaries"))
        if best is not None:
            return best[2]
        if fallback_domain in self.by_domain:
            return self.by_domain[fallback_domain].classify(text, routed_by="no dictionary matched")
        return Classification(
            domain=UNKNOWN_DOMAIN, category=None, pattern_id=None, confidence=0.0, matched_text="",
            cause=f"No pattern of any dictionary ({', '.join(self.domains)}) matched this text.",
            solutions=GENERIC_TRIAGE, routed_by="no dictionary matched")


def _clean(value: str) -> str:
    """Group values end up in shell commands shown to humans: keep them short and printable."""
    value = "".join(ch if ch.isprintable() else " " for ch in value).strip()
    return value[:_MAX_GROUP_VALUE]


def _line_around(text: str, start: int, end: int) -> str:
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line = text[line_start : line_end if line_end != -1 else len(text)].strip()
    if len(line) > _MAX_MATCHED_TEXT:
        line = text[start:end].strip()[:_MAX_MATCHED_TEXT]
    return line


def _fill(step: str, groups: Mapping[str, str], names: Mapping[str, int]) -> str:
    """Replace ``{name}`` by the captured value; leave braces that aren't group names alone."""

    def sub(m: Any) -> str:
        name = m.group(1)
        if name not in names:
            return str(m.group(0))
        return groups.get(name) or f"<{name}>"

    return str(_GROUP_REF.sub(sub, step))


# --------------------------------------------------------------------------- loading


def load_catalog(directory: Path, *, extra: Mapping[str, Path] | None = None) -> Catalog:
    """Load every ``*.toml`` and ``*.json`` dictionary in ``directory``, plus ``extra``
    (domain -> file: dictionaries kept elsewhere, named in [domains.X] dictionary)."""
    if not directory.is_dir():
        raise ConfigError("patterns directory does not exist", path=str(directory))
    files = sorted(p for p in directory.iterdir() if p.suffix in (".toml", ".json") and p.is_file())
    if not files:
        raise ConfigError("no pattern dictionaries (*.toml, *.json) found", path=str(directory))
    seen: dict[str, Path] = {}
    dictionaries = []
    for path in files:
        d = load_dictionary(path)
        if d.domain in seen:
            raise ConfigError(f"domain {d.domain!r} is already defined by {seen[d.domain]}", path=str(path))
        seen[d.domain] = path
        dictionaries.append(d)
    for domain, path in (extra or {}).items():
        if not path.is_file():
            raise ConfigError(f"[domains.{domain}] dictionary: file does not exist", path=str(path))
        d = load_dictionary(path)
        if d.domain in seen and seen[d.domain] != path:
            raise ConfigError(f"domain {d.domain!r} is already defined by {seen[d.domain]}", path=str(path))
        if d.domain != domain:
            raise ConfigError(f"[domains.{domain}] dictionary defines domain {d.domain!r}", path=str(path))
        if d.domain not in seen:
            seen[d.domain] = path
            dictionaries.append(d)
    return Catalog(dictionaries)


def load_dictionary(path: Path) -> Dictionary:
    if path.suffix == ".json":
        return _load_json(path)
    data, text = tomlfile.load(path)
    try:
        spec = FileSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise tomlfile.validation_error(exc, path=path, text=text) from None
    if spec.dictionary.domain != path.stem:
        raise ConfigError(
            f"dictionary.domain is {spec.dictionary.domain!r} but the file is named {path.name}: they must agree",
            path=str(path), line=tomlfile.locate(text, ("dictionary", "domain")),
        )
    patterns = []
    ids: set[str] = set()
    for i, p in enumerate(spec.pattern):
        line = tomlfile.locate(text, ("pattern", i, "regex")) or tomlfile.locate(text, ("pattern", i))
        if p.id in ids:
            raise ConfigError(f"duplicate pattern id {p.id!r}", path=str(path),
                              line=tomlfile.locate(text, ("pattern", i, "id")))
        ids.add(p.id)
        try:
            regex = compile_regex(p.regex, case_sensitive=p.case_sensitive)
        except RegexError as exc:
            raise ConfigError(f"pattern {p.id!r}: {exc}", path=str(path), line=line) from None
        patterns.append(Pattern(p.id, p.category, str(path), regex, p.cause, tuple(p.solutions),
                                p.confidence, tuple(p.examples)))
    return Dictionary(spec.dictionary.domain, patterns, description=spec.dictionary.description,
                      fallback=spec.dictionary.fallback, path=path)


class _SeedPattern(_Spec):
    model_config = ConfigDict(extra="allow", frozen=True)
    pattern: NonEmpty
    category: NonEmpty
    solutions: Annotated[list[NonEmpty], Field(min_length=1)]
    description: str = ""
    cause: str = ""


def _load_json(path: Path) -> Dictionary:
    """The seed's dictionary format; its domain is the file name."""
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text)
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror or exc}", path=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("file is not valid UTF-8", path=str(path)) from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON: {exc.msg}", path=str(path), line=exc.lineno) from exc
    if not isinstance(data, dict) or not isinstance(data.get("patterns"), dict):
        raise ConfigError('expected {"patterns": {"<name>": {"pattern", "category", "solutions"}}}',
                          path=str(path), line=1)

    def line_of(name: str) -> int | None:
        for n, line in enumerate(text.splitlines(), start=1):
            if f'"{name}"' in line:
                return n
        return None

    patterns = []
    for name, raw in data["patterns"].items():
        try:
            spec = _SeedPattern.model_validate(raw)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise ConfigError(f"pattern {name!r}: {loc}: {first['msg']}", path=str(path),
                              line=line_of(name)) from None
        try:
            regex = compile_regex(spec.pattern)
        except RegexError as exc:
            raise ConfigError(f"pattern {name!r}: {exc}", path=str(path), line=line_of(name)) from None
        slug = "".join(c if c.isalnum() or c in "-_" else "-" for c in name.lower())
        category = "".join(c if c.isalnum() or c in "-_" else "-" for c in spec.category.lower())
        cause = spec.cause or spec.description or f"Known {spec.category} error ({name})."
        patterns.append(Pattern(slug, category, str(path), regex, cause, tuple(spec.solutions),
                                DEFAULT_CONFIDENCE, ()))
    return Dictionary(path.stem, patterns, path=path)
