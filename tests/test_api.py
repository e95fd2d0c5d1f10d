"""The HTTP API: seed-compatible answers, every error as JSON, auth, limits, probes, metrics,
offline Swagger UI, conformance to its own OpenAPI document, and the real uvicorn server."""

from __future__ import annotations

import re
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
import schemathesis
import structlog
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from hefestus.api.app import ApiSettings, create_app, serve
from hefestus.api.server import Server
from hefestus.classify.knowledge import Knowledge, load_knowledge
from hefestus.config.api import parse_listen
from hefestus.errors import ConfigError, StateError
from hefestus.values import Suggestion
from tests.support.paths import DATA

with warnings.catch_warnings():  # starlette asks for httpx2 in its TestClient; httpx still works
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

TOKEN = "s3cret-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TOO_MANY = "FATAL:  sorry, too many clients already"


class FakeService:
    """Pattern-only answers from a real Knowledge; readiness and failures set by each test."""

    def __init__(self, knowledge: Knowledge) -> None:
        self.knowledge = knowledge
        self.calls: list[tuple[str, str, str]] = []
        self.ready: dict[str, tuple[bool, str]] = {"zabbix": (True, "API 6.0.30"),
                                                   "model": (True, "Ollama has qwen2.5:3b")}
        self.fail: Exception | None = None
        self.pushed: list[int] = []
        self.polls = True

    def push(self, eventid: int) -> bool:
        self.pushed.append(eventid)
        return self.polls

    def domains(self) -> dict[str, str]:
        catalog = self.knowledge.catalog
        return {d: catalog[d].description for d in catalog.domains}

    def analyze(self, domain: str, error_details: str, context: str) -> Suggestion:
        self.calls.append((domain, error_details, context))
        if self.fail is not None:
            raise self.fail
        return Suggestion.from_pattern(self.knowledge.analyze(error_details, domain))

    def readiness(self) -> dict[str, tuple[bool, str]]:
        return dict(self.ready)


@pytest.fixture
def service(test_knowledge: Knowledge) -> FakeService:
    return FakeService(test_knowledge)


def make_client(service: FakeService, **settings: Any) -> TestClient:
    app = create_app(service, ApiSettings(enabled=True, **settings), metrics=CollectorRegistry())
    return TestClient(app)


@pytest.fixture
def client(service: FakeService) -> TestClient:
    return make_client(service)


@pytest.fixture
def guarded(service: FakeService) -> TestClient:
    return make_client(service, token=TOKEN)


# -- the seed's endpoint --------------------------------------------------------------------


def test_answer_keeps_the_seed_shape_first(client: TestClient, service: FakeService) -> None:
    """error.causa / error.solucao / message come first, as the seed's CI scripts read them."""
    r = client.post("/api/errors/database", json={"error_details": TOO_MANY, "context": "nightly ETL"})
    assert r.status_code == 200
    body = r.json()
    assert list(body)[:2] == ["error", "message"]
    assert body == {
        "error": {"causa": "PostgreSQL reached max_connections.",
                  "solucao": "1. SELECT count(*) FROM pg_stat_activity;"},
        "message": "Resolution retrieved successfully", "domain": "database",
        "category": "too-many-connections", "source": "pattern database:pg-too-many-clients",
        "confidence": 0.95, "cause": "PostgreSQL reached max_connections.",
        "solution": ["SELECT count(*) FROM pg_stat_activity;"], "note": ""}
    assert service.calls == [("database", TOO_MANY, "nightly ETL")]


def test_unclassified_text_has_null_category_and_numbered_fallback_steps(client: TestClient) -> None:
    """Nothing matched: category is null (not a guess) and solucao numbers the triage steps."""
    r = client.post("/api/errors/linux", json={"error_details": "something odd happened"})
    body = r.json()
    assert r.status_code == 200 and body["category"] is None and body["source"] == "no pattern"
    assert body["error"]["solucao"] == "1. journalctl -p err -b\n2. dmesg -T | tail"
    assert body["solution"] == ["journalctl -p err -b", "dmesg -T | tail"]


