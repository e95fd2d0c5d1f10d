"""Live rules, patterns and per-domain settings, and how SIGHUP swaps them."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

import structlog

from hefestus.classify.knowledge import Knowledge, load_knowledge
from hefestus.config import Settings, load_settings
from hefestus.errors import ConfigError
from hefestus.notify.rules import NotifyRules, load_notify_rules
from hefestus.remediation.rules import RemediationRules, load_remediation_rules

log = structlog.get_logger("hefestus")


#: Sections a reload applies; the others need a restart (they shape connections and threads).
RELOADABLE = frozenset({"classification", "domains"})


@dataclass(frozen=True, slots=True)
class Ruleset:
    """Everything rules/ and patterns/ say, loaded and cross-checked as one: swapped whole."""

    knowledge: Knowledge
    notify: NotifyRules
    remediation: RemediationRules


def load_ruleset(s: Settings) -> Ruleset:
    knowledge = load_knowledge(s.rules_dir, s.patterns_dir, extra=s.extra_dictionaries)
    unknown = sorted(set(s.domains) - set(knowledge.catalog.domains))
    if unknown:
        raise ConfigError(f"[domains.{unknown[0]}]: no pattern dictionary for this domain "
                          f"(dictionaries: {', '.join(knowledge.catalog.domains)})", path=str(s.source))
    return Ruleset(knowledge, load_notify_rules(s.rules_dir, domains=knowledge.catalog.domains),
                   load_remediation_rules(s.rules_dir, catalog=knowledge.catalog))


class KnowledgeHolder:
    """The live rules, patterns and per-domain model settings; swapped whole on reload,
    never half-updated.

    SIGHUP re-reads hefestus.toml, rules/ and patterns/ and validates all of it before
    anything changes: on any error the last good set stays live and each error is logged
    with file and line. Sections that shape connections and threads ([zabbix], [state],
    [api], ...) are validated too, but a change to them is only applied by a restart: the
    log says which.
    """

    def __init__(self, settings: Settings, env: Mapping[str, str] | None = None) -> None:
        self._settings = settings
        self._env = env
        self._current = load_ruleset(settings)
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self._settings

    def __call__(self) -> Knowledge:
        """Routing and dictionaries, for the classification stage."""
        return self._current.knowledge

    def notify_rules(self) -> NotifyRules:
        return self._current.notify

    def remediation_rules(self) -> RemediationRules:
        return self._current.remediation

    def reload(self) -> bool:
        """Build a new set; on any error keep the old one and say why."""
        try:
            settings = load_settings(self._settings.source, self._env)
            fresh = load_ruleset(settings)
        except ConfigError as exc:
            log.error("reload failed; keeping the last good configuration, rules and patterns",
                      error=str(exc))
            return False
        old = self._settings
        changed = [name for name in Settings.model_fields
                   if name != "source" and getattr(old, name) != getattr(settings, name)]
        applied = {name: getattr(settings, name) for name in changed if name in RELOADABLE}
        with self._lock:
            self._settings = old.model_copy(update=applied)
            self._current = fresh
        pending = [n for n in changed if n not in RELOADABLE]
        if pending:
            log.warning("reload: these sections changed and apply at the next restart",
                        sections=", ".join(f"[{n}]" for n in pending))
        log.info("configuration, rules and patterns reloaded", domains=fresh.knowledge.catalog.domains,
                 rules=len(fresh.knowledge.router.rules), applied=", ".join(f"[{n}]" for n in applied) or "-")
        return True
