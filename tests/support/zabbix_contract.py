"""A local JSON-RPC server that behaves like the documented Zabbix API of one version
(6.0, 6.4, 7.0, 7.2, 7.4 or 8.0) where those versions differ, and records every call.

No packages exist to build 7.2, 7.4 or 8.0 here, and a test against the real 6.0 and 7.0
only proves what those two accept. So the rules each version enforces are written down
once, here, and Hefestus's real adapter (``hefestus.adapters.zabbix.ZabbixClient``) and
pipeline run against them. Where a rule comes from (tests/test_zabbix_contract.py cites
the pages): the parameter lists are read from the 6.0.14 and 7.0.22 frontend sources
(``CEvent::get``, ``CHostGroup::get``, ``CHost::get``, ``CTrigger::get``, ``CItem::get``,
``CHistory::get``, ``CRole::get``, ``CUser::login``/``checkAuthentication``,
``CEvent::validateAcknowledge``, ``core/CJsonRpc.php``, ``CLocalApiClient.php``) and moved
to the other versions by Zabbix's "API changes" pages; the error texts are those the real
6.0 and 7.0 answer.

Every call is kept as a :class:`Call` with the rules it broke (``problems``), including
those a version does not answer with an error: a lenient method (6.x ``event.get``)
silently ignores an unknown parameter, and 6.4/7.0 only log a deprecated one. A client
that obeys the documented API leaves every ``problems`` empty.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.zabbix_contract_data import ApiError, ContractMethods, invalid_params, seed

VERSIONS = ("6.0", "6.4", "7.0", "7.2", "7.4", "8.0")
ANONYMOUS = frozenset({"apiinfo.version", "user.login", "user.checkAuthentication"})
CONTENT_TYPES = ("application/json-rpc", "application/json", "application/jsonrequest")

_COMMON = "filter search searchByAny startSearch excludeSearch searchWildcardsEnabled output countOutput " \
          "sortfield sortorder limit editable preservekeys nopermissions"
#: What each method knows, per version: read from the 6.0.14 and 7.0.22 sources (``*_60``,
#: ``*_70``), then the API changes pages' additions (6.4: ``symptom``; 7.4: ``maxValueSize``)
#: and removals (7.2).
_EVENT_60 = ("eventids groupids hostids objectids source object value severities eventid_from eventid_till "
             "time_from time_till problem_time_from problem_time_till acknowledged suppressed evaltype tags "
             "groupCount select_acknowledges select_alerts selectHosts selectRelatedObject selectSuppressionData "
             f"selectTags {_COMMON}")
_EVENT_70 = (_EVENT_60.replace("groupCount ", "") + " trigger_severities action action_userids symptom groupBy "
             "selectAcknowledges selectAlerts")
_HOSTGROUP_60 = ("groupids hostids templateids graphids triggerids maintenanceids monitored_hosts templated_hosts "
                 "real_hosts with_hosts_and_templates with_items with_item_prototypes with_simple_graph_items "
                 "with_simple_graph_item_prototypes with_monitored_items with_triggers with_monitored_triggers "
                 "with_httptests with_monitored_httptests with_graphs with_graph_prototypes selectHosts "
                 f"selectTemplates selectGroupDiscovery selectDiscoveryRule selectHostPrototype groupCount limitSelects {_COMMON}")
_HOSTGROUP_64 = ("groupids hostids graphids triggerids maintenanceids monitored_hosts with_monitored_hosts real_hosts "
                 "with_hosts with_items with_item_prototypes with_simple_graph_items with_simple_graph_item_prototypes "
                 "with_monitored_items with_triggers with_monitored_triggers with_httptests with_monitored_httptests "
                 "with_graphs with_graph_prototypes selectHosts selectGroupDiscoveries selectDiscoveryRules "
                 f"selectHostPrototypes limitSelects {_COMMON}")
_HOST_60 = ("groupids hostids proxyids templateids interfaceids itemids triggerids maintenanceids graphids "
            "dserviceids httptestids monitored_hosts templated_hosts proxy_hosts with_items with_item_prototypes "
            "with_simple_graph_items with_simple_graph_item_prototypes with_monitored_items with_triggers "
            "with_monitored_triggers with_httptests with_monitored_httptests with_graphs with_graph_prototypes "
            "withProblemsSuppressed evaltype tags severities inheritedTags searchInventory selectGroups "
            "selectParentTemplates selectItems selectDiscoveries selectTriggers selectGraphs selectMacros "
            "selectDashboards selectInterfaces selectInventory selectHttpTests selectDiscoveryRule "
            f"selectHostDiscovery selectTags selectInheritedTags selectValueMaps groupCount limitSelects {_COMMON}")
_TRIGGER = ("groupids templateids hostids triggerids itemids functions inherited dependent templated monitored "
            "active maintenance withUnacknowledgedEvents withAcknowledgedEvents withLastEventUnacknowledged "
            "skipDependent lastChangeSince lastChangeTill group host only_true min_severity evaltype tags "
            "expandDescription expandComment expandExpression selectGroups selectHosts selectItems selectFunctions "
            "selectDependencies selectDiscoveryRule selectLastEvent selectTags selectTriggerDiscovery groupCount "
            f"limitSelects {_COMMON}")
_ITEM = ("groupids templateids hostids proxyids itemids interfaceids graphids triggerids webitems inherited "
         "templated monitored group host with_triggers evaltype tags selectHosts selectInterfaces selectTags "
         "selectTriggers selectGraphs selectDiscoveryRule selectItemDiscovery selectPreprocessing selectValueMap "
         f"groupCount limitSelects {_COMMON}")
_HISTORY = f"history hostids itemids time_from time_till {_COMMON}"
_ROLE = f"roleids selectRules selectUsers {_COMMON}"
_EVENT_OUTPUT = {"eventid", "source", "object", "objectid", "clock", "value", "acknowledged", "ns", "name",
                 "severity", "r_eventid", "c_eventid", "correlationid", "userid", "opdata", "suppressed", "urls"}
#: event.get ``filter`` fields from 7.0 (e.g. ``clock`` is refused there, accepted by 6.x).
_EVENT_FILTER_70 = {"eventid", "source", "object", "objectid", "value", "acknowledged", "name", "severity",
                    "cause_eventid"}

#: Deprecated in 7.0 (accepted, logged), removed in 7.2 (refused).
_RETIRED_IN_72 = {"event.get": {"select_acknowledges", "select_alerts"}, "host.get": {"selectGroups"},
                  "trigger.get": {"selectGroups"}, "hostgroup.get": {"monitored_hosts", "real_hosts"}}


def v(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


@dataclass(frozen=True)
class Rules:
    """What one version accepts, refuses, ignores and merely logs as deprecated."""

    version: str

    @property
    def bearer(self) -> bool:
        """``Authorization: Bearer`` is read (6.4+); 6.0 ignores the header."""
        return v(self.version) >= (6, 4)

    @property
    def body_auth(self) -> str:
        """The ``auth`` member of the request body: "ok", "deprecated" (6.4, 7.0), "removed" (7.2+)."""
        return "ok" if v(self.version) < (6, 4) else "deprecated" if v(self.version) < (7, 2) else "removed"

    def known(self, method: str) -> set[str] | None:
        """The parameters ``method`` knows (None: not modelled, anything goes)."""
        new = v(self.version) >= (7, 0)
        six_four = v(self.version) >= (6, 4)
        lists = {
            "event.get": _EVENT_70 if new else _EVENT_60 + (" symptom" if six_four else ""),
            "hostgroup.get": _HOSTGROUP_64 if six_four else _HOSTGROUP_60,
            "host.get": _HOST_60 + ("" if self.version == "6.0" else " proxy_groupids selectHostGroups"),
            "trigger.get": _TRIGGER + ("" if self.version == "6.0" else " selectHostGroups selectTemplateGroups"),
            "item.get": _ITEM,
            "history.get": _HISTORY + (" maxValueSize" if v(self.version) >= (7, 4) else ""),
            "role.get": _ROLE,
            "user.login": "username password userData" + (" user" if not six_four else ""),
            "user.checkAuthentication": "sessionid token extend",
            "event.acknowledge": "eventids action message severity" + (
                " suppress_until cause_eventid" if six_four else ""),
            "apiinfo.version": "",
        }
        if method not in lists:
            return None
        names = set(lists[method].split())
        return names - self.removed(method)

    def strict(self, method: str) -> bool:
        """Whether an unknown parameter is refused (-32602) rather than silently ignored. 6.0.14
        validates event.get and hostgroup.get loosely; 6.4 is taken to do the same (its pages
        list no such change), 7.0.22 strictly."""
        always = {"history.get", "role.get", "user.login", "user.checkAuthentication", "event.acknowledge",
                  "apiinfo.version"}
        return method in always or (v(self.version) >= (7, 0) and method in {"event.get", "hostgroup.get"})

    def removed(self, method: str) -> set[str]:
        """Deprecated in 7.0, removed in 7.2 (ZBXNEXT-9452). (``user.login``'s ``user``, removed
        in 6.4 by ZBXNEXT-8085, is simply not in :meth:`known` from 6.4.)"""
        return _RETIRED_IN_72.get(method, set()) if v(self.version) >= (7, 2) else set()

    def deprecated(self, method: str) -> set[str]:
        """Accepted with a deprecation notice in the frontend log ("Parameter ... is deprecated")."""
        if self.version == "7.0":
            return _RETIRED_IN_72.get(method, set())
        if self.version == "6.4":  # replaced by selectHostGroups / with_hosts in 6.2
            return {m: p for m, p in _RETIRED_IN_72.items() if m != "event.get"}.get(method, set())
        return {"user"} if method == "user.login" and self.version == "6.0" else set()

    def action_bits(self) -> int:
        """event.acknowledge ``action``: 1-16 (6.0), suppress 32/64 (6.2+), rank 128/256 (6.4+)."""
        return 511 if v(self.version) >= (6, 4) else 31


@dataclass(frozen=True)
class Call:
    method: str
    params: Any
    body_auth: bool   # an ``auth`` member was in the body
    bearer: bool      # an ``Authorization: Bearer`` header was sent
    error: dict[str, Any] | None
    problems: tuple[str, ...]


@dataclass
class ZabbixContract(ContractMethods):
    """One documented version, with a user ``hefestus`` (password or API token) whose role
    may add problem comments, two hosts in two groups, triggers, items, history and events."""

    version: str
    password: str = "Hx-contract-S3cret!"
    token: str = field(default_factory=lambda: secrets.token_hex(32))  # API tokens are 64 hex chars
    userid: str = "17"
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert self.version in VERSIONS, self.version
        self.rules = Rules(self.version)
        self.sessions: dict[str, str] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.groups, self.hosts, self.triggers, self.items, self.history, self.events = seed()
        self.users = {self.userid: {"userid": self.userid, "username": "hefestus", "roleid": "4", "type": "1"},
                      "3": {"userid": "3", "username": "operator", "roleid": "2", "type": "2"}}
        self.roles = {"4": {"roleid": "4", "name": "Hefestus", "rules": {
            "actions.default_access": "0", "api.access": "1", "api.mode": "0", "api": [],
            "actions": [{"name": "add_problem_comments", "status": "1"},
                        {"name": "acknowledge_problems", "status": "0"}]}}}

    # -- life cycle ---------------------------------------------------------------------

    def __enter__(self) -> ZabbixContract:
        """Serve on a free local port until the ``with`` block ends."""
        contract = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

            def log_message(self, *_: Any) -> None:
                return

            def do_POST(self) -> None:
                status, body = contract.handle(self.headers.get("Content-Type", ""),
                                               self.headers.get("Authorization", ""),
                                               self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- one request --------------------------------------------------------------------

    def handle(self, content_type: str, authorization: str, raw: bytes) -> tuple[int, bytes]:
        """HTTP status and body for one POST to api_jsonrpc.php."""
        if content_type.split(";")[0].strip().lower() not in CONTENT_TYPES:
            return 412, b""  # what the frontend answers to a wrong Content-Type
        try:
            request = json.loads(raw)
        except ValueError:
            return 200, self._reply(None, ApiError(-32700, "Parse error", "Invalid JSON."))
        if not isinstance(request, dict):
            return 200, self._reply(None, ApiError(-32600, "Invalid request.", "Not one request object."))
        method, params = str(request.get("method", "")), request.get("params", {})
        bearer = authorization[7:].strip() if authorization.startswith("Bearer ") else None
        problems: list[str] = []
        error: ApiError | None = None
        result: Any = None
        try:
            with self._lock:
                result = self._call(method, params, request, bearer, problems)
        except ApiError as exc:
            error = exc
        with self._lock:
            self.calls.append(Call(method, params, "auth" in request, bearer is not None,
                                   error.body if error else None, tuple(problems)))
        return 200, self._reply(request.get("id"), error, result)

    @staticmethod
    def _reply(callid: Any, error: ApiError | None, result: Any = None) -> bytes:
        body = {"jsonrpc": "2.0", "error": error.body} if error else {"jsonrpc": "2.0", "result": result}
        return json.dumps({**body, "id": callid}).encode()

    def _call(self, method: str, params: Any, request: dict[str, Any], bearer: str | None,
              problems: list[str]) -> Any:
        rules = self.rules
        if "auth" in request and rules.body_auth == "removed":
            problems.append("auth in the body (removed in 7.2)")
            raise ApiError(-32600, "Invalid request.", 'Invalid parameter "/": unexpected parameter "auth".')
        body_auth = request.get("auth")
        if body_auth is not None and rules.body_auth == "deprecated":
            problems.append(f"auth in the body (deprecated in {self.version})")
        header = bearer if rules.bearer else None
        if method in ANONYMOUS:
            if body_auth is not None or header is not None:
                problems.append(f"{method} called with auth")
                where = 'the "auth" parameter' if body_auth is not None else "authorization header"
                raise invalid_params(f'The "{method}" method must be called without {where}.')
            userid = None
        else:
            userid = self._authenticate(body_auth if body_auth is not None else header)
        if not isinstance(params, dict):
            params = {}  # the few list-taking methods are not used here
        self._check_params(method, params, problems)
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            raise ApiError(-32601, "Method not found.", f'Incorrect method "{method}".')
        return handler(params, userid)

    def _authenticate(self, auth: str | None) -> str:
        if not auth:
            raise invalid_params("Not authorized.")
        if len(auth) == 64:
            if auth != self.token:
                raise invalid_params("Not authorized.")
            return self.userid
        if auth not in self.sessions:
            raise invalid_params("Session terminated, re-login, please.")
        return self.sessions[auth]

    def _check_params(self, method: str, params: dict[str, Any], problems: list[str]) -> None:
        rules = self.rules
        known = rules.known(method)
        if known is None:
            return
        for name in params:
            if name in rules.removed(method):
                problems.append(f"{method}: {name} (removed in 7.2)")
                raise invalid_params(f'Invalid parameter "/": unexpected parameter "{name}".')
            if name in rules.deprecated(method):
                problems.append(f"{method}: {name} (deprecated in {self.version})")
            elif name not in known:
                if rules.strict(method):
                    problems.append(f"{method}: unknown parameter {name}")
                    raise invalid_params(f'Invalid parameter "/": unexpected parameter "{name}".')
                problems.append(f"{method}: unknown parameter {name} (silently ignored by {self.version})")
        if method == "event.get":
            output = params.get("output", "extend")
            for name in output if isinstance(output, list) else []:
                if name not in _EVENT_OUTPUT | ({"cause_eventid"} if v(self.version) >= (6, 4) else set()):
                    problems.append(f"event.get: unknown output field {name}")
                    raise invalid_params(f'Invalid parameter "/output/{output.index(name) + 1}": '
                                         "value must be one of the event fields.")
            for name in params.get("filter") or {}:
                if v(self.version) >= (7, 0) and name not in _EVENT_FILTER_70:
                    problems.append(f"event.get: filter on {name}")
                    raise invalid_params(f'Invalid parameter "/filter": unexpected parameter "{name}".')
