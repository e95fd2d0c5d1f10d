"""Composition root: settings -> adapters -> pipeline -> scheduler.

The only module that builds real adapters. It also owns the daemon's life
cycle: an APScheduler interval job that never overlaps itself, a reload of
rules and patterns on SIGHUP that keeps the last good set when the new one is
broken, and a graceful stop on SIGTERM/SIGINT that lets the running cycle
finish its write.
"""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

import structlog
from apscheduler.schedulers.blocking import BlockingScheduler

from .adapters.ollama import OllamaModel
from .adapters.zabbix import ZabbixClient
from .analysis import Analyzer, compile_profiles
from .classify import Knowledge, load_knowledge
from .config import Settings
from .errors import ConfigError, HefestusError, ModelError, StateError, ZabbixUnavailable
from .pipeline import CycleReport, Pipeline
from .redact import Redactor
from .store import Store

log = structlog.get_logger("hefestus")


class KnowledgeHolder:
    """The live rules and patterns; swapped whole on reload, never half-updated."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._current = self._load()
        self._lock = threading.Lock()

    def _load(self) -> Knowledge:
        s = self._settings
        knowledge = load_knowledge(s.rules_dir, s.patterns_dir, extra=s.extra_dictionaries)
        unknown = sorted(set(s.domains) - set(knowledge.catalog.domains))
        if unknown:
            raise ConfigError(f"[domains.{unknown[0]}]: no pattern dictionary for this domain "
                              f"(dictionaries: {', '.join(knowledge.catalog.domains)})", path=str(s.source))
        return knowledge

    def __call__(self) -> Knowledge:
        return self._current

    def reload(self) -> bool:
        """Build a new set; on any error keep the old one and say why."""
        try:
            fresh = self._load()
        except ConfigError as exc:
            log.error("reload failed; keeping the last good rules and patterns", error=str(exc))
            return False
        with self._lock:
            self._current = fresh
        log.info("rules and patterns reloaded", domains=fresh.catalog.domains,
                 rules=len(fresh.router.rules))
        return True


@dataclass
class App:
    settings: Settings
    zabbix: ZabbixClient
    store: Store
    knowledge: KnowledgeHolder
    pipeline: Pipeline
    analyzer: Analyzer
    model: OllamaModel | None

    def close(self) -> None:
        self.analyzer.close()
        self.store.close()


def build_analyzer(settings: Settings, knowledge: KnowledgeHolder, store: Store,
                   redactor: Redactor) -> tuple[Analyzer, OllamaModel | None]:
    model = OllamaModel(settings.ollama) if settings.ollama.model else None

    def description(domain: str) -> str:
        catalog = knowledge().catalog
        return catalog[domain].description if domain in catalog else ""

    profiles = compile_profiles(settings.ollama, settings.domains, description)
    analyzer = Analyzer(settings=settings.analysis, ollama=settings.ollama, profiles=profiles,
                        model=model, cache=store, redact=redactor)
    return analyzer, model


def build(settings: Settings) -> App:
    redactor = Redactor(settings.redaction.patterns)
    knowledge = KnowledgeHolder(settings)
    zabbix = ZabbixClient(settings.zabbix)
    store = Store(settings.state_path)
    analyzer, model = build_analyzer(settings, knowledge, store, redactor)
    pipeline = Pipeline(zabbix, store, knowledge, intake=settings.intake, ack=settings.acknowledge,
                        ledger_days=settings.state.ledger_days, analysis=analyzer, redact=redactor)
    return App(settings, zabbix, store, knowledge, pipeline, analyzer, model)


def model_status(model: OllamaModel | None, names: list[str]) -> tuple[bool, str]:
    """(ok, what to tell ops) for the configured models: tells "model not pulled" apart
    from "server down", using /api/tags."""
    if model is None:
        return True, "no model configured ([ollama] model): pattern suggestions only"
    try:
        have = model.models()
    except ModelError as exc:
        return False, f"{exc}; events get pattern suggestions until it is back"
    missing = [n for n in names if _tag(n) not in {_tag(h) for h in have}]
    if missing:
        return False, (f"Ollama at {model.url} is up but does not have {', '.join(missing)} "
                       f"(run `ollama pull {missing[0]}`; it has: {', '.join(have) or 'no models'})")
    return True, f"Ollama at {model.url} has {', '.join(names)}"


def _tag(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def model_names(settings: Settings) -> list[str]:
    names = [settings.ollama.model] + [d.model for d in settings.domains.values() if d.model]
    return list(dict.fromkeys(n for n in names if n))


def run_cycle(app: App, *, dry_run: bool = False) -> CycleReport | None:
    """One poll; Zabbix being unreachable is logged and left for the next poll."""
    try:
        report = app.pipeline.run_once(dry_run=dry_run)
    except ZabbixUnavailable as exc:
        log.warning("zabbix unavailable; will retry at the next poll", error=str(exc))
        return None
    if report.fetched or report.deferred:
        log.info("cycle done", **report.as_dict())
    return report


def serve_forever(app: App) -> int:
    """The daemon: poll every ``intake.poll_interval`` seconds until SIGTERM/SIGINT.

    Returns the exit status: 1 when the state store became unusable (without it
    exactly-once cannot be kept, so the daemon stops and systemd reports it).
    """
    scheduler = BlockingScheduler(job_defaults={"coalesce": True, "max_instances": 1,
                                                "misfire_grace_time": None})
    status = {"code": 0}

    def job() -> None:
        try:
            run_cycle(app)
        except StateError as exc:
            log.error("state store unusable; stopping", error=str(exc))
            status["code"] = 1
            scheduler.shutdown(wait=False)
        except HefestusError as exc:  # e.g. a configured host group is gone: say so, keep polling
            log.error("cycle failed", error=str(exc))

    scheduler.add_job(job, "interval", seconds=app.settings.intake.poll_interval, id="poll",
                      next_run_time=datetime.now(UTC))

    def stop(signum: int, _: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        scheduler.shutdown(wait=True)  # lets a cycle in flight finish its write

    def hup(_: int, __: FrameType | None) -> None:
        app.knowledge.reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
    log.info("hefestus running", poll_interval=app.settings.intake.poll_interval,
             state=str(app.settings.state_path), analysis=app.settings.analysis.mode)
    if app.analyzer.enabled:
        ok, detail = model_status(app.model, model_names(app.settings))
        (log.info if ok else log.warning)("model check", detail=detail)
    scheduler.start()
    app.close()
    log.info("stopped")
    return status["code"]
