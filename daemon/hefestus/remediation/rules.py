"""``[[remediation]]`` tables in rules/*.toml -> compiled, validated remediation rules.

A remediation rule maps a pattern category (domain + category, optionally
narrowed like a routing rule by host groups, hosts, tags, trigger and
severity) to one Rundeck job, with the job's options rendered from the
event::

    [[remediation]]
    name = "restart-failed-service"
    domain = "linux"
    category = "service-failed"
    project = "ops"
    job_id = "00000000-0000-0000-0000-000000000001"   # placeholder: ops replace it
    job_name = "Restart service"
    options.unit = { value = "{unit}", allow = '^(nginx|php8\\.2-fpm)\\.service$' }
    options.host = { value = "{host}", allow = '^[A-Za-z0-9][A-Za-z0-9.-]*$' }

Placeholders: ``{host} {trigger} {severity} {eventid} {domain} {category}``,
``{tag:NAME}``, ``{item:KEY}``, and the named groups of the category's
patterns (``{unit}``, or ``{group:host}`` for a group named like an event
field). A placeholder the event has no value for refuses the run, unless the
option says ``optional = true`` (then the option is left out and the job's
own default applies). ``node_filter`` is a fixed string, or ``{value,
allow}`` like an option.

Every option declares the values it accepts (``allow``, an RE2 regex the
rendered value must match *in full*, case-sensitive): a value taken from a log
line may carry ``; rm -rf /``, and then nothing runs. An allow-list that
would let an event put whitespace, a quote, a shell metacharacter, a non-ASCII
character or a leading ``-`` into a value (or, for ``path = true`` options, a
``..`` segment or ``//``) is refused at load time, because Rundeck script steps
paste ``${option.x}`` into shell commands: :mod:`.allow` explains how every allow
is probed. Job ids starting
``00000000-0000-0000-0000-`` are the shipped examples' placeholders: never run.

Everything is checked once, at load (and reload): every mistake is a
:class:`~hefestus.errors.ConfigError` naming file and line. Rendering at
decision time is pure and cannot raise: it returns the value or the reason
it cannot be used.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import pydantic
import re2
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hefestus import tomlfile
from hefestus.classify.patterns import Catalog
from hefestus.classify.regex import Regex, RegexError, compile_regex
from hefestus.classify.routing import Domain, MatchSpec, Name, Rule
from hefestus.errors import ConfigError
from hefestus.remediation.allow import problems
from hefestus.tomlfile import Slug
from hefestus.values import Classification, Problem

#: Placeholders filled from the event itself (anything else names a pattern group).
EVENT_FIELDS = frozenset({"host", "trigger", "severity", "eventid", "domain", "category"})
#: Job ids of this form are the shipped examples' placeholders: never run, always reported.
PLACEHOLDER_PREFIX = "00000000-0000-0000-0000-"
MAX_VALUE_CHARS = 1024

_PLACEHOLDER = re2.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
OptionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")]
JobId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")]
Project = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.+-]{1,100}$")]
Category = Slug
Seconds = Annotated[float, Field(ge=0, le=30 * 86400)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptionSpec(_Spec):
    value: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    allow: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    #: When the event has no value for a placeholder: leave the option out (the job's own
    #: default applies) instead of refusing the run.
    optional: bool = False
    #: The value is a file-system path: its allow must also refuse ``..`` segments and ``//``.
    path: bool = False


class RemediationSpec(MatchSpec):
    name: Name
    domain: Domain
    category: Category
    project: Project
    job_id: JobId
    #: What operators read ("job 'Restart service'"); default: the rule name.
    job_name: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = None
    options: dict[OptionName, OptionSpec] = {}
    #: Rundeck node filter: a fixed string, or {value, allow} to template it.
    node_filter: Annotated[str, StringConstraints(min_length=1, max_length=500)] | OptionSpec | None = None
    #: Per-rule limits; unset: the [remediation] defaults.
    timeout: Annotated[float, Field(ge=1, le=86400)] | None = None
    cooldown: Seconds | None = None
    max_runs_per_hour: Annotated[int, Field(ge=1, le=1000)] | None = None
    recovery_window: Annotated[float, Field(ge=0, le=86400)] | None = None
    #: Never run this rule's job, whatever remediation.mode says (a new rule, until trusted).
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class Template:
    """A value with ``{placeholders}``; ``{{`` and ``}}`` are literal braces."""

    source: str
    #: ("text", literal) or ("field", placeholder) pieces, in order.
    parts: tuple[tuple[str, str], ...]
    allow: Regex | None
    optional: bool = False

    def render(self, problem: Problem, c: Classification) -> tuple[str | None, str]:
        """(value, "") or (None, why it cannot be used); (None, "") for an optional
        template whose placeholder has no value. Never raises."""
        out: list[str] = []
        for kind, text in self.parts:
            if kind == "text":
                out.append(text)
                continue
            value, why = _field(text, problem, c)
            if value is None:
                return None, ("" if self.optional else f"has no value: {why}")
            out.append(value)
        value = "".join(out)
        if len(value) > MAX_VALUE_CHARS:
            return None, f"value is longer than {MAX_VALUE_CHARS} characters"
        if any(not ch.isprintable() for ch in value):
            return None, f"value {_show(value)} contains control characters"
        if self.allow is not None and self.allow.fullmatch(value) is None:
            return None, f"value {_show(value)} does not match {self.allow.pattern}"
        return value, ""


def _show(value: str) -> str:
    shown = value if len(value) <= 80 else value[:79] + "…"
    return "'" + shown.encode("unicode_escape").decode("ascii", "replace") + "'"


def _field(name: str, problem: Problem, c: Classification) -> tuple[str | None, str]:
    if name == "host":
        return (problem.host, "") if problem.host else (None, "the event has no host")
    if name == "trigger":
        return problem.name, ""
    if name == "severity":
        return problem.severity.label, ""
    if name == "eventid":
        return str(problem.eventid), ""
    if name == "domain":
        return c.domain, ""
    if name == "category":
        return c.category or "", ""
    kind, _, key = name.partition(":")
    if kind == "tag" and key:
        values = problem.tag_dict().get(key)
        return (values[0], "") if values else (None, f"the event has no tag {key!r}")
    if kind == "item" and key:
        for item in problem.items:
            if item.key == key:
                return item.value, ""
        return None, f"the event has no item with key {key!r}"
    group = key if kind == "group" else name
    value = c.groups.get(group)
    if value:
        return value, ""
    return None, f"the pattern captured no {{{group}}} in this event"


@dataclass(frozen=True, slots=True)
class RemediationRule:
    name: str
    origin: str  # "file:line"
    domain: str
    category: str
    match: Rule  # host groups, hosts, tags, trigger, severity: a routing rule's matching
    project: str
    job_id: str
    job_name: str
    options: tuple[tuple[str, Template], ...]
    node_filter: Template | None
    timeout: float | None
    cooldown: float | None
    max_runs_per_hour: int | None
    recovery_window: float | None
    dry_run: bool

    @property
    def placeholder(self) -> bool:
        return self.job_id.startswith(PLACEHOLDER_PREFIX)

    @property
    def label(self) -> str:
        return f"Rundeck job '{self.job_name}' ({self.project})"

    def applies(self, problem: Problem, c: Classification) -> bool:
        return (c.pattern_id is not None and c.domain == self.domain
                and c.category == self.category and self.match.matches(problem))

    def render(self, problem: Problem, c: Classification
               ) -> tuple[tuple[tuple[str, str], ...], str | None, str]:
        """(options, node filter, "") or ((), None, why not). Never raises."""
        options: list[tuple[str, str]] = []
        for name, template in self.options:
            value, why = template.render(problem, c)
            if why:
                return (), None, f"option '{name}' {why}"
            if value is not None:
                options.append((name, value))
        node_filter = None
        if self.node_filter is not None:
            node_filter, why = self.node_filter.render(problem, c)
            if why:
                return (), None, f"node filter {why}"
        return tuple(options), node_filter, ""


class RemediationRules:
    """The compiled rules, in file order; the first that applies wins."""

    def __init__(self, rules: Iterable[RemediationRule] = ()) -> None:
        self.rules = tuple(rules)

    def __len__(self) -> int:
        return len(self.rules)

    def find(self, problem: Problem, c: Classification) -> RemediationRule | None:
        if c.category is None or c.pattern_id is None:
            return None  # only a pattern's category maps to a job: never a guess, never the model
        return next((r for r in self.rules if r.applies(problem, c)), None)

    def jobs(self) -> dict[str, list[RemediationRule]]:
        """job id -> the rules that run it (for `hefestus check`)."""
        out: dict[str, list[RemediationRule]] = {}
        for r in self.rules:
            out.setdefault(r.job_id, []).append(r)
        return out


def _groups_by_category(catalog: Catalog) -> dict[tuple[str, str], frozenset[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for domain in catalog.domains:
        for p in catalog[domain].patterns:
            out.setdefault((domain, p.category), set()).update(p.regex.groupindex)
    return {k: frozenset(v) for k, v in out.items()}


def load_remediation_rules(directory: Path, *, catalog: Catalog) -> RemediationRules:
    """Read every ``[[remediation]]`` of ``directory/*.toml`` (name order, then file order)."""
    if not directory.is_dir():
        raise ConfigError("rules directory does not exist", path=str(directory))
    groups = _groups_by_category(catalog)
    rules: list[RemediationRule] = []
    names: dict[str, str] = {}
    for path in tomlfile.listing(directory):  # names, never skips, a FIFO or a Linux.TOML
        data, text = tomlfile.load(path)
        raw = data.get("remediation", [])
        if not isinstance(raw, list):
            raise ConfigError("remediation must be an array of tables: write [[remediation]]",
                              path=str(path), line=tomlfile.locate(text, ("remediation",)))
        for i, item in enumerate(raw):
            try:
                spec = RemediationSpec.model_validate(item)
            except pydantic.ValidationError as exc:
                raise tomlfile.validation_error(exc, path=path, text=text,
                                                prefix=("remediation", i)) from None
            rule = _compile(spec, i, path, text, groups)
            if rule.name in names:
                raise ConfigError(f"remediation rule name {rule.name!r} is already used at "
                                  f"{names[rule.name]}", path=str(path),
                                  line=tomlfile.locate(text, ("remediation", i)))
            names[rule.name] = rule.origin
            rules.append(rule)
    return RemediationRules(rules)


def _compile(spec: RemediationSpec, i: int, path: Path, text: str,
             groups: Mapping[tuple[str, str], frozenset[str]]) -> RemediationRule:
    line = tomlfile.locate(text, ("remediation", i))

    def fail(problem: str, *key: str | int) -> ConfigError:
        where = tomlfile.locate(text, ("remediation", i, *key)) if key else None
        return ConfigError(f"remediation {spec.name!r}: {problem}", path=str(path), line=where or line)

    domains = sorted({d for d, _ in groups})
    if spec.domain not in domains:
        raise fail(f"unknown domain {spec.domain!r} (dictionaries: {', '.join(domains)})", "domain")
    categories = sorted({c for d, c in groups if d == spec.domain})
    if (spec.domain, spec.category) not in groups:
        raise fail(f"no pattern of {spec.domain} has category {spec.category!r} "
                   f"(categories: {', '.join(categories)})", "category")
    captured = groups[(spec.domain, spec.category)]
    trigger = None
    if spec.trigger is not None:
        try:
            trigger = compile_regex(spec.trigger)
        except RegexError as exc:
            raise fail(f"trigger: {exc}", "trigger") from None
    match = Rule(spec.name, spec.domain, f"{path}:{line}", tuple(spec.host_groups), tuple(spec.hosts),
                 tuple(spec.tags.items()), trigger, spec.min_severity)
    options = []
    for name, opt in spec.options.items():
        try:
            options.append((name, _template(opt.value, opt.allow, captured, spec, opt.optional,
                                            path=opt.path)))
        except ValueError as exc:
            raise fail(f"option '{name}': {exc}", "options", name) from None
    node_filter = None
    if isinstance(spec.node_filter, OptionSpec):
        try:
            node_filter = _template(spec.node_filter.value, spec.node_filter.allow, captured, spec,
                                    spec.node_filter.optional, path=spec.node_filter.path)
        except ValueError as exc:
            raise fail(f"node_filter: {exc}", "node_filter") from None
    elif spec.node_filter is not None:
        try:
            node_filter = _template(spec.node_filter, None, captured, spec)
        except ValueError as exc:
            raise fail(f"node_filter: {exc}", "node_filter") from None
        if any(kind == "field" for kind, _ in node_filter.parts):
            raise fail("node_filter: a templated node filter needs an allow-list: write "
                       "node_filter = { value = \"...\", allow = '^...$' }", "node_filter")
    return RemediationRule(
        name=spec.name, origin=f"{path}:{line}", domain=spec.domain, category=spec.category,
        match=match, project=spec.project, job_id=spec.job_id, job_name=spec.job_name or spec.name,
        options=tuple(options), node_filter=node_filter, timeout=spec.timeout, cooldown=spec.cooldown,
        max_runs_per_hour=spec.max_runs_per_hour, recovery_window=spec.recovery_window,
        dry_run=spec.dry_run)


def _template(source: str, allow: str | None, captured: frozenset[str],
              spec: RemediationSpec, optional: bool = False, *, path: bool = False) -> Template:
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(source):
        if m.start() > pos:
            parts.append(("text", source[pos:m.start()]))
        pos = m.end()
        token = m.group(0)
        if token in ("{{", "}}"):
            parts.append(("text", token[0]))
            continue
        if m.group(1) is None:
            raise ValueError(f"unbalanced {token!r} in {source!r} (write {{{{ or }}}} for a literal brace)")
        parts.append(("field", _check_placeholder(m.group(1).strip(), captured, spec)))
    if pos < len(source):
        parts.append(("text", source[pos:]))
    compiled = None
    if allow is not None:
        try:
            compiled = compile_regex(allow, case_sensitive=True)
        except RegexError as exc:
            raise ValueError(f"allow: {exc}") from None
        loose = problems(compiled, allow, parts, path=path)
        if loose is not None:
            raise ValueError(loose)
        if all(kind == "text" for kind, _ in parts) and compiled.fullmatch(source_text(parts)) is None:
            raise ValueError(f"the fixed value {source!r} does not match its own allow {allow!r}")
    return Template(source, tuple(parts), compiled, optional)


def source_text(parts: Iterable[tuple[str, str]]) -> str:
    return "".join(text for _, text in parts)


def _check_placeholder(name: str, captured: frozenset[str], spec: RemediationSpec) -> str:
    kind, sep, key = name.partition(":")
    if sep and kind in ("tag", "item"):
        if not key:
            raise ValueError(f"{{{name}}}: name the {kind} ({{{kind}:<name>}})")
        return name
    group = key if sep and kind == "group" else (None if sep else name)
    if name in EVENT_FIELDS:
        return name
    if group and group in captured:
        return f"group:{group}" if sep else group
    known = ", ".join(sorted(captured)) or "none"
    raise ValueError(
        f"unknown placeholder {{{name}}}: use {', '.join('{' + f + '}' for f in sorted(EVENT_FIELDS))}, "
        f"{{tag:<name>}}, {{item:<key>}}, or a group captured by the {spec.domain}/{spec.category} "
        f"patterns ({known})")
