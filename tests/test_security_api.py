"""Issue 12, the HTTP API under abuse: bounded metric labels, bounded connections and
deadlines, a log that does not explode, and pushes that cannot make Hefestus hammer Zabbix.
Each test is a reproduction from the issue, now fixed; all run in a few seconds.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import structlog
from apscheduler.schedulers.background import BackgroundScheduler
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from hefestus import logs
from hefestus.api.app import ApiSettings, create_app, serve
from hefestus.api.middleware import METHODS
from hefestus.api.server import FD_RESERVE, LIMIT_CONCURRENCY, Server, concurrency_limit
from hefestus.app.daemon import Wakeups
from tests.support.helpers import FakeClock, free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "s3cret-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Service:
    """The smallest ApiService: no dictionaries, pushes recorded."""

    def __init__(self) -> None:
        self.pushed: list[int] = []

    def domains(self) -> dict[str, str]:
        return {"linux": "Linux"}

    def analyze(self, domain: str, error_details: str, context: str) -> Any:
        raise AssertionError("not used here")

    def push(self, eventid: int) -> bool:
        self.pushed.append(eventid)
        return True

    def readiness(self) -> dict[str, tuple[bool, str]]:
        return {"zabbix": (True, "ok")}


def _series(client: TestClient) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    text = client.get("/metrics", headers=AUTH).text
    return {(s.name, tuple(sorted(s.labels.items())))
            for f in text_string_to_metric_families(text) for s in f.samples}


# -- 2. metric labels ----------------------------------------------------------------------


def test_anonymous_requests_with_made_up_methods_create_no_series() -> None:
    """2,000 made-up methods without a token grew /metrics from 227 to 34,227 lines."""
    client = TestClient(create_app(Service(), ApiSettings(token=SecretStr(TOKEN)), metrics=CollectorRegistry()))
    _series(client)  # the scrape's own series exist from here on
    before = _series(client)
    for i in range(300):
        assert client.request(f"M{i:04d}", "/api/domains").status_code == 401
        assert client.get(f"/made/up/{i}").status_code == 401
    assert client.request("Q" * 8000, "/api/domains").status_code == 401
    assert _series(client) == before


def test_every_label_comes_from_a_fixed_set() -> None:
    """With the token (or none configured): methods outside the known set are "other",
    paths that match no route are "unmatched"; the log says the same, paths cut short."""
    client = TestClient(create_app(Service(), ApiSettings(), metrics=CollectorRegistry()))
    with structlog.testing.capture_logs() as captured:
        for i in range(50):
            client.request(f"X{i}", f"/nowhere/{i}")
            client.request("PROPFIND", "/api/domains")
        client.get("/" + "p" * 5000)
        client.get("/api/domains")
    families = text_string_to_metric_families(client.get("/metrics").text)
    labels = {(sample.labels["method"], sample.labels["route"])
              for f in families if f.name == "hefestus_api_requests" for sample in f.samples}
    assert {m for m, _ in labels} <= METHODS | {"other"}
    assert {r for _, r in labels} <= {"unmatched", "/api/domains", "/metrics"}
    assert ("other", "unmatched") in labels and ("GET", "/api/domains") in labels
    assert {e["method"] for e in captured} <= METHODS | {"other"}
    assert max(len(e["path"]) for e in captured) <= 203


# -- 3. connections, deadlines, descriptors -----------------------------------------------

SLOW = (b"POST /api/errors/linux HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n{\"error")


def _reply(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except TimeoutError:
        pass
    return data


def test_slow_clients_do_not_starve_healthz_and_are_cut_at_the_body_deadline() -> None:
    """300 clients send headers and hold the body: they all stayed open; /healthz must answer
    within 1 s, and each slow client gets 408 and a closed connection at the deadline."""
    server = serve(create_app(Service(), ApiSettings(), metrics=CollectorRegistry(), body_deadline=1.0),
                   "127.0.0.1:0", stop_timeout=2)
    clients: list[socket.socket] = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.sendall(SLOW)
            clients.append(s)
        with httpx.Client(timeout=5) as http:
            began = time.monotonic()
            r = http.get(f"{server.url}/healthz")
            assert r.status_code == 200 and time.monotonic() - began < 1.0
        time.sleep(1.0)
        replies = [_reply(s, 2.0) for s in clients]  # ends at EOF: the server closed it
        assert all(r.startswith(b"HTTP/1.1 408 ") for r in replies), {r[:20] for r in replies}
        assert b"request body not received within 1 s" in replies[0]
    finally:
        for s in clients:
            s.close()
        server.stop()


def test_a_connection_that_says_nothing_is_closed_at_the_header_deadline() -> None:
    server = Server(create_app(Service(), ApiSettings(), metrics=CollectorRegistry()), "127.0.0.1:0",
                    stop_timeout=1, header_deadline=0.5).start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as silent:
            began = time.monotonic()
            assert _reply(silent, 3.0) == b"" and time.monotonic() - began < 2.0
    finally:
        server.stop()


def test_the_concurrency_limit_leaves_descriptors_for_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    import resource

    monkeypatch.setattr(resource, "getrlimit", lambda _: (256, 4096))
    assert concurrency_limit() == (256 - FD_RESERVE) // 2
    monkeypatch.setattr(resource, "getrlimit", lambda _: (8192, 8192))  # the unit's LimitNOFILE
    assert concurrency_limit() == LIMIT_CONCURRENCY


_SERVE_LIMITED = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    from prometheus_client import CollectorRegistry
    from hefestus import logs
    from hefestus.api.app import ApiSettings, create_app
    from hefestus.api.server import Server
    from tests.test_security_api import Service
    logs.setup("info", "json")
    server = Server(create_app(Service(), ApiSettings(), metrics=CollectorRegistry()), sys.argv[1])
    print("ready", flush=True)
    server.run()
""")