def test_context_defaults_to_empty(client: TestClient, service: FakeService) -> None:
    """context is optional; keys the seed's scripts may add are ignored, not refused."""
    r = client.post("/api/errors/linux", json={"error_details": "disk: No space left on device",
                                               "job": "backup"})
    assert r.status_code == 200 and r.json()["category"] == "disk-full"
    assert service.calls == [("linux", "disk: No space left on device", "")]


def test_unknown_domain_is_404_listing_the_known_ones(client: TestClient, service: FakeService) -> None:
    """A typo in the URL says which domains exist; the service is not asked."""
    r = client.post("/api/errors/nosql", json={"error_details": "x"})
    assert r.status_code == 404
    assert r.json() == {"error": "unknown domain 'nosql'", "domains": ["database", "linux"]}
    assert service.calls == []


@pytest.mark.parametrize(("content", "headers", "status", "body"), [
    (b'{"error_details": ', {"content-type": "application/json"}, 400,
     {"error": "request body is not JSON", "details": [
         {"field": "body", "problem": "malformed JSON: Expecting value at character 18",
          "type": "json_invalid"}]}),
    (b"disk full", {"content-type": "text/plain"}, 400,
     {"error": "request body is not JSON", "details": [
         {"field": "body", "problem": "the body must be JSON, sent with Content-Type: application/json",
          "type": "model_attributes_type"}]}),
    (b"", {"content-type": "application/json"}, 422,
     {"error": "invalid request", "details": [
         {"field": "body", "problem": "a JSON object with error_details is required", "type": "missing"}]}),
    (b"{}", {"content-type": "application/json"}, 422,
     {"error": "invalid request", "details": [
         {"field": "error_details", "problem": "required", "type": "missing"}]}),
    (b'["x"]', {"content-type": "application/json"}, 422,
     {"error": "invalid request", "details": [
         {"field": "body", "problem": "must be a JSON object", "type": "model_attributes_type"}]}),
    (b'{"error_details": 42}', {"content-type": "application/json"}, 422,
     {"error": "invalid request", "details": [
         {"field": "error_details", "problem": "must be a string", "type": "string_type"}]}),
    (b'{"error_details": " \\n "}', {"content-type": "application/json"}, 422,
     {"error": "invalid request", "details": [
         {"field": "error_details", "problem": "must not be empty or blank",
          "type": "string_pattern_mismatch"}]}),
    (b'{"error_details": "x", "context": null}', {"content-type": "application/json"}, 422,
     {"error": "invalid request", "details": [
         {"field": "context", "problem": "must be a string", "type": "string_type"}]}),
], ids=["malformed-json", "not-json", "empty-body", "missing-field", "array", "wrong-type", "blank",
        "null-context"])
def test_bad_requests_say_which_field_and_what(client: TestClient, service: FakeService, content: bytes,
                                               headers: dict[str, str], status: int,
                                               body: dict[str, Any]) -> None:
    """Each malformed request gets its status and a JSON body naming the field and the problem."""
    r = client.post("/api/errors/linux", content=content, headers=headers)
    assert (r.status_code, r.json()) == (status, body)
    assert service.calls == []


def test_validation_errors_never_echo_the_input(client: TestClient) -> None:
    """FastAPI's default 422 repeats the input; ours does not (error texts can hold secrets)."""
    r = client.post("/api/errors/linux", json={"error_details": {"password": "hunter2-leak"}})
    assert r.status_code == 422 and "hunter2-leak" not in r.text


