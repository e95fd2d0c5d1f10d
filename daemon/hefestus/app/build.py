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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

import structlog
from apscheduler.schedulers.blocking import BlockingScheduler
from prometheus_client import CollectorRegistry

from hefestus.adapters.ollama import OllamaModel
from hefestus.adapters.rundeck import RundeckClient
from hefestus.adapters.slack import SlackNotifier
from hefestus.adapters.teams import TeamsNotifier
from hefestus.adapters.zabbix import ZabbixClient
from hefestus.analysis.analyzer import Analyzer, compile_profiles
from hefestus.analysis.prompt import Profile
from hefestus.api.backend import ApiBackend, HealthBoard
from hefestus.api.metrics import DaemonCollector, Totals
from hefestus.classify.knowledge import Knowledge, load_knowledge
from hefestus.config import Settings, load_settings
from hefestus.errors import ConfigError, HefestusError, ModelError, StateError, ZabbixUnavailable
from hefestus.notify.announcer import Announcer
from hefestus.notify.dispatcher import Dispatcher, Notifier
from hefestus.pipeline.cycle import CycleReport, Pipeline, Planned
from hefestus.redact import Redactor
from hefestus.remediation.remediator import Outcome, Remediator, check_jobs
from hefestus.state.store import Store

log = structlog.get_logger("hefestus")


#: Sections a reload applies; the others need a restart (they shape connections and threads).
RELOADABLE = frozenset({"classification", "domains"})


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
        self._current = self._load(settings)
        self._lock = threading.Lock()

    @property
    def settings(self) -> Settings:
        return self._settings

    @staticmethod
    def _load(s: Settings) -> Knowledge:
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
            settings = load_settings(self._settings.source, self._env)
            fresh = self._load(settings)
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
        log.info("configuration, rules and patterns reloaded", domains=fresh.catalog.domains,
                 rules=len(fresh.router.rules), applied=", ".join(f"[{n}]" for n in applied) or "-")
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
    health: HealthBoard
    totals: Totals
    dispatcher: Dispatcher | None
    remediator: Remediator
    rundeck: RundeckClient | None

    def close(self) -> None:
        self.remediator.stop(10)
        self.analyzer.close()
        if self.dispatcher is not None:
            self.dispatcher.close(self.settings.notify.shutdown_timeout)
        if self.rundeck is not None:
            self.rundeck.close()
        self.store.close()

    def check_rundeck(self) -> tuple[bool, str]:
        """(ok, detail) for readiness and the start-up log: token, API version, mapped jobs."""
        lines = check_jobs(self.rundeck, self.knowledge().remediation, mode=self.settings.remediation.mode,
                           api_version=self.settings.rundeck.api_version if self.settings.rundeck else 0)
        for status, what, detail in lines:
            (log.warning if status != "ok" else log.info)("rundeck check", status=status, what=what,
                                                          detail=detail)
        failed = [f"{what}: {detail}" for status, what, detail in lines if status == "FAIL"]
        return (not failed, "; ".join(failed) if failed
                else f"mode {self.settings.remediation.mode}, {len(lines)} check(s) passed")

    def backend(self, wake: Callable[[], None] | None = None) -> ApiBackend:
        return ApiBackend(self.knowledge, self.analyzer, self.health, model_check=self.model_check,
                          wake=wake)

    def model_check(self) -> tuple[bool, str]:
        if not self.analyzer.enabled:
            return True, f"not used (analysis.mode = {self.settings.analysis.mode!r}, model {self.settings.ollama.model!r})"
        return model_status(self.model, model_names(self.settings))

    def collector(self) -> DaemonCollector:
        return DaemonCollector(self.totals, analysis=lambda: self.analyzer.stats,
                               notifiers=self.dispatcher.stats if self.dispatcher else None,
                               extra=lambda: {"hefestus_remediations": self.store.audit_counts()})


def build_analyzer(settings: Settings, knowledge: KnowledgeHolder, store: Store,
                   redactor: Redactor) -> tuple[Analyzer, OllamaModel | None]:
    model = OllamaModel(settings.ollama) if settings.ollama.model else None

    def description(domain: str) -> str:
        catalog = knowledge().catalog
        return catalog[domain].description if domain in catalog else ""

    def profiles(domain: str) -> Profile:  # [domains.X] follows reloads
        return compile_profiles(settings.ollama, knowledge.settings.domains, description)(domain)

    analyzer = Analyzer(settings=settings.analysis, ollama=settings.ollama, profiles=profiles,
                        model=model, cache=store, redact=redactor)
    return analyzer, model


def build_dispatcher(settings: Settings, redactor: Redactor) -> Dispatcher | None:
    """Slack and Teams, each only when its webhook URL is set; None when neither is."""
    notifiers: list[Notifier] = []
    sl, tm, n = settings.slack, settings.teams, settings.notify
    if sl.webhook_url is not None:
        notifiers.append(SlackNotifier(sl.webhook_url, timeout=sl.timeout, connect_timeout=sl.connect_timeout,
                                       verify_tls=sl.verify_tls, link_as_button=sl.link_as_button))
    if tm.webhook_url is not None:
        notifiers.append(TeamsNotifier(tm.webhook_url, timeout=tm.timeout, connect_timeout=tm.connect_timeout,
                                       verify_tls=tm.verify_tls))
    if not notifiers:
        return None
    return Dispatcher(notifiers, redact=redactor, queue_size=n.queue_size, attempts=n.attempts,
                      backoff=n.backoff, max_backoff=n.max_backoff, max_elapsed=n.max_elapsed)


