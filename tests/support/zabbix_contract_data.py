"""What the Zabbix contract server (tests/support/zabbix_contract.py) serves: its data, and
the API methods Hefestus calls, answered as Zabbix answers them once a call has passed the
version's rules. Kept apart so each module stays readable; the rules are not here."""

from __future__ import annotations

import itertools
import secrets
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.zabbix_contract import Rules

UNIT_FAILED = "Nov 24 03:12:09 web-1 systemd[1]: nginx.service: Failed with result 'exit-code'."
DISK_FULL = "kernel: write error: No space left on device"
#: Zabbix's own text for an id that is unknown or not readable by the API user.
NO_OBJECT = "No permissions to referred object or it does not exist!"


class ApiError(Exception):
    """A JSON-RPC error object, as the frontend builds it (code, message, data)."""

    def __init__(self, code: int, message: str, data: str) -> None:
        super().__init__(data)
        self.body = {"code": code, "message": message, "data": data}


def invalid_params(data: str) -> ApiError:
    return ApiError(-32602, "Invalid params.", data)


def app_error(data: str) -> ApiError:
    return ApiError(-32500, "Application error.", data)


Rows = dict[str, dict[str, Any]]


def seed() -> tuple[dict[str, str], Rows, dict[str, list[str]], Rows, list[dict[str, Any]], Rows]:
    """Two host groups, two hosts, a text, a log and a numeric item, two triggers; no events
    yet (tests add them with :meth:`ContractMethods.add_problem`, so they choose the ids)."""
    groups = {"2": "Linux servers", "5": "Databases"}
    hosts: Rows = {"10101": {"hostid": "10101", "host": "web-1", "name": "Web 1", "groupids": ["2"]},
                   "10102": {"hostid": "10102", "host": "db-1", "name": "DB 1", "groupids": ["5", "2"]}}
    items: Rows = {
        "30001": {"itemid": "30001", "hostid": "10101", "name": "Application log", "key_": "app.log",
                  "value_type": "4", "lastvalue": "", "units": ""},
        "30002": {"itemid": "30002", "hostid": "10102", "name": "Kernel log", "key_": "log[/var/log/kern.log]",
                  "value_type": "2", "lastvalue": "", "units": ""},
        "30003": {"itemid": "30003", "hostid": "10101", "name": "CPU load", "key_": "system.cpu.load",
                  "value_type": "0", "lastvalue": "0.42", "units": ""},
    }
    triggers = {"20001": ["30001", "30003"], "20002": ["30002"]}
    return groups, hosts, triggers, items, [], {}


def _ids(value: Any) -> set[str]:
    return {str(x) for x in (value if isinstance(value, list) else [value])}


def _pick(row: dict[str, Any], output: Any) -> dict[str, Any]:
    public = {k: val for k, val in row.items() if not k.startswith("_")}
    if output == "extend" or output is None:
        return public
    return {k: public[k] for k in (output if isinstance(output, list) else [output]) if k in public}


def _sorted(rows: list[dict[str, Any]], params: dict[str, Any], default: str) -> list[dict[str, Any]]:
    fields = params.get("sortfield") or [default]
    key = (fields if isinstance(fields, list) else [fields])[0]
    order = params.get("sortorder") or "ASC"
    desc = (order[0] if isinstance(order, list) else order).upper() == "DESC"
    rows = sorted(rows, key=lambda r: (int(r[key]), int(r.get("ns", 0))), reverse=desc)
    return rows[: int(params["limit"])] if params.get("limit") else rows