def test_a_hefestus_failure_is_503_json(client: TestClient, service: FakeService) -> None:
    """A known failure (state store unusable) is a JSON 503 naming its kind, not a traceback."""
    service.fail = StateError("database is locked")
    r = client.post("/api/errors/linux", json={"error_details": "x"})
    assert r.status_code == 503
    assert r.json() == {"error": "Hefestus could not answer (StateError); see its log"}


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    """404 and 405 keep the {"error": ...} shape; 405 still says which methods are allowed."""
    assert client.get("/nope").json() == {"error": "Not Found"}
    r = client.delete("/api/domains")
    assert r.status_code == 405 and r.json() == {"error": "Method Not Allowed"}
    assert r.headers["allow"] == "GET"


# -- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("headers", "error", "challenge"), [
    ({}, "bearer token required", 'Bearer realm="hefestus"'),
    ({"Authorization": f"Basic {TOKEN}"}, "bearer token required", 'Bearer realm="hefestus"'),
    ({"Authorization": "Bearer wrong-token-0123456789"}, "invalid bearer token",
     'Bearer realm="hefestus", error="invalid_token"'),
    ({"Authorization": f"Bearer {TOKEN}x"}, "invalid bearer token",
     'Bearer realm="hefestus", error="invalid_token"'),
], ids=["missing", "basic", "wrong", "longer"])
def test_missing_or_wrong_token_is_401_with_a_challenge(guarded: TestClient, service: FakeService,
                                                        headers: dict[str, str], error: str,
                                                        challenge: str) -> None:
    """401, a JSON reason and WWW-Authenticate: Bearer; the service is never reached."""
    r = guarded.post("/api/errors/linux", json={"error_details": "x"}, headers=headers)
    assert (r.status_code, r.json(), r.headers["www-authenticate"]) == (401, {"error": error}, challenge)
    assert service.calls == []


