"""``[[notify]]`` rules: who hears about which event, and when.

Read from ``rules/*.toml``, next to the routing and remediation rules ops already
edit, validated in full (file and line on any error) and swapped whole on reload::

    [[notify]]
    name = "high-and-above"
    to = ["slack", "teams"]        # notifiers; ones without a webhook URL are ignored
    domains = ["kubernetes"]       # empty or absent: every domain
    min_severity = "high"
    on = ["acknowledged", "remediation"]   # the first message, and/or remediation outcomes

Matching is pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from hefestus import tomlfile
from hefestus.classify.routing import parse_severity
from hefestus.errors import ConfigError
from hefestus.values import Severity

Moment = Literal["acknowledged", "remediation"]

NOTIFIERS = ("slack", "teams")


class NotifySpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.-]*$", max_length=100)]
    to: Annotated[list[Literal["slack", "teams"]], Field(min_length=1)]
    domains: list[str] = []
    min_severity: Severity = Severity.NOT_CLASSIFIED
    on: Annotated[list[Moment], Field(min_length=1)] = ["acknowledged", "remediation"]

    _severity = field_validator("min_severity", mode="before")(classmethod(
        lambda cls, v: parse_severity(v)))


@dataclass(frozen=True, slots=True)
class NotifyRule:
    name: str
    to: tuple[str, ...]
    domains: frozenset[str]
    min_severity: Severity
    on: frozenset[str]
    origin: str

    def targets(self, domain: str, severity: Severity, moment: str) -> tuple[str, ...]:
        if moment not in self.on or severity < self.min_severity:
            return ()
        if self.domains and domain not in self.domains:
            return ()
        return self.to


@dataclass(frozen=True, slots=True)
class NotifyRules:
    rules: tuple[NotifyRule, ...] = ()

    def targets(self, domain: str, severity: Severity, moment: str) -> list[str]:
        out: dict[str, None] = {}
        for rule in self.rules:
            out.update(dict.fromkeys(rule.targets(domain, severity, moment)))
        return list(out)


def load_notify_rules(directory: Path, *, domains: Iterable[str]) -> NotifyRules:
    """The ``[[notify]]`` tables of ``directory/*.toml``, validated with file and line."""
    known = set(domains)
    rules: list[NotifyRule] = []
    for path in sorted(directory.glob("*.toml")):
        data, text = tomlfile.load(path)
        raw = data.get("notify", [])
        if not isinstance(raw, list):
            raise ConfigError("notify must be an array of tables: write [[notify]]", path=str(path),
                              line=tomlfile.locate(text, ("notify",)))
        for i, item in enumerate(raw):
            try:
                spec = NotifySpec.model_validate(item)
            except pydantic.ValidationError as exc:
                raise tomlfile.validation_error(exc, path=path, text=text, prefix=("notify", i)) from None
            line = tomlfile.locate(text, ("notify", i))
            unknown = [d for d in spec.domains if d not in known]
            if unknown:
                raise ConfigError(f"notify {spec.name!r}: unknown domain {unknown[0]!r} "
                                  f"(dictionaries: {', '.join(sorted(known))})", path=str(path), line=line)
            rules.append(NotifyRule(spec.name, tuple(dict.fromkeys(spec.to)), frozenset(spec.domains),
                                    spec.min_severity, frozenset(spec.on), f"{path}:{line}"))
    return NotifyRules(tuple(rules))