class ContractMethods:
    """The methods, ``_m_<api>_<method>(params, userid)``; ``userid`` is None for anonymous ones."""

    version: str
    rules: Rules
    password: str
    token: str
    userid: str
    sessions: dict[str, str]
    users: Rows
    roles: Rows
    groups: dict[str, str]
    hosts: Rows
    triggers: dict[str, list[str]]
    items: Rows
    history: list[dict[str, Any]]
    events: Rows
    _ack_ids = itertools.count(1)

    def add_problem(self, eventid: int, triggerid: str, text: str, *, clock: int | None = None, severity: int = 4,
                    acks: tuple[tuple[str, str], ...] = (), resolved: bool = False, suppressed: bool = False,
                    cause: int = 0) -> None:
        """A problem event of ``triggerid`` raised by ``text`` in its first text item's history;
        ``acks`` are (userid, message) already on it; ``cause``: ranked a symptom of it (6.4+)."""
        clock = clock if clock is not None else int(time.time()) - 60
        itemid = self.triggers[triggerid][0]
        self.history.append({"itemid": itemid, "clock": str(clock), "ns": "500", "value": text})
        self.items[itemid]["lastvalue"] = text
        hostid = self.items[itemid]["hostid"]
        self.events[str(eventid)] = {
            "eventid": str(eventid), "source": "0", "object": "0", "objectid": triggerid, "clock": str(clock),
            "ns": "500", "value": "1", "acknowledged": "0", "name": f"Error on {self.hosts[hostid]['host']}: "
            + text[:20] + "...", "severity": str(severity), "r_eventid": str(eventid + 1) if resolved else "0",
            "c_eventid": "0", "correlationid": "0", "userid": "0", "opdata": text[:20] + "...",
            "suppressed": "1" if suppressed else "0", "urls": [], "_hostid": hostid,
            "_tags": [{"tag": "service", "value": "nginx"}],
            "_acks": [{"acknowledgeid": str(next(self._ack_ids)), "userid": u, "clock": str(clock + 1),
                       "message": m, "action": "4", "old_severity": "0", "new_severity": "0"} for u, m in acks],
        }
        if self.rules.version != "6.0":
            self.events[str(eventid)]["cause_eventid"] = str(cause)
        else:
            assert not cause, "6.0 has no cause and symptom events"

    # -- anonymous ------------------------------------------------------------------------

    def _m_apiinfo_version(self, params: dict[str, Any], userid: str | None) -> str:
        return f"{self.version}.0"

    def _m_user_login(self, params: dict[str, Any], userid: str | None) -> str:
        name = params.get("username", params.get("user"))
        if name is None or "password" not in params:
            raise invalid_params('Invalid parameter "/": the parameter "username" is missing.')
        user = next((u for u in self.users.values() if u["username"] == name), None)
        if user is None or params["password"] != self.password:
            raise app_error("Incorrect user name or password or account is temporarily blocked.")
        session = secrets.token_hex(16)
        self.sessions[session] = str(user["userid"])
        return session

    def _m_user_checkAuthentication(self, params: dict[str, Any], userid: str | None) -> dict[str, Any]:
        if ("sessionid" in params) == ("token" in params):
            raise invalid_params("Session ID or token is expected.")
        if "token" in params:
            if params["token"] != self.token:
                raise invalid_params("Not authorized.")
            return dict(self.users[self.userid])
        if params["sessionid"] not in self.sessions:
            raise invalid_params("Session terminated, re-login, please.")
        return {**self.users[self.sessions[params["sessionid"]]], "sessionid": params["sessionid"]}

    # -- reads ----------------------------------------------------------------------------

    def _m_event_get(self, params: dict[str, Any], userid: str | None) -> list[dict[str, Any]]:
        rows = list(self.events.values())
        checks: list[tuple[str, Any]] = [
            ("source", lambda e, x: e["source"] == str(x)), ("object", lambda e, x: e["object"] == str(x)),
            ("value", lambda e, x: e["value"] in _ids(x)), ("eventids", lambda e, x: e["eventid"] in _ids(x)),
            ("objectids", lambda e, x: e["objectid"] in _ids(x)),
            ("eventid_from", lambda e, x: int(e["eventid"]) >= int(x)),
            ("eventid_till", lambda e, x: int(e["eventid"]) <= int(x)),
            ("time_from", lambda e, x: int(e["clock"]) >= int(x)), ("time_till", lambda e, x: int(e["clock"]) <= int(x)),
            ("severities", lambda e, x: e["severity"] in _ids(x)),
            ("suppressed", lambda e, x: e["suppressed"] == ("1" if x else "0")),
            ("acknowledged", lambda e, x: e["acknowledged"] == ("1" if x else "0")),
            ("groupids", lambda e, x: bool(set(self.hosts[e["_hostid"]]["groupids"]) & _ids(x))),
            ("action", lambda e, x: any(int(a["action"]) & int(x) == int(x) for a in e["_acks"])),
            ("action_userids", lambda e, x: any(a["userid"] in _ids(x) for a in e["_acks"])),
        ]
        for name, ok in checks:
            if params.get(name) is not None and name in (self.rules.known("event.get") or set()):
                rows = [e for e in rows if ok(e, params[name])]
        out = []
        # The acknowledgement parameter this version reads (an ignored spelling returns none).
        acks = next((p for p in ("selectAcknowledges", "select_acknowledges")
                     if p in params and p in (self.rules.known("event.get") or set())), None)
        for e in _sorted(rows, params, "eventid"):
            row = _pick(e, params.get("output", "extend"))
            if params.get("selectHosts") is not None:
                row["hosts"] = [_pick(self.hosts[e["_hostid"]], params["selectHosts"])]
            if params.get("selectTags") is not None:
                row["tags"] = [_pick(t, params["selectTags"]) for t in e["_tags"]]
            if acks is not None:
                row["acknowledges"] = [_pick(a, params[acks]) for a in e["_acks"]]
            out.append(row)
        return out

    def _m_host_get(self, params: dict[str, Any], userid: str | None) -> list[dict[str, Any]]:
        ids = _ids(params["hostids"]) if params.get("hostids") is not None else set(self.hosts)
        known = self.rules.known("host.get") or set()
        out = []
        for hostid in sorted(ids & set(self.hosts)):
            host = self.hosts[hostid]
            row = _pick({k: val for k, val in host.items() if k != "groupids"}, params.get("output", "extend"))
            for param, key in (("selectHostGroups", "hostgroups"), ("selectGroups", "groups")):
                if param in params and param in known:
                    row[key] = [_pick({"groupid": g, "name": self.groups[g]}, params[param]) for g in host["groupids"]]
            out.append(row)
        return out

    def _m_hostgroup_get(self, params: dict[str, Any], userid: str | None) -> list[dict[str, Any]]:
        names = _ids((params.get("filter") or {}).get("name", list(self.groups.values())))
        return [_pick({"groupid": g, "name": n}, params.get("output", "extend"))
                for g, n in self.groups.items() if n in names]

    def _m_trigger_get(self, params: dict[str, Any], userid: str | None) -> list[dict[str, Any]]:
        ids = _ids(params.get("triggerids", list(self.triggers)))
        known = self.rules.known("trigger.get") or set()
        out = []
        for t in sorted(ids & set(self.triggers)):
            itemids = self.triggers[t]
            functions = [{"functionid": f"{t}{n}", "itemid": i} for n, i in enumerate(itemids, 1)]
            hostids = sorted({self.items[i]["hostid"] for i in itemids})
            row = _pick({"triggerid": t, "expression": " or ".join(f"{{{f['functionid']}}}<>0" for f in functions),
                         "opdata": "{ITEM.VALUE1}"}, params.get("output", "extend"))
            if params.get("selectItems") is not None:
                row["items"] = [_pick({"itemid": i}, params["selectItems"]) for i in itemids]
            if params.get("selectFunctions") is not None:
                row["functions"] = [_pick(f, params["selectFunctions"]) for f in functions]
            if params.get("selectHosts") is not None:
                row["hosts"] = [_pick({k: val for k, val in self.hosts[h].items() if k != "groupids"},
                                      params["selectHosts"]) for h in hostids]
            for param, key in (("selectHostGroups", "hostgroups"), ("selectGroups", "groups")):
                if param in params and param in known:
                    groupids = sorted({g for h in hostids for g in self.hosts[h]["groupids"]})
                    row[key] = [_pick({"groupid": g, "name": self.groups[g]}, params[param]) for g in groupids]
            out.append(row)
        return out

    def _m_item_get(self, params: dict[str, Any], userid: str | None) -> list[dict[str, Any]]:
        ids = _ids(params.get("itemids", list(self.items)))
        return [_pick(self.items[i], params.get("output", "extend")) for i in sorted(ids & set(self.items))]

    def _m_history_get(self, params: dict[str, Any], userid: str | None) -> list[dict[str, Any]]:
        kind = str(params.get("history", 3))
        ids = _ids(params.get("itemids", list(self.items)))
        rows = [h for h in self.history if h["itemid"] in ids and self.items[h["itemid"]]["value_type"] == kind
                and int(params.get("time_from", 0)) <= int(h["clock"]) <= int(params.get("time_till", 2**31))]
        return [_pick(h, params.get("output", "extend")) for h in _sorted(rows, params, "clock")]

    def _m_role_get(self, params: dict[str, Any], userid: str | None) -> list[dict[str, Any]]:
        ids = _ids(params.get("roleids", list(self.roles)))
        out = []
        for r in sorted(ids & set(self.roles)):
            row = _pick({k: val for k, val in self.roles[r].items() if k != "rules"}, params.get("output", "extend"))
            if params.get("selectRules") is not None:
                row["rules"] = self.roles[r]["rules"]
            out.append(row)
        return out

    # -- writes ---------------------------------------------------------------------------

    def _m_event_acknowledge(self, params: dict[str, Any], userid: str | None) -> dict[str, Any]:
        assert userid is not None
        action = int(params.get("action", 0))
        allowed = self.rules.action_bits()
        if action < 1 or action & ~allowed:
            raise invalid_params(f'Invalid parameter "/action": value must be one of 1-{allowed}.')
        rules = self.roles[self.users[userid]["roleid"]]["rules"]
        rights = {a["name"]: a["status"] == "1" for a in rules["actions"]}
        if action & 4 and not rights.get("add_problem_comments"):
            raise invalid_params('Incorrect value for field "action": no permissions to add problem comments.')
        if action & 2 and not rights.get("acknowledge_problems"):
            raise invalid_params('Incorrect value for field "action": no permissions to acknowledge problems.')
        message = str(params.get("message", ""))
        if len(message) > 2048:
            raise app_error(f'Value is too long for field "message" - {len(message)} characters. '
                            "Allowed length is 2048 characters.")
        ids = sorted(_ids(params.get("eventids", [])), key=int)
        if not ids or any(i not in self.events for i in ids):
            raise app_error(NO_OBJECT)
        if action & 256 and str(params.get("cause_eventid", "")) not in self.events:
            raise invalid_params('Invalid parameter "/cause_eventid": an event is expected.')
        if action & 384:  # 128: rank as cause; 256: as symptom of ``cause_eventid`` (6.4+)
            for i in ids:
                self.events[i]["cause_eventid"] = str(params["cause_eventid"]) if action & 256 else "0"
        for i in ids:
            self.events[i]["_acks"].append({
                "acknowledgeid": str(next(self._ack_ids)), "userid": userid, "clock": str(int(time.time())),
                "message": message, "action": str(action), "old_severity": "0", "new_severity": "0"})
            if action & 2:
                self.events[i]["acknowledged"] = "1"
        return {"eventids": [int(i) for i in ids]}