def test_auth_is_checked_before_the_body_is_parsed(guarded: TestClient) -> None:
    """An anonymous client learns nothing about its body, not even that the JSON is broken."""
    r = guarded.post("/api/errors/linux", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 401


@pytest.mark.parametrize("path", ["/api/errors/linux", "/api/domains", "/api/health", "/readyz",
                                  "/metrics", "/nope"])
def test_every_route_but_liveness_needs_the_token(guarded: TestClient, path: str) -> None:
    """With a token set, every route (even an unknown one) answers 401 without it."""
    assert guarded.request("POST" if "errors" in path else "GET", path).status_code == 401


def test_the_right_token_and_the_public_routes(guarded: TestClient) -> None:
    """The token opens the API; /healthz and the docs need none (docs_public defaults to true)."""
    assert guarded.post("/api/errors/linux", json={"error_details": "x"}, headers=AUTH).status_code == 200
    assert guarded.get("/api/domains", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
    for path in ("/healthz", "/openapi.json", "/swagger/index.html", "/swagger/swagger-ui.css"):
        assert guarded.get(path).status_code == 200, path


def test_docs_can_require_the_token_too(service: FakeService) -> None:
    """docs_public = false: the OpenAPI document and Swagger UI are behind the token as well."""
    c = make_client(service, token=TOKEN, docs_public=False)
    assert c.get("/openapi.json").status_code == 401
    assert c.get("/swagger/index.html").status_code == 401
    assert c.get("/openapi.json", headers=AUTH).status_code == 200
    assert c.get("/healthz").status_code == 200


def test_openapi_declares_the_bearer_scheme_only_when_a_token_is_set(client: TestClient,
                                                                     guarded: TestClient) -> None:
    """Swagger UI shows "Authorize" exactly when the API wants a token; /healthz stays open."""
    doc = guarded.get("/openapi.json").json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer",
        "description": "The [api] token of hefestus.toml (HEFESTUS_API_TOKEN)."}
    assert doc["security"] == [{"bearer": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert "security" not in client.get("/openapi.json").json()


# -- body size ------------------------------------------------------------------------------


def test_body_over_the_limit_is_413_by_content_length(service: FakeService) -> None:
    """A declared Content-Length over max_body_bytes is refused before anything is read."""
    c = make_client(service, max_body_bytes=1024)
    text = "x" * 1024
    r = c.post("/api/errors/linux", json={"error_details": text})
    assert r.status_code == 413 and r.json() == {"error": "request body larger than 1024 bytes"}
    fits = '{"error_details": "' + "x" * (1024 - 21) + '"}'
    assert len(fits) == 1024 and c.post("/api/errors/linux", content=fits,
                                         headers={"content-type": "application/json"}).status_code == 200
    assert service.calls == [("linux", "x" * 1003, "")]


def test_body_over_the_limit_is_413_while_reading_a_chunked_upload(service: FakeService) -> None:
    """Without Content-Length (chunked), the limit is enforced on the bytes actually received."""
    c = make_client(service, max_body_bytes=1024)

    def chunks() -> Iterator[bytes]:
        yield b'{"error_details": "'
        for _ in range(10):
            yield b"y" * 200
        yield b'"}'

    r = c.post("/api/errors/linux", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and service.calls == []


# -- probes, health, metrics ----------------------------------------------------------------


def test_health_reports_each_component(client: TestClient, service: FakeService) -> None:
    """ok / degraded (an optional component down) / down (a required one down), always 200."""
    assert client.get("/api/health").json()["status"] == "ok"
    service.ready["model"] = (False, "Ollama unreachable")
    r = client.get("/api/health")
    assert r.status_code == 200 and r.json() == {"status": "degraded", "components": {
        "model": {"ok": False, "required": False, "detail": "Ollama unreachable"},
        "zabbix": {"ok": True, "required": True, "detail": "API 6.0.30"}}}
    service.ready["zabbix"] = (False, "connection refused")
    assert client.get("/api/health").json()["status"] == "down"


def test_readyz_is_503_while_a_required_component_is_down(client: TestClient, service: FakeService) -> None:
    """Only components of ready_requires (zabbix by default) make the process unready."""
    service.ready["model"] = (False, "Ollama unreachable")
    r = client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready", "failing": {}, "role": "leader"})
    service.ready["zabbix"] = (False, "connection refused")
    r = client.get("/readyz")
    assert (r.status_code, r.json()) == (503, {"status": "not ready", "role": "leader",
                                               "failing": {"zabbix": "connection refused"}})


def test_readyz_says_standby_on_an_instance_that_does_not_lead(client: TestClient, service: FakeService) -> None:
    """A standby (another instance holds the lease) is ready: it serves the API; it says so."""
    service.ready["leadership"] = (True, "standby (node-b); leader node-a, epoch 3, lease renewed 0.4 s ago")
    r = client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"status": "ready", "failing": {}, "role": "standby"})
    service.ready["leadership"] = (True, "leader (node-b); leader this instance, epoch 4, lease renewed 0.1 s ago")
    assert client.get("/readyz").json()["role"] == "leader"


def test_a_required_component_nobody_reports_is_down(service: FakeService) -> None:
    """ready_requires naming an unreported component (e.g. rundeck not wired) is not ready."""
    c = make_client(service, ready_requires=("zabbix", "rundeck"))
    r = c.get("/readyz")
    assert r.status_code == 503 and r.json()["failing"] == {"rundeck": "not reported by Hefestus"}


def test_healthz_is_always_200(client: TestClient, service: FakeService) -> None:
    """Liveness does not depend on Zabbix or the model: restarting would not fix them."""
    service.ready = {"zabbix": (False, "down")}
    assert (client.get("/healthz").status_code, client.get("/healthz").json()) == (200, {"status": "alive"})


def test_metrics_are_prometheus_text_with_route_templates(client: TestClient) -> None:
    """Requests are counted by route template (bounded labels), in Prometheus text format."""
    client.post("/api/errors/database", json={"error_details": TOO_MANY})
    client.post("/api/errors/nosql", json={"error_details": "x"})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    counts = {(s.labels["route"], s.labels["status"]): s.value
              for s in families["hefestus_api_requests"].samples if s.name.endswith("_total")}
    assert counts[("/api/errors/{domain}", "200")] == 1 and counts[("/api/errors/{domain}", "404")] == 1
    assert "hefestus_api_request_seconds" in families


def test_metrics_speak_openmetrics_when_asked(client: TestClient) -> None:
    """A scraper that accepts OpenMetrics gets it (content negotiation by prometheus_client)."""
    r = client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")


def test_two_apps_can_share_one_registry(service: FakeService) -> None:
    """Building the app twice (a reload, tests) does not register the collectors twice."""
    reg = CollectorRegistry()
    create_app(service, ApiSettings(), metrics=reg)
    create_app(service, ApiSettings(), metrics=reg)


def test_logs_never_hold_the_body_or_the_token(guarded: TestClient) -> None:
    """One line per request with method, path and status; no body, header or query string."""
    with structlog.testing.capture_logs() as logs:
        guarded.post("/api/errors/linux?x=query-secret", json={"error_details": "password=body-secret"},
                     headers=AUTH)
    assert logs == [{"event": "api request", "log_level": "info", "method": "POST",
                     "path": "/api/errors/linux", "status": 200, "seconds": logs[0]["seconds"]}]
    assert not re.search("body-secret|query-secret|" + TOKEN, repr(logs))


# -- Swagger UI, offline --------------------------------------------------------------------


def test_swagger_ui_uses_only_assets_served_by_hefestus(client: TestClient) -> None:
    """The page links no CDN, and every script, style, icon and the document it loads is served
    here with the right content type: Swagger UI works in an air-gapped network."""
    page = "http://testserver/swagger/index.html"
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"https?://|//[a-z]", r.text, re.IGNORECASE), "absolute URL in the Swagger page"
    refs = re.findall(r'(?:src|href)="([^"]+)"', r.text) + re.findall(r"url: '([^']+)'", r.text)
    expected = {"swagger-ui.css": "text/css", "favicon.png": "image/png",
                "swagger-ui-bundle.js": "javascript", "../openapi.json": "application/json"}
    assert sorted(refs) == sorted(expected)
    for ref, kind in expected.items():
        asset = client.get(urljoin(page, ref))
        assert asset.status_code == 200 and kind in asset.headers["content-type"], ref
        assert len(asset.content) > 100, ref
    assert client.get(urljoin(page, "../openapi.json")).json()["openapi"].startswith("3.1")


def test_swagger_shortcuts_redirect_relatively(client: TestClient) -> None:
    """/swagger, /swagger/ and /docs lead to the page with relative Locations (proxy-safe)."""
    for path, location in (("/swagger", "swagger/index.html"), ("/swagger/", "index.html"),
                           ("/docs", "swagger/index.html")):
        r = client.get(path, follow_redirects=False)
        assert (r.status_code, r.headers["location"]) == (308, location)
        assert client.get(path).url.path == "/swagger/index.html"
    assert client.get("/redoc").status_code == 404


def test_openapi_document_describes_every_answer(client: TestClient) -> None:
    """The error answers of the analysis route are documented with their schemas and examples."""
    doc = client.get("/openapi.json").json()
    op = doc["paths"]["/api/errors/{domain}"]["post"]
    assert set(op["responses"]) == {"200", "400", "401", "404", "413", "422", "503"}
    schemas = doc["components"]["schemas"]
    assert schemas["UnknownDomain"]["examples"][0]["domains"] == ["database", "linux"]
    assert schemas["ErrorReport"]["required"] == ["error_details"]
    assert "HTTPValidationError" not in schemas


# -- the API against its own OpenAPI document (schemathesis) -------------------------------


# Built at import: schemathesis 4.32's from_fixture() fails on pytest 9.2 (Function._nodeid is gone).
conformance = schemathesis.openapi.from_asgi("/openapi.json", create_app(
    FakeService(load_knowledge(DATA / "rules", DATA / "patterns")), ApiSettings(token=SecretStr(TOKEN)),
    metrics=CollectorRegistry()))


@conformance.parametrize()
@settings(max_examples=15, derandomize=True, database=None, deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case: Any) -> None:
    """Generated requests get documented status codes, content types and bodies, never a 5xx;
    and schemathesis checks that the declared bearer auth is really enforced."""
    case.call_and_validate(headers=AUTH)


# -- the real server ------------------------------------------------------------------------


def test_serve_runs_uvicorn_on_a_real_port_and_stops(service: FakeService) -> None:
    """serve() binds (port 0: a free one), answers over TCP, enforces the limits on real
    sockets (chunked upload too), and stop() closes the port."""
    app = create_app(service, ApiSettings(token=SecretStr(TOKEN), max_body_bytes=1024), metrics=CollectorRegistry())
    server = serve(app, "127.0.0.1:0", stop_timeout=2)
    try:
        assert server.running and server.url == f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=server.url, timeout=10) as http:
            assert http.get("/healthz").json() == {"status": "alive"}
            r = http.post("/api/errors/database", json={"error_details": TOO_MANY}, headers=AUTH)
            assert r.status_code == 200 and r.json()["error"]["causa"] == "PostgreSQL reached max_connections."
            assert "server" not in r.headers
            big = iter([b'{"error_details": "', b"z" * 2000, b'"}'])
            r = http.post("/api/errors/linux", content=big, headers={**AUTH, "content-type": "application/json"})
            assert r.status_code == 413
    finally:
        server.stop()
    assert not server.running
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()


