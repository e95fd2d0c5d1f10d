"""The daemon's life cycle: an APScheduler interval job that never overlaps itself,
the API beside it, a reload of rules and patterns on SIGHUP that keeps the last good
set when the new one is broken, systemd notifications, and a graceful stop on
SIGTERM/SIGINT that lets the running cycle finish its write. Pushes from the Zabbix
webhook wake the poller through :class:`Wakeups`, which coalesces them.

Several instances may share one PostgreSQL state: a heartbeat job keeps this process's
role (:mod:`hefestus.app.leader`). Only the leader polls, writes and runs jobs; a standby
serves its API and probes and takes over when the leader's lease runs out. A leader that
loses its lease exits with :data:`~hefestus.app.leader.EXIT_LEADERSHIP_LOST` for systemd
to restart it as a standby."""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import FrameType

import structlog
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers import SchedulerNotRunningError
from apscheduler.schedulers.blocking import BlockingScheduler
from prometheus_client import CollectorRegistry

from hefestus.api.backend import ApiBackend, HealthBoard
from hefestus.api.metrics import DaemonCollector, Totals
from hefestus.app.build import App, build_offline
from hefestus.app.checks import model_names, model_status
from hefestus.app.leader import EXIT_LEADERSHIP_LOST
from hefestus.config import ApiSettings, Settings
from hefestus.errors import HefestusError, StateError, StateUnavailable, ZabbixUnavailable
from hefestus.pipeline.plan import CycleReport
from hefestus.state.lease import LeaseLost

log = structlog.get_logger("hefestus")

#: Seconds from the end of one poll to a poll a push asks for (capped by poll_interval). 0:
#: coalescing alone bounds the polls (at most one pending, never two at once), and a push that
#: came in while a poll ran is served as soon as that poll ends. A burst of 100 pushed problems
#: waited 2.8-3.6 s (p50) for its messages with 2 s, 0.9-1.4 s with 0 (bench/storm_bench.py
#: --push-min-gap, on the dev Zabbix 7.0).
PUSH_MIN_GAP = 0.0