@pytest.fixture
def limited_server() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """The issue's set-up: the API in a process with ``ulimit -n 256``."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", _SERVE_LIMITED, f"127.0.0.1:{port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n", proc.communicate(timeout=10)
    yield port, proc
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _flood(port: int, n: int, payload: bytes) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if payload:
            s.sendall(payload)
        out.append(s)
    return out


def test_with_256_descriptors_300_slow_clients_still_leave_healthz_an_answer(
        limited_server: tuple[int, subprocess.Popen[bytes]]) -> None:
    """Before: /healthz timed out. The limit (64 here) refuses the excess with 503 at once."""
    port, _ = limited_server
    clients = _flood(port, 300, SLOW)
    try:
        time.sleep(0.3)
        began = time.monotonic()
        r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert r.status_code in (200, 503) and time.monotonic() - began < 1.0
    finally:
        for s in clients:
            s.close()


def test_descriptor_exhaustion_is_logged_once_not_per_accept(
        limited_server: tuple[int, subprocess.Popen[bytes]]) -> None:
    """300 connections that say nothing exhaust 256 descriptors; asyncio then retries accept()
    and logged a traceback each time: 122,683 in 20 s. Now one JSON line per 10 s."""
    port, proc = limited_server
    clients = _flood(port, 300, b"")
    time.sleep(2.5)
    for s in clients:
        s.close()
    proc.terminate()
    _, err = proc.communicate(timeout=15)
    lines = [ln for ln in err.decode().splitlines() if "out of system resource" in ln]
    assert 1 <= len(lines) <= 2, err[-2000:]
    assert lines[0].startswith("{") and '"logger": "asyncio"' in lines[0]
    assert len(err) < 20_000


# -- 8. pushes ----------------------------------------------------------------------------


@pytest.mark.parametrize("eventid", [True, False, None, 1.5, -1, 0, "abc", "12a", "\uff11\uff12", "",
                                     2**53, 2**63, "9" * 25, [1], {"id": 1}])
def test_the_push_eventid_is_a_positive_64_bit_integer(eventid: object) -> None:
    service = Service()
    client = TestClient(create_app(service, ApiSettings(), metrics=CollectorRegistry()))
    r = client.post("/api/zabbix/events", json={"eventid": eventid})
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "eventid"
    assert service.pushed == []


@pytest.mark.parametrize(("eventid", "expected"), [("4521", 4521), (4521, 4521), (4521.0, 4521),
                                                   (2**53 - 1, 2**53 - 1)])
def test_the_push_eventid_as_the_webhook_sends_it(eventid: object, expected: int) -> None:
    service = Service()
    client = TestClient(create_app(service, ApiSettings(), metrics=CollectorRegistry()))
    r = client.post("/api/zabbix/events", json={"eventid": eventid})
    assert r.status_code == 202 and service.pushed == [expected]


def test_wakeups_keep_at_most_one_poll_pending_and_a_gap() -> None:
    clock = FakeClock(100.0)
    scheduled: list[float] = []
    w = Wakeups(scheduled.append, gap=2.0, clock=clock)
    for _ in range(1000):
        w.wake()
    assert scheduled == [0.0] and w.coalesced == 999  # nothing ran yet: poll at once
    w.started()
    for _ in range(10):
        w.wake()  # during the poll: kept for its end (it may have fetched too early)
    assert scheduled == [0.0]
    clock.advance(0.5)
    w.finished()
    assert scheduled == [0.0, 2.0]  # not "now" while the job still counts as running
    w.started()
    clock.advance(0.5)
    w.finished()  # nothing was pushed meanwhile: nothing scheduled
    clock.advance(0.5)
    w.wake()
    assert scheduled == [0.0, 2.0, 1.5]


@pytest.fixture
def bridged() -> Iterator[None]:
    """logs.setup's bridge for APScheduler, uvicorn and asyncio; undone afterwards."""
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in logs.BRIDGED}
    logs.setup("info", "json")
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
    structlog.reset_defaults()


