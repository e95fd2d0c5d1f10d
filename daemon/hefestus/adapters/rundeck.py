"""Rundeck API adapter (requests), for Rundeck 4.0 through 6.x.

What it owns, so nothing else has to know:

* the wire: ``/api/{v}/...`` URLs, the ``X-Rundeck-Auth-Token`` header, and
  ``Accept: application/json`` on every call (4.x answers XML to ``*/*``);
* errors: Rundeck's JSON envelope, its error-page JSON, the output endpoint's
  own ``{"error": "..."}``, proxies' HTML and a starting server's empty 503,
  all become :class:`RundeckError` subclasses with a message ops can act on
  and never the token;
* retries, for idempotent calls only. ``run_job`` is sent exactly once: a
  retried POST can run a remediation twice, so the safety layer decides, and
  :attr:`RundeckError.maybe_started` tells it whether the job may have run
  despite the error;
* raw dicts -> frozen :class:`SystemInfo`, :class:`JobInfo`, :class:`Execution`.

Its exceptions (``RundeckError`` and subclasses) are drawn in :mod:`hefestus.errors`;
its settings are :class:`hefestus.config.RundeckSettings`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

import requests
import structlog
from urllib3.exceptions import NewConnectionError

from hefestus.adapters.retry import retrying
from hefestus.config import RundeckSettings
from hefestus.errors import (
    RundeckAuthError,
    RundeckError,
    RundeckProtocolError,
    RundeckRejected,
    RundeckUnavailable,
)
from hefestus.remediation.ports import Execution, JobInfo, LogLevel, SystemInfo

log = structlog.get_logger("hefestus.rundeck")

_EXCERPT = 160  # characters of a non-JSON body shown in a message
_CURRENT_VERSION = re.compile(r"Current version: (\d+)")

#: errorCodes that are permanent whatever the status says (before 5.5 a disabled
#: job was a 500 ``api.error.execution.failed``).
_PERMANENT_CODES = frozenset({"api.error.execution.failed", "api.error.job.disabled",
                              "api.error.job.options-invalid", "api.error.api-version.unsupported"})

# -- client ---------------------------------------------------------------------------

class RundeckClient:
    """One Rundeck server, one token, one API version."""

    def __init__(self, settings: RundeckSettings, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] | None = None) -> None:
        self._settings = settings
        self._token = settings.token.get_secret_value()
        #: Called right before a job is started; raises to stop it (see ZabbixClient.write_guard).
        self.run_guard: Callable[[], None] | None = None
        self._session = session or requests.Session()
        self._session.verify = settings.verify_tls
        self._session.headers.update({"X-Rundeck-Auth-Token": self._token,
                                      "Accept": "application/json",
                                      "User-Agent": "hefestus"})
        self._base = f"{settings.url}/api/{settings.api_version}"
        self._sleep = sleep

    def close(self) -> None:
        self._session.close()

    # -- calls ------------------------------------------------------------------------

    def system_info(self) -> SystemInfo:
        """Proves the URL, the API version and the token in one call.

        Needs ``read`` on the ``system`` resource: a token that may only run jobs
        gets :class:`RundeckAuthError` with code ``api.error.item.unauthorized``
        (valid token, missing ACL) rather than ``unauthorized`` (bad token).
        """
        what = "system info"
        data = self._get("/system/info", what=what)
        rd = _dict(_dict(data.get("system")).get("rundeck"))
        api = _int(rd.get("apiversion"))
        if api is None:
            raise RundeckProtocolError(f"{what}: answer has no system.rundeck.apiversion")
        return SystemInfo(version=_str(rd.get("version")), api_version=api,
                          node=_str(rd.get("node")),
                          execution_mode=_str(_dict(_dict(data.get("system"))
                                                    .get("executions")).get("executionMode")))

    def job_info(self, job_id: str) -> JobInfo:
        what = f"job {job_id}"
        data = self._get(f"/job/{_seg(job_id)}/info", what=what)
        if not _str(data.get("id")):
            raise RundeckProtocolError(f"{what}: job info without an id")
        return JobInfo(id=_str(data["id"]), name=_str(data.get("name")),
                       group=_str(data.get("group")), project=_str(data.get("project")),
                       # absent on old servers: a disabled job is then reported by run_job
                       enabled=data.get("enabled") is not False,
                       permalink=_str(data.get("permalink")),
                       project_executions_enabled=data.get("projectDisableExecutions") is not True)

    def run_job(self, job_id: str, options: Mapping[str, str], *,
                loglevel: LogLevel | None = None, node_filter: str | None = None) -> Execution:
        """Start one execution. Sent once, never retried here: see ``maybe_started``."""
        if self.run_guard is not None:
            self.run_guard()
        what = f"job {job_id}"
        body: dict[str, Any] = {"options": {str(k): str(v) for k, v in options.items()}}
        if loglevel is not None:
            body["loglevel"] = loglevel
        if node_filter is not None:
            body["filter"] = node_filter
        data = self._send("POST", f"/job/{_seg(job_id)}/run", what=what, body=body, starts_job=True)
        try:
            execution = _execution(data)
        except RundeckProtocolError as exc:
            raise RundeckProtocolError(f"{what}: Rundeck accepted the run but {exc}",
                                       maybe_started=True) from exc
        log.info("rundeck job started", job=job_id, execution=execution.id,
                 permalink=execution.permalink)
        return execution

    def execution(self, exec_id: int, *, just_started: bool = False) -> Execution:
        """Current state of one execution.

        ``just_started=True`` right after :meth:`run_job`: a new execution can
        answer 404 for a moment, so a 404 is then transient (and retried).
        """
        what = f"execution {exec_id}"
        data = self._get(f"/execution/{int(exec_id)}", what=what, missing_is_transient=just_started)
        try:
            return _execution(data)
        except RundeckProtocolError as exc:
            raise RundeckProtocolError(f"{what}: {exc}") from exc

    def output_tail(self, exec_id: int, lines: int = 20) -> list[str]:
        """The last ``lines`` log lines, for a notification: not the whole log."""
        what = f"output of execution {exec_id}"
        data = self._get(f"/execution/{int(exec_id)}/output", what=what,
                         params={"lastlines": max(1, int(lines))})
        entries = data.get("entries")
        if isinstance(data.get("error"), str) and not entries:
            # e.g. the log file is not (yet) where Rundeck looks for it
            raise RundeckUnavailable(f"Rundeck has no output for {what}: {data['error']}",
                                     status=200)
        if not isinstance(entries, list):
            return []
        out: list[str] = []
        for e in entries:  # compacted form may give bare strings; we don't ask for it
            if isinstance(e, dict) and isinstance(e.get("log"), str):
                out.append(e["log"])
            elif isinstance(e, str):
                out.append(e)
        return out[-max(1, int(lines)):]

    def abort(self, exec_id: int) -> str:
        """Ask Rundeck to abort; returns ``pending``, ``aborted`` or ``failed``.

        ``failed`` usually means it already finished ("Job is not running").
        Aborting twice is harmless, so this call may be retried.
        """
        what = f"abort of execution {exec_id}"
        data = self._send("POST", f"/execution/{int(exec_id)}/abort", what=what, retry=True)
        result = _dict(data.get("abort"))
        status = _str(result.get("status"))
        if not status:
            raise RundeckProtocolError(f"{what}: answer has no abort.status")
        log.info("rundeck abort", execution=exec_id, status=status,
                 reason=_str(result.get("reason")) or None)
        return status

    # -- plumbing ---------------------------------------------------------------------

    def _get(self, path: str, *, what: str, params: Mapping[str, Any] | None = None,
             missing_is_transient: bool = False) -> dict[str, Any]:
        return self._send("GET", path, what=what, params=params, retry=True,
                          missing_is_transient=missing_is_transient)

    def _send(self, method: str, path: str, *, what: str, params: Mapping[str, Any] | None = None,
              body: dict[str, Any] | None = None, retry: bool = False, starts_job: bool = False,
              missing_is_transient: bool = False) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            return self._once(method, path, what=what, params=params, body=body,
                              starts_job=starts_job, missing_is_transient=missing_is_transient)
        if not retry or starts_job:
            return attempt()
        return retrying(RundeckUnavailable, attempts=self._settings.retries, log=log, what="rundeck",
                        sleep=self._sleep)(attempt)

    def _once(self, method: str, path: str, *, what: str, params: Mapping[str, Any] | None,
              body: dict[str, Any] | None, starts_job: bool,
              missing_is_transient: bool) -> dict[str, Any]:
        is_run = starts_job
        url = self._base + path
        try:
            # No redirects: requests would carry our custom token header to wherever
            # a redirect points, and a redirect here means rundeck.url is wrong anyway.
            resp = self._session.request(method, url, params=params, json=body,
                                         timeout=self._settings.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise self._no_answer(what, exc, is_run) from exc
        status = resp.status_code
        if 200 <= status < 300:
            try:
                data = resp.json()
            except ValueError:
                data = None
            if not isinstance(data, dict):
                raise RundeckProtocolError(
                    f"{what}: Rundeck answered HTTP {status} with {self._excerpt(resp)} instead of "
                    "a JSON object (a login page or proxy in the way?)",
                    status=status, maybe_started=is_run)
            return data
        if 300 <= status < 400:
            raise RundeckRejected(
                f"{what}: Rundeck redirected (HTTP {status}) to "
                f"{resp.headers.get('Location', '?')}; "
                "set rundeck.url to the address that serves the API (https?)", status=status)
        raise self._refusal(what, resp, is_run, missing_is_transient)

    def _no_answer(self, what: str, exc: requests.RequestException, is_run: bool) -> RundeckError:
        url = self._settings.url
        reason = getattr(exc.args[0], "reason", None) if exc.args else None
        never_sent = isinstance(exc, requests.ConnectTimeout) or isinstance(
            reason, NewConnectionError)
        if isinstance(exc, requests.ConnectTimeout):
            msg = f"cannot connect to {url} within {self._settings.timeout:g}s"
        elif isinstance(exc, requests.Timeout):
            msg = f"no answer from {url} within {self._settings.timeout:g}s"
        elif isinstance(exc, requests.exceptions.SSLError):
            msg, never_sent = f"TLS handshake with {url} failed (certificate?)", True
        elif never_sent:
            msg = f"cannot connect to {url}"
        elif isinstance(exc, requests.ConnectionError):
            msg = f"connection to {url} dropped before an answer"
        else:
            msg = f"request failed: {type(exc).__name__}"
        if is_run and not never_sent:
            msg += "; the job may have started"
        return RundeckUnavailable(f"Rundeck unavailable for {what}: {msg}",
                                  maybe_started=is_run and not never_sent)

    def _refusal(self, what: str, resp: requests.Response, is_run: bool,
                 missing_is_transient: bool) -> RundeckError:
        status = resp.status_code
        code, message = _envelope(resp)
        detail = self._scrub(message) if message else f"HTTP {status}, {self._excerpt(resp)}"
        tail = f" ({code})" if code else (f" (HTTP {status})" if message else "")
        if code == "api.error.api-version.unsupported":
            m = _CURRENT_VERSION.search(message or "")
            if m:
                tail += f"; set rundeck.api_version to at most {m.group(1)}"
        if status in (401, 403):
            return RundeckAuthError(f"Rundeck denied {what}: {detail}{tail}",
                                    status=status, code=code)
        if status == 404 and missing_is_transient:
            return RundeckUnavailable(f"Rundeck does not show {what} yet: {detail}{tail}",
                                      status=status, code=code)
        if status == 409:
            return RundeckUnavailable(f"Rundeck cannot run {what} now: {detail}{tail}",
                                      status=status, code=code)
        if code in _PERMANENT_CODES or (400 <= status < 500 and status not in (408, 429)):
            return RundeckRejected(f"Rundeck refused {what}: {detail}{tail}",
                                   status=status, code=code)
        # 5xx, 408, 429. With Rundeck's own errorCode the run was refused by Rundeck;
        # without it (proxy page, error page) the request may have gone through.
        maybe = is_run and code is None
        suffix = "; the job may have started" if maybe else ""
        return RundeckUnavailable(f"Rundeck unavailable for {what}: {detail}{tail}{suffix}",
                                  status=status, code=code, maybe_started=maybe)

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "****") if self._token else text

    def _excerpt(self, resp: requests.Response) -> str:
        text = resp.text or ""
        if not text.strip():
            return "empty body"
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip() or "no content type"
        if "<" in text:
            text = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", text)
            text = html.unescape(re.sub(r"(?s)<[^>]*>", " ", text))
        text = self._scrub(" ".join(text.split()))
        if len(text) > _EXCERPT:
            text = text[:_EXCERPT - 1] + "…"
        return f"{ctype}: {text!r}"

# -- parsing --------------------------------------------------------------------------

def _envelope(resp: requests.Response) -> tuple[str | None, str | None]:
    """(errorCode, message) from any of Rundeck's error shapes, or (None, None)."""
    try:
        data = resp.json()
    except ValueError:
        return None, None
    if not isinstance(data, dict):
        return None, None
    code = data.get("errorCode") if isinstance(data.get("errorCode"), str) else None
    message: str | None = None
    if isinstance(data.get("message"), str) and data["message"]:
        message = data["message"]
    elif isinstance(data.get("messages"), list) and data["messages"]:
        message = "; ".join(str(m) for m in data["messages"])
    elif isinstance(data.get("error"), str):  # error-page JSON, output endpoint
        message = data["error"]
    return code, message

def _execution(data: dict[str, Any]) -> Execution:
    exec_id = _int(data.get("id"))
    status = _str(data.get("status"))
    if exec_id is None or not status:
        raise RundeckProtocolError("the execution has no id or status")
    job = _dict(data.get("job"))
    failed = data.get("failedNodes")
    return Execution(
        id=exec_id, status=status, project=_str(data.get("project")),
        permalink=_str(data.get("permalink")), href=_str(data.get("href")),
        job_id=_str(job.get("id")) or None, job_name=_str(job.get("name")) or None,
        date_started_ms=_int(_dict(data.get("date-started")).get("unixtime")),
        date_ended_ms=_int(_dict(data.get("date-ended")).get("unixtime")),
        argstring=_str(data.get("argstring")), user=_str(data.get("user")),
        failed_nodes=tuple(str(n) for n in failed) if isinstance(failed, list) else (),
    )

def _seg(value: str) -> str:
    """One path segment: a job id from a rules file must not walk the API tree."""
    return quote(str(value), safe="")

def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}

def _str(value: Any) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))

def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None
