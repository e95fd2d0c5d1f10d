"""The Rundeck adapter against FakeRundeck, and FakeRundeck against the published spec.

No patching: the adapter talks HTTP to a real local server that follows
shared/reference/rundeck.md. The fake's success answers are validated against
Rundeck's OpenAPI document (vendored: tests/data/rundeck-openapi-v48.yml), so the
fake cannot drift into a shape the real server never sends.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import vcr
import yaml
from openapi_core import OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from hefestus.adapters.rundeck import RundeckClient
from hefestus.config import RundeckSettings
from hefestus.errors import (
    RundeckAuthError,
    RundeckError,
    RundeckProtocolError,
    RundeckRejected,
    RundeckUnavailable,
)
from hefestus.remediation.ports import Execution
from tests.support.helpers import eventually
from tests.support.paths import DATA
from tests.support.rundeck import Call, FakeRundeck, Fault

#: Rundeck's published OpenAPI document, vendored (Apache-2.0: see its .LICENSE.md beside it).
SPEC = DATA / "rundeck-openapi-v48.yml"
JOB = "3f2a9c1e-6b0d-4c55-9a57-2b8f0e6d1c44"
TOKEN = "abcdef0123456789-fake-token"


@pytest.fixture
def fake() -> Iterator[FakeRundeck]:
    with FakeRundeck(token=TOKEN, hang_seconds=1.5) as f:
        f.add_job(JOB, "restart-service", group="linux", required_options=("service",),
                  output=("stopping nginx", "starting nginx", "nginx is active"))
        yield f


def client(fake: FakeRundeck, sleeps: list[float] | None = None, **kw: Any) -> RundeckClient:
    kw = {"token": TOKEN, "timeout": 1, "retries": 3, **kw}
    settings = RundeckSettings(url=fake.url, **kw)
    return RundeckClient(settings, sleep=(sleeps.append if sleeps is not None else lambda _: None))


def started(fake: FakeRundeck, rd: RundeckClient) -> Execution:
    return rd.run_job(JOB, {"service": "nginx"})


def assert_no_token(exc: BaseException, token: str = TOKEN) -> None:
    assert token not in str(exc) and token not in repr(exc)
    assert token not in " ".join(str(a) for a in exc.args)


# -- each call ------------------------------------------------------------------------

def test_every_request_sends_json_accept_and_the_token(fake: FakeRundeck) -> None:
    """4.x answers XML to Accept */*; the token travels in its header, never the URL."""
    rd = client(fake)
    rd.system_info()
    rd.execution(started(fake, rd).id)
    assert fake.requests
    for r in fake.requests:
        assert r.headers["Accept"] == "application/json"
        assert r.headers["X-Rundeck-Auth-Token"] == "****"  # present; value masked in the record
        assert TOKEN not in r.path and "authtoken" not in r.path


def test_system_info(fake: FakeRundeck) -> None:
    """The server's current API version is what ``hefestus check`` compares with ours."""
    info = client(fake).system_info()
    assert (info.version, info.api_version, info.execution_mode) == (
        "4.17.6-20240402", 45, "active")
    assert fake.calls("system_info")[0].path == "/api/41/system/info"


def test_job_info(fake: FakeRundeck) -> None:
    job = client(fake).job_info(JOB)
    assert (job.id, job.name, job.group, job.project, job.enabled) == (
        JOB, "restart-service", "linux", "ops", True)
    assert job.full_name == "linux/restart-service"
    assert job.permalink.endswith(f"/project/ops/job/show/{JOB}")


def test_run_job_posts_options_as_json_and_returns_the_execution(fake: FakeRundeck) -> None:
    """Options go in a JSON body (v18+, overrides argString); the answer is 200, one execution."""
    e = client(fake).run_job(JOB, {"service": "nginx tls"}, loglevel="DEBUG",
                             node_filter="name: web1")
    (call,) = fake.calls("run")
    assert call.method == "POST" and call.path == f"/api/41/job/{JOB}/run"
    assert call.headers["Content-Type"] == "application/json"
    assert call.body == {"options": {"service": "nginx tls"}, "loglevel": "DEBUG",
                         "filter": "name: web1"}
    assert (e.status, e.final, e.job_id, e.job_name, e.project) == (
        "running", False, JOB, "restart-service", "ops")
    assert e.argstring == '-service "nginx tls"'
    assert e.date_started_ms and e.date_ended_ms is None
    assert e.permalink.endswith(f"/execution/show/{e.id}")


def test_execution_progresses_to_a_final_status(fake: FakeRundeck) -> None:
    rd = client(fake)
    e = started(fake, rd)
    assert rd.execution(e.id).status == "running"  # polls_to_finish = 2
    done = rd.execution(e.id)
    assert (done.status, done.final, done.succeeded) == ("succeeded", True, True)
    assert done.date_ended_ms is not None and done.date_ended_ms >= (done.date_started_ms or 0)


@pytest.mark.parametrize("status, final", [("running", False), ("queued", False),
                                           ("scheduled", False), ("failed", True),
                                           ("aborted", True), ("timedout", True),
                                           ("failed-with-retry", True), ("other", True)])
def test_only_running_scheduled_queued_are_not_final(status: str, final: bool) -> None:
    """``aborted`` can show before ``date-ended``: the status alone decides."""
    e = Execution(1, status, "ops", "", "", None, None, None, None)
    assert e.final is final


def test_a_test_can_end_an_execution_with_any_status(fake: FakeRundeck) -> None:
    rd = client(fake)
    e = started(fake, rd)
    fake.finish(e.id, "failed")
    got = rd.execution(e.id)
    assert (got.status, got.final, got.succeeded, got.failed_nodes) == (
        "failed", True, False, ("localhost",))


def test_output_tail_asks_for_the_last_lines_only(fake: FakeRundeck) -> None:
    rd = client(fake)
    e = started(fake, rd)
    assert rd.output_tail(e.id, lines=2) == ["starting nginx", "nginx is active"]
    assert fake.calls("output")[0].path.endswith("/output?lastlines=2")


def test_abort_running_then_finished(fake: FakeRundeck) -> None:
    rd = client(fake)
    e = started(fake, rd)
    assert rd.abort(e.id) == "aborted"
    assert rd.execution(e.id).status == "aborted"
    assert rd.abort(e.id) == "failed"  # "Job is not running"


# -- faults ---------------------------------------------------------------------------

def invoke(rd: RundeckClient, call: Call, exec_id: int) -> object:
    actions: dict[str, Callable[[], object]] = {
        "system_info": rd.system_info, "job_info": lambda: rd.job_info(JOB),
        "run": lambda: rd.run_job(JOB, {"service": "nginx"}),
        "execution": lambda: rd.execution(exec_id), "output": lambda: rd.output_tail(exec_id),
        "abort": lambda: rd.abort(exec_id),
    }
    return actions[call]()


FAULTS: list[tuple[Call, Fault, type[RundeckError], int | None, str | None, str]] = [
    ("system_info", "unavailable", RundeckUnavailable, 503, None, "HTTP 503, empty body"),
    ("execution", "html-500", RundeckUnavailable, 500, None,
     "HTTP 500, text/html: 'Error Oops Internal Server Error: NullPointerException'"),
    ("job_info", "proxy-502", RundeckUnavailable, 502, None, "502 Bad Gateway"),
    ("output", "error-json", RundeckUnavailable, 500, None,
     "A server error occurred (HTTP 500)"),
    ("abort", "unavailable", RundeckUnavailable, 503, None, "empty body"),
    ("run", "conflict", RundeckUnavailable, 409, "api.error.execution.conflict",
     "Limit of running executions has been reached. (api.error.execution.conflict)"),
    ("run", "disabled", RundeckRejected, 400, "api.error.job.disabled",
     f"Rundeck refused job {JOB}: Job execution is disabled (api.error.job.disabled)"),
    ("run", "options-invalid", RundeckRejected, 400, "api.error.job.options-invalid",
     "Job options were not valid: Option 'service' is required."),
    ("execution", "not-found", RundeckRejected, 404, "api.error.item.doesnotexist",
     "Execution does not exist"),
    ("job_info", "login-page", RundeckProtocolError, 200, None, "text/html: 'Sign in Sign in'"),
    ("system_info", "redirect", RundeckRejected, 302, None, "redirected"),
]


@pytest.mark.parametrize("call, fault, kind, status, code, text", FAULTS,
                         ids=[f"{c}-{f}" for c, f, *_ in FAULTS])
def test_faults_are_classified_with_a_clear_message(
        fake: FakeRundeck, call: Call, fault: Fault, kind: type[RundeckError], status: int | None,
        code: str | None, text: str) -> None:
    rd = client(fake)
    exec_id = started(fake, rd).id
    fake.requests.clear()
    fake.fault(call, fault, times=3)  # enough to exhaust retries
    with pytest.raises(RundeckError) as info:
        invoke(rd, call, exec_id)
    exc = info.value
    assert type(exc) is kind
    assert (exc.status, exc.code, exc.transient) == (status, code, kind is RundeckUnavailable)
    assert text in str(exc)
    assert_no_token(exc)
    # transient GETs (and abort) are retried up to `retries`; everything else is sent once
    expected = 3 if (exc.transient and call != "run") else 1
    assert len(fake.calls(call)) == expected


def test_options_invalid_message_reads_well_for_ops(fake: FakeRundeck) -> None:
    with pytest.raises(RundeckRejected) as info:
        client(fake).run_job(JOB, {})
    assert str(info.value) == (f"Rundeck refused job {JOB}: Job options were not valid: "
                               "Option 'service' is required. (api.error.job.options-invalid)")
    assert not info.value.maybe_started


def test_disabled_job_is_permanent(fake: FakeRundeck) -> None:
    fake.jobs[JOB].enabled = False
    rd = client(fake)
    assert rd.job_info(JOB).enabled is False
    with pytest.raises(RundeckRejected, match="Job execution is disabled"):
        rd.run_job(JOB, {"service": "nginx"})


def test_unknown_job_is_permanent(fake: FakeRundeck) -> None:
    with pytest.raises(RundeckRejected, match="Job ID does not exist: nope") as info:
        client(fake).run_job("nope", {})
    assert (info.value.status, info.value.code) == (404, "api.error.item.doesnotexist")


def test_a_job_id_cannot_walk_the_api_tree(fake: FakeRundeck) -> None:
    """Job ids come from rule files: ``../`` must stay inside one path segment."""
    with pytest.raises(RundeckRejected):
        client(fake).job_info("../../system/info")
    assert fake.requests[-1].path == "/api/41/job/..%2F..%2Fsystem%2Finfo/info"


def test_bad_token_is_permanent_and_not_leaked(fake: FakeRundeck) -> None:
    bad = "wrongtoken-0123456789-SECRET"
    with pytest.raises(RundeckAuthError) as info:
        client(fake, token=bad).system_info()
    exc = info.value
    assert (exc.status, exc.code, exc.transient) == (403, "unauthorized", False)
    assert str(exc) == ("Rundeck denied system info: (Token:wrong****) is not authorized for: "
                        "/api/41/system/info (unauthorized)")
    assert_no_token(exc, bad)
    assert len(fake.calls("system_info")) == 1


def test_unsupported_api_version_says_what_to_configure(fake: FakeRundeck) -> None:
    """The version is checked before the token, so even a bad token gets this answer."""
    with pytest.raises(RundeckRejected) as info:
        client(fake, api_version=50, token="bad").system_info()
    exc = info.value
    assert (exc.status, exc.code) == (400, "api.error.api-version.unsupported")
    assert ('Unsupported API Version "50". API Request: /api/50/system/info. '
            "Reason: Current version: 45") in str(exc)
    assert str(exc).endswith("set rundeck.api_version to at most 45")


def test_run_job_is_never_retried_and_says_whether_it_may_have_run(fake: FakeRundeck) -> None:
    """A retried POST could run a remediation twice: the safety layer decides, informed."""
    cases: list[tuple[Fault, bool]] = [("unavailable", True), ("proxy-502", True),
                                       ("html-500", True), ("error-json", True), ("drop", True),
                                       ("conflict", False), ("options-invalid", False)]
    rd = client(fake)
    for fault, maybe in cases:
        fake.requests.clear()
        fake.fault("run", fault)
        with pytest.raises(RundeckError) as info:
            rd.run_job(JOB, {"service": "nginx"})
        assert len(fake.calls("run")) == 1, fault
        assert info.value.maybe_started is maybe, fault
        assert ("may have started" in str(info.value)) is maybe, fault


def test_run_that_times_out_may_have_started(fake: FakeRundeck) -> None:
    """The hang ends with the job running on the server: exactly why run is not retried."""
    fake.fault("run", "hang")
    t0 = time.monotonic()
    with pytest.raises(RundeckUnavailable, match=r"no answer from .* within 1s") as info:
        client(fake).run_job(JOB, {"service": "nginx"})
    assert time.monotonic() - t0 < 1.4
    assert info.value.maybe_started and info.value.status is None
    assert len(fake.calls("run")) == 1
    # the fake finishes the "slow" run after the client gave up
    eventually(lambda: fake.executions, 5, "the execution the hung run call made", 0.05)
    assert len(fake.executions) == 1


def test_get_that_hangs_is_retried_a_bounded_number_of_times(fake: FakeRundeck) -> None:
    sleeps: list[float] = []
    fake.fault("system_info", "hang", times=2)
    with pytest.raises(RundeckUnavailable, match="within 1s") as info:
        client(fake, sleeps, retries=2).system_info()
    assert not info.value.maybe_started
    assert len(fake.calls("system_info")) == 2 and len(sleeps) == 1


def test_transient_get_recovers_after_backoff(fake: FakeRundeck) -> None:
    sleeps: list[float] = []
    fake.fault("job_info", "unavailable", times=2)
    assert client(fake, sleeps).job_info(JOB).name == "restart-service"
    assert len(sleeps) == 2 and sleeps[0] > 0


def test_404_right_after_run_is_transient_when_the_caller_says_so(fake: FakeRundeck) -> None:
    rd = client(fake)
    e = started(fake, rd)
    fake.fault("execution", "not-found", times=2)
    assert rd.execution(e.id, just_started=True).id == e.id
    assert len(fake.calls("execution")) == 3
    fake.fault("execution", "not-found")
    with pytest.raises(RundeckRejected):
        rd.execution(e.id)  # later on, a 404 means what it says


def test_connection_refused_is_transient_and_the_job_did_not_start() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = RundeckSettings(url=f"http://127.0.0.1:{port}",
                               token=TOKEN, timeout=1, retries=2)  # type: ignore[arg-type]
    rd = RundeckClient(settings, sleep=lambda _: None)
    with pytest.raises(RundeckUnavailable, match="cannot connect to") as info:
        rd.run_job(JOB, {"service": "nginx"})
    assert not info.value.maybe_started and info.value.status is None
    assert_no_token(info.value)


def test_redirect_is_not_followed(fake: FakeRundeck) -> None:
    """requests would carry X-Rundeck-Auth-Token to the redirect target: never follow."""
    fake.fault("run", "redirect")
    with pytest.raises(RundeckRejected, match="https://sso.example.invalid/login"):
        client(fake).run_job(JOB, {"service": "nginx"})
    assert len(fake.requests) == 1


def test_unreadable_run_answer_may_have_started(fake: FakeRundeck) -> None:
    fake.fault("run", "login-page")
    with pytest.raises(RundeckProtocolError) as info:
        client(fake).run_job(JOB, {"service": "nginx"})
    assert info.value.maybe_started and not info.value.transient


@pytest.mark.parametrize("url, problem", [("rundeck:4440", "http:// or https://"),
                                          ("https://rd.example/api/41", "without /api")])
def test_settings_reject_bad_urls(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        RundeckSettings(url=url, token=TOKEN)  # type: ignore[arg-type]


def test_settings_never_show_the_token() -> None:
    s = RundeckSettings(url="https://rd.example/", token=TOKEN)  # type: ignore[arg-type]
    assert s.url == "https://rd.example" and s.api_version == 41
    assert TOKEN not in repr(s) and TOKEN not in str(s)


def test_cassette_filters_the_token_and_replays_without_a_server(
        fake: FakeRundeck, tmp_path: Path) -> None:
    """The template for cassettes recorded against a real Rundeck: the token never lands on disk."""
    rec = vcr.VCR(cassette_library_dir=str(tmp_path), record_mode="once",
                  match_on=["method", "path", "query", "body"],
                  filter_headers=["X-Rundeck-Auth-Token"])
    with rec.use_cassette("run.yaml"):
        rd = client(fake)
        e = rd.run_job(JOB, {"service": "nginx"})
        first = [rd.execution(e.id).status, rd.execution(e.id).status]
    text = (tmp_path / "run.yaml").read_text()
    assert TOKEN not in text and "X-Rundeck-Auth-Token" not in text
    url = fake.url
    fake.stop()
    with rec.use_cassette("run.yaml"):  # only the cassette can answer now
        settings = RundeckSettings(url=url, token="another-token")  # type: ignore[arg-type]
        rd = RundeckClient(settings)
        again = rd.run_job(JOB, {"service": "nginx"})
        assert again == e and [rd.execution(e.id).status for _ in range(2)] == first
    assert first == ["running", "succeeded"]


# -- the fake against the published spec ----------------------------------------------

#: Where Rundeck's server renders something other than its own OpenAPI document says
#: (SystemController.apiSystemInfo renders ApiVersions.API_CURRENT_VERSION, an int, and
#: executionModeActive, a boolean). The fake follows the server; the spec is patched here.
ERRATA = {("system", "rundeck", "apiversion"): {"type": "integer"},
          ("system", "executions", "active"): {"type": "boolean"}}


@pytest.fixture(scope="module")
def spec_doc() -> dict[str, Any]:
    if not SPEC.exists():
        pytest.fail(f"{SPEC} is missing: it is vendored in the repository")
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # 13,000 lines: C is 10x faster
    doc: dict[str, Any] = yaml.load(SPEC.read_text(), Loader=loader)  # noqa: S506 (safe loader)
    return doc


def _spec(doc: dict[str, Any], errata: bool) -> OpenAPI:
    doc = copy.deepcopy(doc)
    if errata:
        schemas = doc["components"]["schemas"]
        for (_, section, prop), patch in ERRATA.items():
            schemas[section]["properties"][prop] = patch
    return OpenAPI.from_dict(doc)


@pytest.fixture(scope="module")
def spec(spec_doc: dict[str, Any]) -> OpenAPI:
    return _spec(spec_doc, errata=True)


def _wire(fake: FakeRundeck) -> dict[str, requests.Response]:
    """One success answer of each call, fetched as the adapter fetches them."""
    s = requests.Session()
    s.headers.update({"X-Rundeck-Auth-Token": TOKEN, "Accept": "application/json"})
    base = f"{fake.url}/api/41"
    run = s.post(f"{base}/job/{JOB}/run", json={"options": {"service": "nginx"}})
    eid = run.json()["id"]
    out = {"system_info": s.get(f"{base}/system/info"), "job_info": s.get(f"{base}/job/{JOB}/info"),
           "run": run, "execution_running": s.get(f"{base}/execution/{eid}"),
           "execution_done": s.get(f"{base}/execution/{eid}"),
           "output": s.get(f"{base}/execution/{eid}/output", params={"lastlines": 5})}
    run2 = s.post(f"{base}/job/{JOB}/run", json={"options": {"service": "nginx"}})
    out["abort"] = s.post(f"{base}/execution/{run2.json()['id']}/abort")
    return out


def test_fake_success_answers_validate_against_the_openapi_spec(
        fake: FakeRundeck, spec: OpenAPI) -> None:
    """Statuses (run is 200, not 201), content types and schemas where the spec has one."""
    for name, resp in _wire(fake).items():
        assert resp.status_code == 200, name
        spec.validate_response(RequestsOpenAPIRequest(resp.request), RequestsOpenAPIResponse(resp))


def _example(spec_doc: dict[str, Any], path: str, method: str) -> Any:
    ex = spec_doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]
    value = ex["examples"]["example"]["value"]
    if isinstance(value, str):  # abort's example is a string of JSON with a trailing comma
        value = json.loads(re.sub(r",(\s*[}\]])", r"\1", value))
    return value


def _same_shape(example: Any, actual: Any, where: str, optional: frozenset[str]) -> None:
    if isinstance(example, dict):
        assert isinstance(actual, dict), where
        if where.endswith(".options"):  # option name -> value: the job's own names
            return
        for key, sub in example.items():
            if key in optional and key not in actual:
                continue
            assert key in actual, f"{where}.{key} missing"
            _same_shape(sub, actual[key], f"{where}.{key}", optional)
    elif isinstance(example, list):
        assert isinstance(actual, list), where
    elif isinstance(example, bool) or example is None:
        pass
    else:  # placeholders like "[url]" are strings; ids and times are numbers
        want = (int, float) if isinstance(example, (int, float)) else str
        assert isinstance(actual, want), f"{where}: {actual!r} is not like {example!r}"


def test_fake_execution_answers_have_the_documented_shape(
        fake: FakeRundeck, spec_doc: dict[str, Any]) -> None:
    """Execution, run and abort have only examples in the spec, no schema: compare shapes."""
    doc = spec_doc
    wire = _wire(fake)
    running = frozenset({"date-ended"})  # absent until the execution ends
    _same_shape(_example(doc, "/job/{id}/run", "post"), wire["run"].json(), "run", running)
    _same_shape(_example(doc, "/execution/{id}", "get"), wire["execution_done"].json(),
                "execution", frozenset())
    _same_shape(_example(doc, "/execution/{id}/abort", "post"), wire["abort"].json(), "abort",
                frozenset({"reason"}))


def test_errata_are_still_needed(fake: FakeRundeck, spec_doc: dict[str, Any]) -> None:
    """When Rundeck fixes its spec this fails: then drop ERRATA."""
    resp = _wire(fake)["system_info"]
    with pytest.raises(Exception, match="is not of type 'string'"):
        _spec(spec_doc, errata=False).validate_response(RequestsOpenAPIRequest(resp.request),
                                              RequestsOpenAPIResponse(resp))


def test_fake_answers_xml_without_json_accept(fake: FakeRundeck) -> None:
    """Pins the 4.x trap the adapter's Accept header avoids."""
    r = requests.post(f"{fake.url}/api/41/job/{JOB}/run", json={"options": {"service": "x"}},
                      headers={"X-Rundeck-Auth-Token": TOKEN})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/xml")
