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

from .adapters.zabbix import ZabbixClient
from .classify import Knowledge, load_knowledge
from .config import Settings
from .errors import ConfigError, HefestusError, StateError, ZabbixUnavailable
from .pipeline import CycleReport, Pipeline
from .store import Store

log = structlog.get_logger("hefestus")


class KnowledgeHolder:
    """The live rules and patterns; swapped whole on reload, never half-updated."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._current = load_knowledge(settings.rules_dir, settings.patterns_dir)
        self._lock = threading.Lock()

    def __call__(self) -> Knowledge:
        return self._current

    def reload(self) -> bool:
        """Build a new set; on any error keep the old one and say why."""
        try:
            fresh = load_knowledge(self._settings.rules_dir, self._settings.patterns_dir)
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


def build(settings: Settings) -> App:
    knowledge = KnowledgeHolder(settings)
    zabbix = ZabbixClient(settings.zabbix)
    store = Store(settings.state_path)
    pipeline = Pipeline(zabbix, store, knowledge, intake=settings.intake, ack=settings.acknowledge,
                        ledger_days=settings.state.ledger_days)
    return App(settings, zabbix, store, knowledge, pipeline)


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
             state=str(app.settings.state_path))
    scheduler.start()
    app.store.close()
    log.info("stopped")
    return status["code"]
