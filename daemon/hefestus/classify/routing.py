"""rules/*.toml -> the compiled routing table that picks a domain for an event.

Routing is data, edited by ops. Order is explicit and visible: files are read
in name order (``10-kubernetes.toml`` before ``50-linux.toml``) and rules in
the order they appear; the first rule whose conditions all hold wins. A
``[default]`` table (in exactly one file) says what happens when none does:
a fixed domain, or ``"auto"`` to let every dictionary try and keep the best
match.

Matching is kept apart from side effects: a compiled :class:`Router` is a
pure function from a :class:`~hefestus.values.Problem` to a domain.

The same files may hold ``[[remediation]]`` tables (category -> Rundeck job);
they are read by :mod:`hefestus.remediation.rules`, not here.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from hefestus import tomlfile
from hefestus.classify.regex import Regex, RegexError, compile_regex
from hefestus.errors import ConfigError
from hefestus.tomlfile import Slug
from hefestus.values import Problem, Severity

AUTO = "auto"

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$", max_length=100)]
Domain = Slug


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_severity(v: Any) -> Any:
    """For ``mode="before"`` validators: "high", "High", 4 -> Severity; None stays None."""
    return None if v is None else Severity.parse(v)


class MatchSpec(_Spec):
    """The conditions an event must meet: shared by [[rule]] and [[remediation]]."""

    #: Shell-style globs, case-insensitive; any one matching is enough.
    host_groups: list[str] = []
    hosts: list[str] = []
    #: tag name -> glob on its value ("*" = the tag is present with any value).
    tags: dict[str, str] = {}
    #: RE2 regex searched in the trigger/event name (case-insensitive).
    trigger: str | None = None
    min_severity: Severity | None = None

    _severity = field_validator("min_severity", mode="before")(classmethod(
        lambda cls, v: parse_severity(v)))


class RuleSpec(MatchSpec):
    name: Name
    domain: Domain


class DefaultSpec(_Spec):
    domain: Domain | str = AUTO
    #: When the routed domain's dictionary has no match: "best" tries every other
    #: dictionary (a PostgreSQL error on a host routed to linux still gets its answer);
    #: "unclassified" keeps the routed domain's triage steps.
    on_no_match: Literal["best", "unclassified"] = "best"


class RulesFileSpec(_Spec):
    default: DefaultSpec | None = None
    rule: list[RuleSpec] = Field(default_factory=list)
    #: Self-healing rules live beside the routing rules; :mod:`hefestus.remediation.rules`
    #: validates them, the router ignores them.
    remediation: list[Any] = Field(default_factory=list)
    #: [[notify]] tables: validated by hefestus.notify.announcer, not by the router.
    notify: list[dict[str, Any]] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    domain: str
    origin: str  # "file:line", shown by `hefestus check` and in logs
    host_groups: tuple[str, ...]
    hosts: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]
    trigger: Regex | None
    min_severity: Severity | None

    def matches(self, problem: Problem) -> bool:
        if self.min_severity is not None and problem.severity < self.min_severity:
            return False
        if self.host_groups and not _any_glob(self.host_groups, problem.host_groups):
            return False
        if self.hosts and not _any_glob(self.hosts, problem.hosts):
            return False
        if self.tags:
            have = problem.tag_dict()
            for tag, pattern in self.tags:
                if not any(fnmatch.fnmatchcase(v.lower(), pattern.lower()) for v in have.get(tag, [])):
                    return False
        if self.trigger is not None and self.trigger.search(problem.name) is None:
            return False
        return True


def _any_glob(patterns: Sequence[str], values: Iterable[str]) -> bool:
    values = [v.lower() for v in values]
    return any(fnmatch.fnmatchcase(v, p.lower()) for p in patterns for v in values)


@dataclass(frozen=True, slots=True)
class Route:
    """Where an event goes: a domain, or AUTO; and which rule said so."""

    domain: str
    rule: str


class Router:
    def __init__(self, rules: Iterable[Rule], default: str = AUTO, default_origin: str = "built-in",
                 on_no_match: str = "best") -> None:
        self.rules = tuple(rules)
        self.default = default
        self.default_origin = default_origin
        self.on_no_match = on_no_match

    def route(self, problem: Problem) -> Route:
        for rule in self.rules:
            if rule.matches(problem):
                return Route(rule.domain, f"rule {rule.name!r}")
        return Route(self.default, "default")


def load_router(directory: Path, *, domains: Iterable[str]) -> Router:
    """Load ``directory/*.toml`` in name order; check every domain named exists."""
    known = set(domains)
    if not directory.is_dir():
        raise ConfigError("rules directory does not exist", path=str(directory))
    rules: list[Rule] = []
    names: dict[str, str] = {}
    default: tuple[str, str, str] | None = None
    for path in sorted(directory.glob("*.toml")):
        data, text = tomlfile.load(path)
        try:
            spec = RulesFileSpec.model_validate(data)
        except pydantic.ValidationError as exc:
            raise tomlfile.validation_error(exc, path=path, text=text) from None
        if spec.default is not None:
            line = tomlfile.locate(text, ("default",))
            if default is not None:
                raise ConfigError(f"a second [default]; the first is at {default[1]}", path=str(path), line=line)
            if spec.default.domain != AUTO and spec.default.domain not in known:
                raise ConfigError(_unknown_domain(spec.default.domain, known), path=str(path),
                                  line=tomlfile.locate(text, ("default", "domain")))
            default = (spec.default.domain, f"{path}:{line}", spec.default.on_no_match)
        for i, r in enumerate(spec.rule):
            line = tomlfile.locate(text, ("rule", i))
            origin = f"{path}:{line}"
            if r.name in names:
                raise ConfigError(f"rule name {r.name!r} is already used at {names[r.name]}",
                                  path=str(path), line=line)
            names[r.name] = origin
            if r.domain not in known:
                raise ConfigError(f"rule {r.name!r}: {_unknown_domain(r.domain, known)}", path=str(path),
                                  line=tomlfile.locate(text, ("rule", i, "domain")) or line)
            trigger = None
            if r.trigger is not None:
                try:
                    trigger = compile_regex(r.trigger)
                except RegexError as exc:
                    raise ConfigError(f"rule {r.name!r}: trigger: {exc}", path=str(path),
                                      line=tomlfile.locate(text, ("rule", i, "trigger")) or line) from None
            rules.append(Rule(r.name, r.domain, origin, tuple(r.host_groups), tuple(r.hosts),
                              tuple(r.tags.items()), trigger, r.min_severity))
    if default is None:
        return Router(rules)
    return Router(rules, default[0], default[1], default[2])


def _unknown_domain(domain: str, known: set[str]) -> str:
    return f"unknown domain {domain!r} (dictionaries: {', '.join(sorted(known)) or 'none'}, or \"auto\")"