def build(settings: Settings) -> App:
    redactor = Redactor(settings.redaction.patterns)
    knowledge = KnowledgeHolder(settings)
    zabbix = ZabbixClient(settings.zabbix)
    store = Store(settings.state_path)
    analyzer, model = build_analyzer(settings, knowledge, store, redactor)
    dispatcher = build_dispatcher(settings, redactor)
    on_written = None
    on_outcome = None
    if dispatcher is not None:
        announcer = Announcer(dispatcher, lambda: knowledge().notify, configured=dispatcher.names,
                              frontend_url=settings.notify.frontend_url or settings.zabbix.url)

        def on_written(plans: list[Planned]) -> None:
            for p in plans:
                if p.suggestion is not None:
                    announcer.remember(p.problem, p.suggestion)
                    announcer.announce(p.problem, p.suggestion)

        def on_outcome(o: Outcome) -> None:
            job = f"Rundeck job '{o.job_name}' ({o.project})" if o.job_name else f"rule {o.rule!r}"
            announcer.outcome(o.eventid, o.result, f"{job} {o.permalink}".strip())

    # Built even in mode "off": runs left in flight by a previous process are still followed.
    rundeck = RundeckClient(settings.rundeck) if settings.rundeck is not None else None
    remediator = Remediator(settings.remediation, lambda: knowledge().remediation, rundeck, zabbix, store,
                            redact=redactor, on_outcome=on_outcome, ack_action=settings.acknowledge.action_bits,
                            max_length=settings.acknowledge.max_length)
    pipeline = Pipeline(zabbix, store, knowledge, intake=settings.intake, ack=settings.acknowledge,
                        ledger_days=settings.state.ledger_days, analysis=analyzer, redact=redactor,
                        on_written=on_written, remediation=remediator)
    return App(settings, zabbix, store, knowledge, pipeline, analyzer, model, HealthBoard(), Totals(),
               dispatcher, remediator, rundeck)


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
        app.health.set("zabbix", False, str(exc))
        app.totals.error("zabbix")
        return None
    app.health.set("zabbix", True, f"{app.settings.zabbix.url}: last poll fetched {report.fetched} event(s)")
    if not dry_run:
        app.totals.add(report)
    if report.fetched or report.deferred:
        log.info("cycle done", **report.as_dict())
    return report


def serve_forever(app: App) -> int:
    """The daemon: poll every ``intake.poll_interval`` seconds until SIGTERM/SIGINT.

    Returns the exit status: 1 when the state store became unusable (without it
    exactly-once cannot be kept, so the daemon stops and systemd reports it).
    """
    from hefestus.api.app import create_app, serve
    from hefestus.app.systemd import Systemd

    settings = app.settings
    scheduler = BlockingScheduler(job_defaults={"coalesce": True, "max_instances": 1,
                                                "misfire_grace_time": None})
    status = {"code": 0}
    systemd = Systemd()

    def job() -> None:
        try:
            report = run_cycle(app)
            systemd.status(f"last poll {datetime.now(UTC):%H:%M:%S} UTC: "
                           + ("zabbix unavailable" if report is None else
                              f"{report.fetched} fetched, {report.acknowledged} acknowledged"))
        except StateError as exc:
            log.error("state store unusable; stopping", error=str(exc))
            status["code"] = 1
            scheduler.shutdown(wait=False)
        except HefestusError as exc:  # e.g. a configured host group is gone: say so, keep polling
            log.error("cycle failed", error=str(exc))
        finally:
            systemd.progress()

    scheduler.add_job(job, "interval", seconds=settings.intake.poll_interval, id="poll",
                      next_run_time=datetime.now(UTC))
    if systemd.watchdog_seconds:
        # A cycle may take one poll interval plus a slow Zabbix and a slow model: allow for both.
        budget = (settings.intake.poll_interval + settings.zabbix.timeout * settings.zabbix.retries
                  + settings.ollama.timeout * 2 + systemd.watchdog_seconds)
        scheduler.add_job(lambda: systemd.ping_if_alive(budget), "interval",
                          seconds=max(systemd.watchdog_seconds / 2, 1), id="watchdog")

    api_server = None
    if settings.api.enabled:
        registry = CollectorRegistry()
        registry.register(app.collector())
        def wake() -> None:
            """Run the poll job now; with max_instances=1 a running cycle finishes first."""
            scheduler.modify_job("poll", next_run_time=datetime.now(UTC))

        api_server = serve(create_app(app.backend(wake), settings.api, metrics=registry), settings.api.listen,
                           stop_timeout=settings.api.stop_timeout)
        log.info("api listening", url=api_server.url)

    def stop(signum: int, _: FrameType | None) -> None:
        log.info("stopping", signal=signal.Signals(signum).name)
        systemd.stopping()
        scheduler.shutdown(wait=True)  # lets a cycle in flight finish its write

    def hup(_: int, __: FrameType | None) -> None:
        systemd.status("reloading rules and patterns")
        app.knowledge.reload()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, hup)
    log.info("hefestus running", poll_interval=settings.intake.poll_interval,
             state=str(settings.state_path), analysis=settings.analysis.mode)
    if app.analyzer.enabled:
        ok, detail = app.model_check()
        app.health.set("model", ok, detail)
        (log.info if ok else log.warning)("model check", detail=detail)
    if app.rundeck is not None or app.knowledge().remediation.rules:
        app.health.set("rundeck", *app.check_rundeck())
    resumed = app.remediator.resume()
    if any(resumed.values()):
        log.info("remediation resumed", **resumed)
    scheduler.add_job(lambda: app.remediator.prune(settings.state.ledger_days), "interval", hours=1,
                      id="prune-remediation")
    systemd.ready(f"polling {settings.zabbix.url} every {settings.intake.poll_interval:g} s")
    try:
        scheduler.start()
    finally:
        if api_server is not None:
            api_server.stop()
        app.close()
    log.info("stopped")
    return status["code"]
