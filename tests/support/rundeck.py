"""FakeRundeck: a real local HTTP server that behaves like Rundeck's API.

It follows the contract in ``shared/reference/rundeck.md`` (checked against
Rundeck's source), so tests exercise the real adapter over a real socket:

* the API version is checked first (400 ``api.error.api-version.unsupported``),
  then the token (403 ``unauthorized``, token masked as Rundeck masks it);
* without ``Accept: application/json`` it answers XML, as 4.x does;
* jobs are registered by the test; a run answers 200 with one execution that
  turns ``succeeded``/``failed`` after a number of polls or on :meth:`finish`;
* faults are scripted per call (:meth:`fault`), and every request is recorded
  (token value masked) so a test can assert "run was called exactly once".
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

Call = Literal["system_info", "job_info", "run", "execution", "output", "abort"]
Fault = Literal[
    "unavailable",      # 503, empty body: a starting server
    "html-500",         # 500 HTML error page (uncaught exception)
    "error-json",       # 500 {"error": "A server error occurred"}: error page when JSON was asked
    "proxy-502",        # 502 HTML from nginx in front
    "conflict",         # 409 api.error.execution.conflict: limit of running executions
    "hang",             # answer normally, but only after hang_seconds (the client gave up)
    "drop",             # close the connection without answering
    "disabled",         # 400 api.error.job.disabled
    "options-invalid",  # 400 api.error.job.options-invalid
    "not-found",        # 404 api.error.item.doesnotexist (e.g. an execution right after run)
    "login-page",       # 200 HTML: an SSO proxy's login page in front of the API
    "redirect",         # 302 to a login page elsewhere (http -> https, SSO)
    "forbidden",        # 403 api.error.item.unauthorized: a valid token without the ACL for this
]
Reply = tuple[int, str, bytes]  # status, content type, body
JSON = "application/json;charset=utf-8"


@dataclass
class FakeJob:
    id: str
    name: str
    project: str = "ops"
    group: str = ""
    enabled: bool = True
    required_options: tuple[str, ...] = ()
    #: GETs of a new execution before it reaches ``outcome``.
    polls_to_finish: int = 2
    outcome: str = "succeeded"
    output: tuple[str, ...] = ("starting", "done")


@dataclass
class FakeExecution:
    id: int
    job: FakeJob
    options: dict[str, str]
    started_ms: int
    status: str = "running"
    ended_ms: int | None = None
    polls: int = 0


@dataclass(frozen=True)
class Recorded:
    call: str  # a Call, or "unknown"
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # the token value replaced by "****"
    body: Any  # parsed JSON, or None


@dataclass
class FakeRundeck:
    token: str = "abcdef0123456789-fake-token"
    current_version: int = 45  # Rundeck 4.14-4.17
    hang_seconds: float = 2.0
    user: str = "hefestus"
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    executions: dict[int, FakeExecution] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    _faults: dict[str, deque[Fault]] = field(default_factory=lambda: defaultdict(deque))
    _next_id: int = 100
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None

    # -- test API ---------------------------------------------------------------------

    def add_job(self, job_id: str, name: str, **kw: Any) -> FakeJob:
        job = FakeJob(job_id, name, **kw)
        self.jobs[job_id] = job
        return job

    def fault(self, call: Call, fault: Fault, times: int = 1) -> None:
        """The next ``times`` requests of ``call`` fail with ``fault``."""
        with self._lock:
            self._faults[call].extend([fault] * times)

    def finish(self, exec_id: int, status: str = "succeeded") -> None:
        with self._lock:
            self._end(self.executions[exec_id], status)

    def calls(self, call: Call) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.call == call]

    @property
    def url(self) -> str:
        assert self._httpd is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> FakeRundeck:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         name="fake-rundeck", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeRundeck:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- Rundeck ----------------------------------------------------------------------

    def _error(self, status: int, code: str, message: str) -> Reply:
        return _json(status, {"error": True, "apiversion": self.current_version,
                              "errorCode": code, "message": message})

    def _check(self, version: str, api_path: str, min_version: int, headers: Any) -> Reply | None:
        """Version first (before authentication, as Rundeck does), then the token."""
        v = int(version) if version.isdigit() else -1
        if v < 14 or v > self.current_version or v < min_version:
            reason = (f"Current version: {self.current_version}" if v > self.current_version
                      else f"Minimum supported version: {max(14, min_version)}")
            return self._error(400, "api.error.api-version.unsupported",
                               f'Unsupported API Version "{version}". API Request: {api_path}. '
                               f"Reason: {reason}")
        given = headers.get("X-Rundeck-Auth-Token")
        if given != self.token:
            who = f"(Token:{given[:5]}****)" if given else "(unauthenticated)"
            return self._error(403, "unauthorized", f"{who} is not authorized for: {api_path}")
        return None

    def _fault(self, call: str, fault: Fault, rest: list[str]) -> Reply | None:
        job = self.jobs.get(rest[1]) if len(rest) > 1 and rest[0] == "job" else None
        name = job.name if job else "?"
        if fault == "unavailable":
            return 503, "text/plain", b""
        if fault == "html-500":
            return 500, "text/html", (b"<!DOCTYPE html><html><head><title>Error</title>"
                                      b"<style>p{}</style></head><body><h1>Oops</h1>"
                                      b"<p>Internal Server Error: NullPointerException</p>"
                                      b"</body></html>")
        if fault == "error-json":
            return _json(500, {"error": "A server error occurred"})
        if fault == "proxy-502":
            return 502, "text/html", (b"<html><head><title>502 Bad Gateway</title></head><body>"
                                      b"<center><h1>502 Bad Gateway</h1></center><hr>"
                                      b"<center>nginx/1.24.0</center></body></html>")
        if fault == "conflict":
            return self._error(409, "api.error.execution.conflict",
                               f'Execution had a conflict: Job "{name}" '
                               f'{{{{Job {job.id if job else "?"}}}}}: '
                               "Limit of running executions has been reached.")
        if fault == "disabled":
            return self._error(400, "api.error.job.disabled", "Job execution is disabled")
        if fault == "options-invalid":
            return self._error(400, "api.error.job.options-invalid",
                               "Job options were not valid: Option 'service' is required.")
        if fault == "forbidden":
            action, what = {"run": ("Run", f"Job ID {rest[1] if len(rest) > 1 else '?'}"),
                            "job_info": ("Read", f"Job ID {rest[1] if len(rest) > 1 else '?'}"),
                            "system_info": ("Read", "System")}.get(call, ("Read", "Execution"))
            return self._error(403, "api.error.item.unauthorized",
                               f'Not authorized for action "{action}" for {what}')
        if fault == "login-page":
            return 200, "text/html", (b"<html><head><title>Sign in</title></head>"
                                      b"<body>Sign in</body></html>")
        if fault == "not-found":
            what = "Job ID" if call in ("job_info", "run") else "Execution"
            return self._error(404, "api.error.item.doesnotexist",
                               f"{what} does not exist: {rest[1] if len(rest) > 1 else '?'}")
        return None  # hang and drop are handled by the handler

    def _execution_json(self, e: FakeExecution) -> dict[str, Any]:
        base = f"{self.url}/api/{self.current_version}"
        j = e.job
        out: dict[str, Any] = {
            "id": e.id, "href": f"{base}/execution/{e.id}",
            "permalink": f"{self.url}/project/{j.project}/execution/show/{e.id}",
            "status": e.status, "project": j.project, "user": self.user,
            "date-started": _date(e.started_ms),
            "job": {"id": j.id, "href": f"{base}/job/{j.id}",
                    "permalink": f"{self.url}/project/{j.project}/job/show/{j.id}",
                    "averageDuration": 1200, "name": j.name, "group": j.group,
                    "project": j.project, "description": "", "options": dict(e.options)},
            "description": f"{j.name} [1 step]",
            "argstring": " ".join(f"-{k} {_quote(v)}" for k, v in e.options.items()),
            "successfulNodes": ["localhost"] if e.status == "succeeded" else [],
            "failedNodes": ["localhost"] if e.status == "failed" else [],
        }
        if e.ended_ms is not None:
            out["date-ended"] = _date(e.ended_ms)
        return out

    def _end(self, e: FakeExecution, status: str) -> None:
        if e.ended_ms is None:
            e.status, e.ended_ms = status, int(time.time() * 1000)

    def _route(self, method: str, parts: list[str], query: dict[str, list[str]],
               body: Any) -> Reply:
        """Called with the lock held, after version, token and faults."""
        if parts == ["system", "info"] and method == "GET":
            now = int(time.time() * 1000)
            return _json(200, {"system": {
                "timestamp": {"epoch": now, "unit": "ms", "datetime": _date(now)["date"]},
                "rundeck": {"version": "4.17.6-20240402", "build": "4.17.6-20240402",
                            "node": "rundeck-fake", "base": "/home/rundeck",
                            "apiversion": self.current_version, "serverUUID": "fake-uuid"},
                "executions": {"active": True, "executionMode": "active"}}})
        if len(parts) == 3 and parts[0] == "job":
            job = self.jobs.get(parts[1])
            if job is None:
                return self._error(404, "api.error.item.doesnotexist",
                                   f"Job ID does not exist: {parts[1]}")
            if parts[2] == "info" and method == "GET":
                return _json(200, {
                    "id": job.id, "name": job.name, "group": job.group, "project": job.project,
                    "description": "",
                    "href": f"{self.url}/api/{self.current_version}/job/{job.id}",
                    "permalink": f"{self.url}/project/{job.project}/job/show/{job.id}",
                    "scheduled": False, "scheduleEnabled": True, "enabled": job.enabled,
                    "averageDuration": 1200})
            if parts[2] == "run" and method == "POST":
                if not job.enabled:
                    return self._error(400, "api.error.job.disabled", "Job execution is disabled")
                options = body.get("options") if isinstance(body, dict) else None
                options = {str(k): str(v) for k, v in (options or {}).items()}
                for name in job.required_options:
                    if not options.get(name):
                        return self._error(
                            400, "api.error.job.options-invalid",
                            f"Job options were not valid: Option '{name}' is required.")
                self._next_id += 1
                new = FakeExecution(self._next_id, job, options, int(time.time() * 1000))
                self.executions[new.id] = new
                return _json(200, self._execution_json(new))
        if len(parts) in (2, 3) and parts[0] == "execution":
            e = self.executions.get(int(parts[1])) if parts[1].isdigit() else None
            if e is None:
                return self._error(404, "api.error.item.doesnotexist",
                                   f"Execution does not exist: {parts[1]}")
            if len(parts) == 2 and method == "GET":
                e.polls += 1
                if e.polls >= e.job.polls_to_finish:
                    self._end(e, e.job.outcome)
                return _json(200, self._execution_json(e))
            if parts[2] == "output" and method == "GET":
                n = int(query.get("lastlines", ["0"])[0] or 0)
                lines = list(e.job.output)[-n:] if n else list(e.job.output)
                t = _date(e.started_ms)
                return _json(200, {
                    "id": str(e.id), "offset": str(len("".join(lines))),
                    "completed": e.ended_ms is not None, "execCompleted": e.ended_ms is not None,
                    "hasFailedNodes": e.status == "failed", "execState": e.status,
                    "lastModified": str(e.ended_ms or e.started_ms), "execDuration": 1200,
                    "percentLoaded": 100.0, "totalSize": len("".join(lines)),
                    "entries": [{"time": t["date"][11:19], "absolute_time": t["date"],
                                 "level": "NORMAL", "log": line, "user": self.user,
                                 "node": "localhost", "stepctx": "1"} for line in lines]})
            if parts[2] == "abort" and method == "POST":
                if e.ended_ms is None:
                    self._end(e, "aborted")
                    abort: dict[str, str] = {"status": "aborted"}
                else:
                    abort = {"status": "failed", "reason": "Job is not running"}
                return _json(200, {"abort": abort, "execution": {
                    "id": str(e.id), "status": e.status,
                    "href": f"{self.url}/api/{self.current_version}/execution/{e.id}"}})
        return 404, "text/html", b"<html><body><h1>Page not found</h1></body></html>"


class _Handler(BaseHTTPRequestHandler):
    fake: FakeRundeck
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        self._handle("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._handle("POST")

    def log_message(self, *_: object) -> None:
        pass

    def _handle(self, method: str) -> None:
        fake = self.fake
        split = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = None
        if raw and "application/json" in (self.headers.get("Content-Type") or ""):
            body = json.loads(raw)
        parts = [p for p in split.path.split("/") if p]
        rest = parts[2:] if len(parts) >= 3 and parts[0] == "api" else []
        call = _call_name(rest)
        headers = {k: ("****" if k.lower() == "x-rundeck-auth-token" else v)
                   for k, v in self.headers.items()}
        with fake._lock:
            fake.requests.append(Recorded(call, method, self.path, headers, body))
            if not rest:
                reply: Reply | None = (404, "text/html", b"<html><body>Not Found</body></html>")
            else:
                reply = fake._check(parts[1], split.path, 18 if call in ("run", "job_info") else 14,
                                    self.headers)
            fault = fake._faults[call].popleft() if reply is None and fake._faults[call] else None
            if reply is None and fault not in (None, "hang", "drop", "redirect"):
                assert fault is not None
                reply = fake._fault(call, fault, rest)
        if fault == "drop":
            self.close_connection = True
            return
        if fault == "hang":
            time.sleep(fake.hang_seconds)  # outside the lock: others carry on
        if fault == "redirect":
            self.send_response(302)
            self.send_header("Location", "https://sso.example.invalid/login")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if reply is None:
            with fake._lock:
                reply = fake._route(method, rest, parse_qs(split.query), body)
        if reply[0] < 300 and "application/json" not in (self.headers.get("Accept") or ""):
            reply = (reply[0], "application/xml;charset=utf-8",  # 4.x's default for */*
                     b'<?xml version="1.0" encoding="UTF-8"?><result success="true" />')
        status, ctype, data = reply
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Rundeck-API-Version", str(fake.current_version))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left: that is the point of "hang"


def _call_name(rest: list[str]) -> str:
    if rest == ["system", "info"]:
        return "system_info"
    if len(rest) == 3 and rest[0] == "job":
        return {"info": "job_info", "run": "run"}.get(rest[2], "unknown")
    if rest[:1] == ["execution"] and len(rest) == 2:
        return "execution"
    if rest[:1] == ["execution"] and len(rest) == 3:
        return {"output": "output", "abort": "abort"}.get(rest[2], "unknown")
    return "unknown"


def _json(status: int, payload: Any) -> Reply:
    return status, JSON, json.dumps(payload).encode()


def _date(ms: int) -> dict[str, Any]:
    return {"unixtime": ms, "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))}


def _quote(value: str) -> str:
    return f'"{value}"' if (" " in value or not value) else value
