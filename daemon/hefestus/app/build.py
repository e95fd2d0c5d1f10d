"""The composition root: settings -> adapters -> stages -> the pipeline.

The only place that builds real adapters (Zabbix, Ollama, Rundeck, Slack,
Teams) and hands each component its own settings and its own repository of
the state store. The pipeline's stages after classification are wired here,
in their order:

    Pipeline(zabbix, ledger, knowledge,
             analysis=Analyzer(model, answer cache),
             remediation=Remediator(rundeck, zabbix, remediation records),
             after_write=[HandOffRemediation(remediator), Announce(announcer)],
             unclassified=unclassified kinds (the teach loop))

`hefestus run` builds an :class:`App` with :func:`build`; `serve`, `analyze`,
`check`, `state` and `remediation` use the smaller builders below, so the CLI
never constructs an adapter itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import structlog

from hefestus.adapters.ollama import OllamaModel
from hefestus.adapters.rundeck import RundeckClient
from hefestus.adapters.slack import SlackNotifier
from hefestus.adapters.teams import TeamsNotifier
from hefestus.adapters.zabbix import ZabbixClient
from hefestus.analysis.analyzer import Analyzer, AnswerStore, MemoryCache, compile_profiles
from hefestus.analysis.prompt import Profile
from hefestus.api.backend import ApiBackend, HealthBoard
from hefestus.api.metrics import DaemonCollector, Totals
from hefestus.app.checks import model_names, model_status, run_checks, rundeck_status
from hefestus.app.leader import Leadership, SoleInstance, check_line
from hefestus.app.reload import KnowledgeHolder
from hefestus.config import Settings
from hefestus.notify.announcer import Announcer
from hefestus.notify.dispatcher import Dispatcher
from hefestus.notify.message import Notifier
from hefestus.pipeline.after_write import Announce, HandOffRemediation
from hefestus.pipeline.cycle import Pipeline
from hefestus.pipeline.ports import AfterWrite
from hefestus.redact import Redactor
from hefestus.remediation.checks import CheckLine
from hefestus.remediation.remediator import Remediator
from hefestus.state import State, open_state
from hefestus.state.lease import Lease, default_instance_id

log = structlog.get_logger("hefestus")


@dataclass
class App:
    settings: Settings
    zabbix: ZabbixClient
    state: State
    knowledge: KnowledgeHolder
    pipeline: Pipeline
    analyzer: Analyzer
    model: OllamaModel | None
    health: HealthBoard
    totals: Totals
    dispatcher: Dispatcher | None
    remediator: Remediator
    rundeck: RundeckClient | None
    #: The one redactor every way out shares (messages, logs, model, notifications, API).
    redactor: Redactor
    #: Leader or standby among the instances sharing a PostgreSQL state (always leader on SQLite).
    leadership: Leadership | SoleInstance = field(default_factory=SoleInstance)

    def close(self) -> None:
        self.remediator.stop(10)
        self.analyzer.close()
        if self.dispatcher is not None:
            self.dispatcher.close(self.settings.notify.shutdown_timeout)
        if self.rundeck is not None:
            self.rundeck.close()
        self.state.close()

    def check_rundeck(self) -> tuple[bool, str]:
        """(ok, detail) for readiness and the start-up log: token, API version, mapped jobs."""
        return rundeck_status(self.rundeck, self.knowledge.remediation_rules(), self.settings)

    def backend(self, wake: Callable[[], None] | None = None) -> ApiBackend:
        return ApiBackend(self.knowledge, self.analyzer, self.health, model_check=self.model_check,
                          wake=wake, redact=self.redactor)

    def model_check(self) -> tuple[bool, str]:
        if not self.analyzer.enabled:
            return True, f"not used (analysis.mode = {self.settings.analysis.mode!r}, model {self.settings.ollama.model!r})"
        return model_status(self.model, model_names(self.settings))

    def collector(self) -> DaemonCollector:
        return DaemonCollector(self.totals, analysis=lambda: self.analyzer.stats,
                               notifiers=self.dispatcher.stats if self.dispatcher else None,
                               extra=lambda: {"hefestus_remediations": self.state.remediations.audit_counts()},
                               leadership=lambda: (self.leadership.is_leader, self.leadership.stats))


def build_model(settings: Settings) -> OllamaModel | None:
    return OllamaModel(settings.ollama) if settings.ollama.model else None


def build_rundeck(settings: Settings) -> RundeckClient | None:
    return RundeckClient(settings.rundeck) if settings.rundeck is not None else None


def build_zabbix(settings: Settings) -> ZabbixClient:
    return ZabbixClient(settings.zabbix, hefestus_users=settings.zabbix.hefestus_users)


def open_store(settings: Settings) -> State:
    """The state (a SQLite file, or PostgreSQL with [state] url), opened once; each component
    gets its own repository of it."""
    return open_state(settings.state.model_copy(update={"path": settings.state_path}))


def build_leadership(settings: Settings, state: State) -> Leadership | SoleInstance:
    """A shared (PostgreSQL) state gets a leader lease, and its fence on every intent to act."""
    db = state.database
    if db.dialect != "postgresql":
        return SoleInstance()
    s = settings.state
    leadership = Leadership(Lease(db, s.instance or default_instance_id(), s.lease_ttl),
                            heartbeat=s.lease_heartbeat)
    db.fence = leadership.fence
    return leadership


def guard_actions(leadership: Leadership | SoleInstance, zabbix: ZabbixClient,
                  rundeck: RundeckClient | None) -> None:
    """Shared state: every Zabbix write and Rundeck run first asks the lease (Leadership.guard)."""
    if isinstance(leadership, Leadership):
        zabbix.write_guard = leadership.guard
        if rundeck is not None:
            rundeck.run_guard = leadership.guard


def leader_line(state: State, settings: Settings) -> str | None:
    """Who leads the instances sharing this (PostgreSQL) state, and how fresh the lease is;
    None for SQLite, which allows one instance only."""
    if state.database.dialect != "postgresql":
        return None
    s = settings.state
    return check_line(Lease(state.database, s.instance or default_instance_id(), s.lease_ttl))


def build_analyzer(settings: Settings, knowledge: KnowledgeHolder, cache: AnswerStore,
                   redactor: Redactor) -> tuple[Analyzer, OllamaModel | None]:
    model = build_model(settings)

    def description(domain: str) -> str:
        catalog = knowledge().catalog
        return catalog[domain].description if domain in catalog else ""

    def profiles(domain: str) -> Profile:  # [domains.X] follows reloads
        return compile_profiles(settings.ollama, knowledge.settings.domains, description)(domain)

    analyzer = Analyzer(settings=settings.analysis, ollama=settings.ollama, profiles=profiles,
                        model=model, cache=cache, redact=redactor)
    return analyzer, model


def build_offline(settings: Settings) -> tuple[KnowledgeHolder, Analyzer, OllamaModel | None, Redactor]:
    """For `analyze` and `serve`: no Zabbix, no state file (answers cached in memory)."""
    redactor = Redactor(settings.redaction.patterns)
    knowledge = KnowledgeHolder(settings)
    analyzer, model = build_analyzer(settings, knowledge, MemoryCache(), redactor)
    return knowledge, analyzer, model, redactor


def checks(settings: Settings) -> Iterator[CheckLine]:
    """`hefestus check`: every dependency built as the daemon would, then asked."""
    rules = KnowledgeHolder(settings)
    state = open_store(settings)
    try:
        line = f"{state.database.describe()} (cursor {state.ledger.cursor})"
        lead = leader_line(state, settings)
    finally:
        state.close()
    yield from run_checks(settings, rules(), rules.remediation_rules(), model=build_model(settings), rundeck=build_rundeck(settings),
                          zabbix=build_zabbix(settings), state=line + (f"; {lead}" if lead else ""))


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
    zabbix = build_zabbix(settings)
    state = open_store(settings)
    analyzer, model = build_analyzer(settings, knowledge, state.answers, redactor)
    dispatcher = build_dispatcher(settings, redactor)
    announcer = None
    if dispatcher is not None:
        announcer = Announcer(dispatcher, knowledge.notify_rules, configured=dispatcher.names,
                              frontend_url=settings.notify.frontend_url or settings.zabbix.url)
    # Built even in mode "off": runs left in flight by a previous process are still followed.
    rundeck = build_rundeck(settings)
    remediator = Remediator(settings.remediation, knowledge.remediation_rules, rundeck, zabbix,
                            state.remediations, redact=redactor, ack_action=settings.acknowledge.action_bits,
                            on_outcome=announcer.remediation_outcome if announcer else None,
                            max_length=settings.acknowledge.max_length)
    # After the message is written, in this order: the run goes to the engine's workers,
    # then Slack and Teams hear of it.
    after_write: list[AfterWrite] = [HandOffRemediation(remediator)]
    if announcer is not None:
        after_write.append(Announce(announcer))
    leadership = build_leadership(settings, state)
    pipeline = Pipeline(zabbix, state.ledger, knowledge, intake=settings.intake, ack=settings.acknowledge,
                        ledger_days=settings.state.ledger_days, analysis=analyzer, redact=redactor,
                        remediation=remediator, after_write=after_write, unclassified=state.unclassified,
                        others_may_write=leadership.predecessor_alive if leadership.backend_shared else None)
    guard_actions(leadership, zabbix, rundeck)
    return App(settings, zabbix, state, knowledge, pipeline, analyzer, model, HealthBoard(), Totals(),
               dispatcher, remediator, rundeck, redactor, leadership)
