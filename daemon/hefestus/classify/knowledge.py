"""Routing + dictionaries: the classification stage.

:class:`Knowledge` is built in full (every file parsed, every regex compiled,
every domain cross-checked) before it is used, so a reload either yields a
complete new object or raises and leaves the old one in place. The other rules
in rules/*.toml (``[[notify]]``, ``[[remediation]]``) are loaded beside it by
:mod:`hefestus.app.reload`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from hefestus.classify.patterns import Catalog, load_catalog
from hefestus.classify.routing import AUTO, Router, load_router
from hefestus.values import Classification, Problem


@dataclass(frozen=True, slots=True)
class Knowledge:
    catalog: Catalog
    router: Router

    def classify(self, problem: Problem) -> Classification:
        route = self.router.route(problem)
        text = problem.error_text
        if route.domain == AUTO:
            c = self.catalog.best(text)
            how = f"{route.rule} ({c.routed_by})"
            return replace(c, routed_by=how)
        c = self.catalog.classify(text, route.domain, routed_by=route.rule)
        if c.classified or self.router.on_no_match != "best":
            return c
        other = self.catalog.best(text, fallback_domain=route.domain)
        if not other.classified:
            return c
        how = f"{route.rule}, then best match (nothing in {route.domain} matched)"
        return replace(other, routed_by=how)

    def analyze(self, text: str, domain: str | None = None) -> Classification:
        """Classify a bare error text (CLI, API): no host, no tags, just the dictionaries."""
        if domain is None:
            return self.catalog.best(text)
        return self.catalog.classify(text, domain, routed_by="--domain")


def load_knowledge(rules_dir: Path, patterns_dir: Path, *,
                   extra: Mapping[str, Path] | None = None) -> Knowledge:
    catalog = load_catalog(patterns_dir, extra=extra)
    return Knowledge(catalog, load_router(rules_dir, domains=catalog.domains))