def test_a_burst_of_pushes_costs_one_or_two_polls_and_no_scheduler_warning(bridged: None) -> None:
    """1,000 pushes in 2.5 s meant 586 extra polls and 491 "maximum number of running
    instances" warnings. The daemon's scheduler set-up, with a poll that takes 20 ms."""
    scheduler = BackgroundScheduler(job_defaults={"coalesce": True, "max_instances": 1,
                                                  "misfire_grace_time": None})
    polls: list[float] = []
    wakeups = Wakeups(lambda delay: scheduler.modify_job(
        "poll", next_run_time=datetime.now(UTC) + timedelta(seconds=delay)), gap=0.5)

    def poll() -> None:
        wakeups.started()
        try:
            polls.append(time.monotonic())
            time.sleep(0.02)
        finally:
            wakeups.finished()

    scheduler.add_job(poll, "interval", seconds=3600, id="poll")
    with structlog.testing.capture_logs() as captured:
        scheduler.start()
        try:
            for _ in range(1000):
                wakeups.wake()
                time.sleep(0.0005)
            time.sleep(1.2)
        finally:
            scheduler.shutdown()
    assert 1 <= len(polls) <= 3, len(polls)
    assert all(b - a >= 0.5 for a, b in zip(polls, polls[1:], strict=False))
    assert not [e for e in captured if "maximum number of running instances" in e["event"]]


def test_library_log_lines_go_through_structlog_rate_limited(bridged: None) -> None:
    clock = FakeClock()
    bridge = logs.Bridge(window=10, clock=clock)
    logger = logging.getLogger("apscheduler.executors.default")
    logger.handlers[:], logger.propagate = [bridge], False  # this bridge only, on a fake clock
    try:
        with structlog.testing.capture_logs() as captured:
            for _ in range(1000):
                logger.warning("Execution of job %r skipped: maximum number of running instances "
                               "reached (%d)", "poll", 1)
            clock.advance(11)
            logger.warning("Execution of job %r skipped: maximum number of running instances "
                           "reached (%d)", "poll", 1)
    finally:
        logger.handlers.clear()
        logger.propagate = True
    assert [(e["log_level"], e["logger"], e.get("repeats_not_logged")) for e in captured] == [
        ("warning", "apscheduler.executors.default", None),
        ("warning", "apscheduler.executors.default", 999)]


def test_apscheduler_warnings_reach_the_json_log(bridged: None, capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger("apscheduler.scheduler").warning("Run time of job %r was missed by %s", "poll", "0:00:02")
    err = capsys.readouterr().err
    assert '"logger": "apscheduler.scheduler"' in err and '"level": "warning"' in err
    assert "Run time of job 'poll' was missed" in err


def test_concurrent_wakeups_schedule_once() -> None:
    scheduled: list[float] = []
    w = Wakeups(scheduled.append, gap=1.0)
    def burst() -> None:
        for _ in range(200):
            w.wake()

    threads = [threading.Thread(target=burst) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(scheduled) == 1 and w.coalesced == 1599