class SlowService(FakeService):
    """analyze() blocks until released (or ``hold`` seconds): a model that thinks."""

    def __init__(self, knowledge: Knowledge, hold: float) -> None:
        super().__init__(knowledge)
        self.hold, self.started, self.release = hold, threading.Event(), threading.Event()

    def analyze(self, domain: str, error_details: str, context: str) -> Suggestion:
        self.started.set()
        self.release.wait(self.hold)
        return super().analyze(domain, error_details, context)


def _post_in_background(url: str) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def call() -> None:
        try:
            out["status"] = httpx.post(url, json={"error_details": "x"}, timeout=30).status_code
        except httpx.HTTPError as exc:
            out["status"] = repr(exc)

    thread = threading.Thread(target=call)
    thread.start()
    return thread, out


def test_stop_lets_a_request_in_flight_finish(test_knowledge: Knowledge) -> None:
    """Graceful: a request that completes within stop_timeout still gets its answer."""
    service = SlowService(test_knowledge, hold=0.5)
    server = serve(create_app(service, ApiSettings(), metrics=CollectorRegistry()), "127.0.0.1:0",
                   stop_timeout=5)
    thread, out = _post_in_background(f"{server.url}/api/errors/linux")
    assert service.started.wait(10)
    server.stop()
    thread.join(10)
    assert out == {"status": 200} and not server.running


