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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import pydantic
import re2
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hefestus import tomlfile
from hefestus.classify import safety
from hefestus.classify.regex import Regex, RegexError, RegexSet, compile_regex
from hefestus.classify.shapes import admits, compile_shapes, withheld_note
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
#: Characters that would start a new line of the message (or reorder it, for bidi
#: controls) if the matched excerpt carried them: it must stay one line of evidence.
_LAYOUT = {**{c: " " for c in (0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029)},
           **{c: None for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}}


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
    #: group -> RE2 regex a captured value must match in full to be pasted into the text
    #: (default :data:`DEFAULT_SHAPE`); a value that does not is withheld.
    shapes: dict[str, NonEmpty] = {}


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
    #: group -> compiled shape (see :data:`DEFAULT_SHAPE`)
    shapes: Mapping[str, Regex] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Match:
    pattern: Pattern
    start: int
    end: int
    groups: Mapping[str, str]
    matched_text: str
    #: The captured values as they are in the text (``groups`` is cleaned and cut).
    raw: Mapping[str, str] = field(default_factory=dict)


class Dictionary:
    """One domain's compiled patterns."""

    def __init__(
        self, domain: str, patterns: Iterable[Pattern], *, description: str = "",
        fallback: Iterable[str] = (), path: Path | None = None, accelerate: bool = True,
    ) -> None:
        self.domain = domain
        self.description = description
        self.patterns = tuple(patterns)
        self.fallback = tuple(fallback)
        self.path = path
        sources, compiled = [p.regex.pattern for p in self.patterns], [p.regex for p in self.patterns]
        self._set = RegexSet(sources, compiled, accelerate=accelerate)
        if self._set.engine == "hyperscan" and not self._prefilter_agrees():
            self._set = RegexSet(sources, compiled, accelerate=False)
        #: per pattern, its named groups as (name, index): re2 rebuilds ``groupindex`` per call
        self._named = [tuple(p.regex.groupindex.items()) for p in self.patterns]

    def _prefilter_agrees(self) -> bool:
        """A second line behind the prefilter's construction rules: every example a pattern
        matches with RE2 must be among the prefilter's candidates, else RE2 scans alone."""
        for index, p in enumerate(self.patterns):
            for example in p.examples:
                data = example.encode("utf-8", "replace")
                if p.regex.search(data) is not None and index not in self._set.match(data):
                    return False
        return True

    def __len__(self) -> int:
        return len(self.patterns)

    @property
    def engine(self) -> str:
        """What scans ASCII texts for this dictionary: ``hyperscan`` or ``re2``."""
        return self._set.engine

    def match(self, text: str) -> Match | None:
        """The first pattern, in file order, that matches anywhere in ``text``."""
        # re2 works on UTF-8: encode once for the set and the winning regex. Given a str, its
        # wrapper re-encodes it per call and maps every byte offset back to a str offset.
        encoded = text.encode("utf-8")
        for index in self._set.match(encoded):
            pattern = self.patterns[index]
            m = pattern.regex.search(encoded)
            if m is None:  # a candidate RE2 turns down (see RegexSet.match)
                continue
            return _found(pattern, self._named[index], m, text, encoded)
        return None

    def classify(self, text: str, *, routed_by: str = "") -> Classification:
        return self._classification(self.match(text), routed_by)

    def _classification(self, found: Match | None, routed_by: str) -> Classification:
        if found is None:
            return Classification(
                domain=self.domain, category=None, pattern_id=None, confidence=0.0,
                matched_text="", cause=f"No pattern of the {self.domain} dictionary matched this text.",
                solutions=self.fallback, routed_by=routed_by,
            )
        p = found.pattern
        withheld: dict[str, None] = {}  # ordered set: the note names them in text order
        cause = _fill(p, p.cause, found.raw, withheld)
        solutions = tuple(_fill(p, step, found.raw, withheld) for step in p.solutions)
        return Classification(
            domain=self.domain, category=p.category, pattern_id=p.id, confidence=p.confidence,
            matched_text=found.matched_text, cause=cause, solutions=solutions,
            routed_by=routed_by, groups=dict(found.groups), note=withheld_note(list(withheld)),
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
                best = (*score, dictionary._classification(found, "best match of all dictionaries"))
        if best is not None:
            return best[2]
        if fallback_domain in self.by_domain:
            return self.by_domain[fallback_domain].classify(text, routed_by="no dictionary matched")
        return Classification(
            domain=UNKNOWN_DOMAIN, category=None, pattern_id=None, confidence=0.0, matched_text="",
            cause=f"No pattern of any dictionary ({', '.join(self.domains)}) matched this text.",
            solutions=GENERIC_TRIAGE, routed_by="no dictionary matched")


def _found(pattern: Pattern, named: Iterable[tuple[str, int]], m: Any, text: str, encoded: bytes) -> Match:
    """The :class:`Match` for ``m``, a search of ``encoded`` (``text`` as UTF-8), in ``text``'s
    character offsets."""
    (start, end), spans = m.span(), [(k, m.span(i)) for k, i in named]
    if len(encoded) == len(text):  # ASCII: byte offsets are character offsets
        raw = {k: text[a:b] for k, (a, b) in spans if b > a}
    else:
        try:
            raw = {k: encoded[a:b].decode("utf-8") for k, (a, b) in spans if b > a}
            start, end = len(encoded[:start].decode("utf-8")), len(encoded[:end].decode("utf-8"))
        except UnicodeDecodeError:  # a span inside a character (only \C, any byte, does that):
            m = pattern.regex.search(text)  # let re2 map the offsets, as it always did
            (start, end), raw = m.span(), {k: v for k, v in m.groupdict().items() if v}
    groups = {k: _clean(v) for k, v in raw.items()}
    return Match(pattern, start, end, groups, _line_around(text, start, end), raw)


def _clean(value: str) -> str:
    """Group values as evidence (``Classification.groups``, read by remediation rules): short
    and printable. Causes and steps get values only through :func:`_fill`'s shape check."""
    if not value.isprintable():
        value = "".join(ch if ch.isprintable() else " " for ch in value)
    return value.strip()[:_MAX_GROUP_VALUE]


def _line_around(text: str, start: int, end: int) -> str:
    """The line of ``text`` holding the match, as one line of evidence: a match that spans
    lines (``\\s+``) or a line separator inside it must not add lines to the message."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line = text[line_start : line_end if line_end != -1 else len(text)].strip()
    if len(line) > _MAX_MATCHED_TEXT:
        line = text[start:end].strip()[:_MAX_MATCHED_TEXT]
    # Every _LAYOUT character is unprintable: a printable line has none to translate.
    return (line if line.isprintable() else line.translate(_LAYOUT)).strip()


def _fill(p: Pattern, template: str, values: Mapping[str, str], withheld: dict[str, None]) -> str:
    """Replace ``{name}`` by the captured value when it has the group's shape, else by ``<name>``
    (and note ``name`` in ``withheld``); braces that aren't group names are left alone.

    Log text is evidence, never an instruction: a value that could close a quote, chain a
    command or pass an option (a leading ``-``) never reaches a step someone may paste.
    """

    def sub(m: Any) -> str:
        name = m.group(1)
        if name not in p.regex.groupindex:
            return str(m.group(0))
        value = values.get(name, "").strip()
        if not value:
            return f"<{name}>"
        if not admits(value, p.shapes.get(name)):
            withheld[name] = None
            return f"<{name}>"
        return value

    return str(_GROUP_REF.sub(sub, template))


# --------------------------------------------------------------------------- loading


def load_catalog(directory: Path, *, extra: Mapping[str, Path] | None = None) -> Catalog:
    """Load every ``*.toml`` and ``*.json`` dictionary in ``directory``, plus ``extra``
    (domain -> file: dictionaries kept elsewhere, named in [domains.X] dictionary)."""
    if not directory.is_dir():
        raise ConfigError("patterns directory does not exist", path=str(directory))
    files = tomlfile.listing(directory, (".toml", ".json"))  # special files refused, by name
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
    safety.check_steps(spec.dictionary.fallback, owner="dictionary fallback", path=path, text=text,
                       line=tomlfile.locate(text, ("dictionary", "fallback")))
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
        shapes = compile_shapes(p.shapes, regex, pattern_id=p.id, path=path, text=text, index=i)
        safety.check_steps(p.solutions, owner=f"pattern {p.id!r}", path=path, text=text,
                           line=tomlfile.locate(text, ("pattern", i, "solutions")) or line)
        patterns.append(Pattern(p.id, p.category, str(path), regex, p.cause, tuple(p.solutions),
                                p.confidence, tuple(p.examples), shapes))
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
        text = tomlfile.read_regular(path).decode("utf-8")
        data = json.loads(text)
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
        safety.check_steps(spec.solutions, owner=f"pattern {slug!r}", path=path, text=text, line=line_of(name))
        category = "".join(c if c.isalnum() or c in "-_" else "-" for c in spec.category.lower())
        cause = spec.cause or spec.description or f"Known {spec.category} error ({name})."
        patterns.append(Pattern(slug, category, str(path), regex, cause, tuple(spec.solutions),
                                DEFAULT_CONFIDENCE, ()))
    return Dictionary(path.stem, patterns, path=path)