class Wakeups:
    """Push wake-ups, coalesced: at most one poll pending, starting at least ``gap`` seconds
    after the previous poll ended.

    An outage raises hundreds of problems at once, and each sends a webhook; one poll per
    push meant 586 extra ``event.get`` calls for 1,000 pushes, and hundreds of APScheduler
    "maximum number of running instances" warnings. Now a wake-up while a poll is pending
    is dropped (that poll will fetch the event), and one while a poll runs is kept for when
    it ends (the running poll may have fetched before the event existed). The poll job
    reports :meth:`started` and :meth:`finished`. Nothing is ever scheduled for "now" while
    a poll runs, so the scheduler never has to refuse a second instance.
    """

    def __init__(self, schedule: Callable[[float], None], *, gap: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._schedule, self._gap, self._clock = schedule, gap, clock
        self._lock = threading.Lock()
        self._pending = self._running = False
        self._ended = -math.inf
        #: Wake-ups that found a poll already pending (for tests and the log).
        self.coalesced = 0

    def wake(self) -> None:
        with self._lock:
            if self._pending:
                self.coalesced += 1
                return
            self._pending = True
            if self._running:
                return
            delay = self._delay()
        self._schedule(delay)

    def started(self) -> None:
        with self._lock:
            self._pending, self._running = False, True

    def finished(self) -> None:
        with self._lock:
            self._running, self._ended = False, self._clock()
            if not self._pending:
                return
            delay = self._delay()
        self._schedule(delay)

    def _delay(self) -> float:
        return max(0.0, self._ended + self._gap - self._clock())


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

    def reschedule(delay: float) -> None:
        try:
            scheduler.modify_job("poll", next_run_time=datetime.now(UTC) + timedelta(seconds=delay))
        except (JobLookupError, SchedulerNotRunningError):
            pass  # stopping: the push is caught by the next start's poll

    wakeups = Wakeups(reschedule, gap=min(PUSH_MIN_GAP, settings.intake.poll_interval))
    leadership = app.leadership

    def step_down() -> None:
        status["code"] = EXIT_LEADERSHIP_LOST
        app.health.set("leadership", False, leadership.describe())
        scheduler.shutdown(wait=False)

    def lead() -> None:
        """Just elected (or the sole instance): follow what the previous leader left in flight."""
        app.health.set("leadership", True, leadership.describe())
        app.remediator.resume()  # logs what it picked up

    def heartbeat() -> None:
        transition = leadership.tick()
        if transition == "lost":
            step_down()
            return
        app.health.set("leadership", True, leadership.describe())
        if not leadership.is_leader:  # /readyz: a standby is ready; the leader's probe speaks for Zabbix
            app.health.set("zabbix", True, "not polled by a standby: the leader does")
        if transition == "promoted":
            lead()
            wakeups.wake()  # a new leader polls at once, not after poll_interval

    def job() -> None:
        wakeups.started()
        try:
            if not leadership.is_leader:
                return  # a standby never talks to Zabbix; the heartbeat may promote it
            report = run_cycle(app)
            systemd.status(f"last poll {datetime.now(UTC):%H:%M:%S} UTC: "
                           + ("zabbix unavailable" if report is None else
                              f"{report.fetched} fetched, {report.acknowledged} acknowledged"))
        except LeaseLost as exc:
            log.error("lost the leader lease during a cycle; stopping", error=str(exc))
            step_down()
        except StateUnavailable as exc:  # PostgreSQL restarting or unreachable: the next poll retries
            log.warning("state database unavailable; will retry at the next poll", error=str(exc))
            app.totals.error("state")
        except StateError as exc:
            log.error("state store unusable; stopping", error=str(exc))
            status["code"] = 1
            scheduler.shutdown(wait=False)
        except HefestusError as exc:  # e.g. a configured host group is gone: say so, keep polling
            log.error("cycle failed", error=str(exc))
        finally:
            systemd.progress()
            wakeups.finished()

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
        api_server = serve(create_app(app.backend(wakeups.wake), settings.api, metrics=registry),
                           settings.api.listen,
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
             state=app.state.database.describe(), analysis=settings.analysis.mode)
    if app.analyzer.enabled:
        ok, detail = app.model_check()
        app.health.set("model", ok, detail)
        (log.info if ok else log.warning)("model check", detail=detail)
    if app.rundeck is not None or app.knowledge.remediation_rules().rules:
        app.health.set("rundeck", *app.check_rundeck())
    if leadership.backend_shared:
        heartbeat()  # promoted at once when the lease is free
        scheduler.add_job(heartbeat, "interval", seconds=leadership.heartbeat, id="lease")
        log.info("leader election", role=leadership.describe())
    else:
        lead()
    scheduler.add_job(lambda: leadership.is_leader and app.remediator.prune(settings.state.ledger_days),
                      "interval", hours=1, id="prune-remediation")
    systemd.ready(f"polling {settings.zabbix.url} every {settings.intake.poll_interval:g} s"
                  + ("" if leadership.is_leader else " when elected leader (standby now)"))
    try:
        if status["code"] == 0:
            scheduler.start()
    finally:
        if api_server is not None:
            api_server.stop()
        if status["code"] != EXIT_LEADERSHIP_LOST:
            leadership.release()
        app.close()
    log.info("stopped")
    return status["code"]


def run_once(app: App) -> CycleReport | None:
    """`run --once`: follow runs a previous process left in flight (never rerun them), one
    cycle, close."""
    try:
        if not app.leadership.is_leader and app.leadership.tick() != "promoted":
            log.info("standby: another instance leads; nothing done", role=app.leadership.describe())
            return CycleReport()
        app.remediator.resume()
        return run_cycle(app)
    finally:
        app.leadership.release()
        app.close()


def serve_api(settings: Settings, api: ApiSettings, *, listening: Callable[[str], None]) -> int:
    """`hefestus serve`: the HTTP API alone, without polling Zabbix (for teams that only want
    the CI-pipeline endpoint). SIGHUP reloads rules and patterns, as in the daemon."""
    from hefestus.api.app import create_app
    from hefestus.api.server import Server

    knowledge, analyzer, model, redactor = build_offline(settings)
    health = HealthBoard()
    health.set("zabbix", True, "not used: `hefestus serve` answers the API only")
    backend = ApiBackend(knowledge, analyzer, health, redact=redactor, model_check=(
        (lambda: model_status(model, model_names(settings))) if analyzer.enabled else None))
    registry = CollectorRegistry()
    registry.register(DaemonCollector(Totals(), analysis=lambda: analyzer.stats))
    server = Server(create_app(backend, api, metrics=registry), api.listen, stop_timeout=api.stop_timeout)
    signal.signal(signal.SIGHUP, lambda *_: knowledge.reload())
    listening(server.url)
    try:
        server.run()
    finally:
        analyzer.close()
    return 0