def test_stop_is_bounded_by_stop_timeout(test_knowledge: Knowledge) -> None:
    """Bounded: a request stuck for longer is cancelled, and stop() returns soon after the timeout."""
    service = SlowService(test_knowledge, hold=30)
    server = serve(create_app(service, ApiSettings(), metrics=CollectorRegistry()), "127.0.0.1:0",
                   stop_timeout=1)
    thread, _ = _post_in_background(f"{server.url}/api/errors/linux")
    assert service.started.wait(10)
    began = time.monotonic()
    server.stop()
    assert time.monotonic() - began < 4 and not server.running
    service.release.set()
    thread.join(10)


def test_a_busy_port_is_a_config_error(service: FakeService) -> None:
    """Address in use is reported at once, in the caller's thread, naming [api] listen."""
    app = create_app(service, ApiSettings(), metrics=CollectorRegistry())
    with Server(app, "127.0.0.1:0") as first, pytest.raises(
            ConfigError, match=r"\[api\] listen = '127.0.0.1:\d+': cannot listen"):
        Server(app, f"127.0.0.1:{first.port}")


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(("listen", "parsed"), [
    ("127.0.0.1:8080", ("127.0.0.1", 8080)), ("0.0.0.0:80", ("0.0.0.0", 80)),
    ("localhost:9000", ("localhost", 9000)), ("[::1]:8080", ("::1", 8080)), ("[::]:8443", ("::", 8443)),
])
def test_listen_accepts_host_port_and_bracketed_ipv6(listen: str, parsed: tuple[str, int]) -> None:
    """host:port, a host name, and IPv6 in brackets."""
    assert parse_listen(listen) == parsed
    assert ApiSettings(listen=listen).listen == listen


@pytest.mark.parametrize(("listen", "message"), [
    ("8080", "expected host:port"), ("::1:8080", "put an IPv6 address in brackets"),
    ("[::1]8080", "write an IPv6 address as"), ("[nope]:80", "is not an IPv6 address"),
    ("host:http", "port must be a number"), ("host:70000", "port must be a number"),
    ("bad_host!:80", "is not a host name"), ("127.0.0.1:0", "port 0 picks a random port"),
])
def test_listen_errors_say_what_to_write(listen: str, message: str) -> None:
    """A bad listen value fails validation with a hint at the right form."""
    with pytest.raises(ValueError, match=re.escape(message)):
        ApiSettings(listen=listen)


def test_token_settings() -> None:
    """An empty token means none; a short one is refused; a stray newline (env file) is dropped;
    the token never shows in a repr."""
    assert ApiSettings(token="").token is None  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 16 characters"):
        ApiSettings(token="short")  # type: ignore[arg-type]
    s = ApiSettings(token=SecretStr(TOKEN))
    assert TOKEN not in repr(s) and s.token is not None and s.token.get_secret_value() == TOKEN
    assert ApiSettings(token=SecretStr(f"{TOKEN}\n")).token == SecretStr(TOKEN)
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        ApiSettings(port=1)  # type: ignore[call-arg]


@pytest.mark.parametrize(("listen", "token", "warned"), [
    ("0.0.0.0:8080", None, True), ("0.0.0.0:8080", TOKEN, False), ("127.0.0.1:8080", None, False),
    ("[::1]:8080", None, False), ("localhost:8080", None, False),
])
def test_no_token_beyond_loopback_is_warned_about(service: FakeService, listen: str, token: str | None,
                                                  warned: bool) -> None:
    """Running open on a reachable address is allowed (a trusted network) but logged as a warning."""
    with structlog.testing.capture_logs() as logs:
        create_app(service, ApiSettings(listen=listen, token=SecretStr(token) if token else None),
                   metrics=CollectorRegistry())
    assert [e["log_level"] for e in logs] == (["warning"] if warned else [])


def test_push_intake_wakes_the_poller_and_ignores_recoveries(service: FakeService) -> None:
    """The webhook only wakes the poller: the normal cycle keeps exactly-once."""
    client = make_client(service, token=TOKEN)
    assert client.post("/api/zabbix/events", json={"eventid": "4521"}).status_code == 401
    r = client.post("/api/zabbix/events", json={"eventid": "4521", "event_value": "1"}, headers=AUTH)
    assert (r.status_code, r.json()) == (202, {"status": "queued", "eventid": 4521})
    r = client.post("/api/zabbix/events", json={"eventid": 4522, "event_value": "0"}, headers=AUTH)
    assert r.json()["status"] == "ignored" and service.pushed == [4521]
    assert client.post("/api/zabbix/events", json={"eventid": "x"}, headers=AUTH).status_code == 422
    service.polls = False
    r = client.post("/api/zabbix/events", json={"eventid": 7}, headers=AUTH)
    assert r.status_code == 503 and "does not poll" in r.json()["error"]
