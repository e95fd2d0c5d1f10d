"""Zabbix API adapter (pyzabbix + requests), for Zabbix 6.0 LTS through 7.x.

What it owns, so nothing else has to know:

* auth: API token, or user/password with one re-login when the session
  expired ("Session terminated, re-login, please."); never a login loop,
  because five bad logins lock the account for 30 s;
* a timeout on every call (pyzabbix has none by default) and retries with
  exponential backoff for transient failures only;
* version differences: ``select_acknowledges`` (6.0) vs ``selectAcknowledges``
  (7.2 accepts only that), ``selectGroups`` vs ``selectHostGroups`` (6.2+);
  auth in the body (< 6.4) or a Bearer header, which pyzabbix picks from the
  detected version; the cause/symptom rank (``cause_eventid``) asked for from 6.4 only;
* raw dicts -> frozen :class:`~hefestus.values.Problem`, with the full item
  values, since ``opdata`` is cut to 20 characters per macro, in the cheapest
  calls: what a trigger shares with its events is read once per trigger, and
  ``opdata`` expanded here (:mod:`hefestus.adapters.zabbix_events`);
* the marker check's acknowledgements: from 7.0 read only for the events that
  carry a message at all (event.get ``action`` filter); before, with the page;
* who Hefestus is: its own user id, learned once after login, when the first
  events arrive (``user.checkAuthentication``, for a session or an API token alike), so only
  messages written by that user (or by ``hefestus_users``, other instances)
  count as Hefestus's marker: any user can type "[Hefestus]" in a comment.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any, TypeVar

import requests
import structlog
from packaging.version import Version
from pyzabbix import ZabbixAPI, ZabbixAPIException
from tenacity import Retrying

from hefestus.adapters import zabbix_events
from hefestus.adapters.retry import retrying
from hefestus.config import ZabbixSettings
from hefestus.errors import ZabbixAuthError, ZabbixRejected, ZabbixUnavailable
from hefestus.pipeline.ports import LISTING_LIMIT, OPEN_END
from hefestus.values import EventFilter, ItemValue, Problem, Severity

# pyzabbix logs whole request payloads (passwords included) at DEBUG: never let it.
logging.getLogger("pyzabbix").setLevel(logging.WARNING)
log = structlog.get_logger("hefestus.zabbix")

T = TypeVar("T")

#: No ``opdata``: event.get expands it event by event; it is expanded from the trigger's template
#: (hefestus.adapters.zabbix_events).
_EVENT_OUTPUT = ["eventid", "clock", "ns", "name", "severity", "acknowledged", "r_eventid", "objectid",
                 "suppressed"]
_SESSION_GONE = ("session terminated", "not authorized", "re-login")
_HISTORY_WINDOW = 600  # seconds before the oldest event searched for the triggering values


class ZabbixClient:
    """One authenticated connection to one Zabbix API."""

    def __init__(self, settings: ZabbixSettings, *, session: requests.Session | None = None,
                 sleep: Callable[[float], None] | None = None, hefestus_users: Collection[str] = ()) -> None:
        self._settings = settings
        #: Zabbix user ids of other Hefestus instances writing on the same events: their
        #: messages are markers too (``[zabbix] hefestus_users``).
        self._also_hefestus = frozenset(str(u) for u in hefestus_users)
        self.userid: str | None = None  # Hefestus's own Zabbix user, learned once (hefestus_userids)
        #: Called right before every write (``event.acknowledge``); raises to stop it. The
        #: composition root sets it to the leader lease's local check when instances share state.
        self.write_guard: Callable[[], None] | None = None
        self._session = session or requests.Session()
        self._session.verify = settings.verify_tls
        self._api = ZabbixAPI(settings.url, session=self._session, timeout=settings.timeout,
                              detect_version=True)
        self._sleep = sleep
        self._logged_in = False
        self._login_lock = threading.Lock()
        self.version: Version | None = None

    # -- plumbing ---------------------------------------------------------------------

    def _retrying(self) -> Retrying:
        return retrying(ZabbixUnavailable, attempts=self._settings.retries, log=log, what="zabbix",
                        sleep=self._sleep)

    def _raw(self, method: str, params: dict[str, Any] | list[Any]) -> Any:
        try:
            return self._api.do_request(method, params)["result"]
        except (requests.RequestException, ZabbixAPIException) as exc:
            raise self._translate(method, exc) from exc

    def _translate(self, method: str, exc: Exception) -> Exception:
        """Any client exception -> Unavailable (retry), AuthError or Rejected."""
        url = self._settings.url
        if isinstance(exc, requests.Timeout):
            return ZabbixUnavailable(f"{method}: no answer within {self._settings.timeout:g}s")
        if isinstance(exc, requests.ConnectionError):
            return ZabbixUnavailable(f"{method}: cannot connect to {url}")
        if isinstance(exc, requests.HTTPError):
            status = exc.response.status_code if exc.response is not None else 0
            if status >= 500 or status in (408, 429):
                return ZabbixUnavailable(f"{method}: HTTP {status} from {url}")
            return ZabbixRejected(f"{method}: HTTP {status} from {url}")
        if isinstance(exc, ZabbixAPIException):
            return _translate_api(method, exc)
        return ZabbixUnavailable(f"{method}: {type(exc).__name__}")

    def _login(self) -> None:
        s = self._settings
        try:
            if s.token is not None:
                self._api.login(api_token=s.token.get_secret_value())
            else:
                assert s.user and s.password
                self._api.login(user=s.user, password=s.password.get_secret_value())
        except (requests.RequestException, ZabbixAPIException) as exc:
            err = self._translate("user.login", exc)
            if isinstance(err, ZabbixRejected):
                err = ZabbixAuthError(f"login to {s.url} failed: {err.data or err}")
            raise err from exc
        self.version = self._api.version
        self._logged_in = True
        log.info("connected to zabbix", url=s.url, version=str(self.version),
                 auth_mode="token" if s.token else "user")

    def _whoami_params(self) -> dict[str, str]:
        """``user.checkAuthentication``'s argument: the token, or the session of the login."""
        if self._settings.token is not None:
            return {"token": self._settings.token.get_secret_value()}
        return {"sessionid": str(self._api.auth)}

    def call(self, method: str, *positional: Any, **named: Any) -> Any:
        """Call ``method`` with login, one re-login on an expired session, and retries.

        Most methods take named parameters; a few (``token.generate``) take a list.
        """
        params: dict[str, Any] | list[Any] = list(positional) if positional else named

        def attempt() -> Any:
            with self._login_lock:  # writes run on several threads: one login for all of them
                if not self._logged_in:
                    self._login()
                session = self._api.auth
            try:
                return self._raw(method, params)
            except ZabbixAuthError:
                if self._settings.token is not None:
                    raise  # a token that stops working won't start working again
                with self._login_lock:
                    if self._api.auth == session:  # no other thread has logged in again meanwhile
                        log.info("zabbix session expired, logging in again")
                        self._logged_in = False
                        self._login()
                return self._raw(method, params)
        return self._retrying()(attempt)

    def connect(self) -> str:
        self.call("apiinfo.version")
        if not self._logged_in:
            self._login()
        return str(self.version)

    # -- version quirks ---------------------------------------------------------------

    def _at_least(self, v: str) -> bool:
        if self.version is None:  # parameters depend on the version: learn it first
            self.connect()
        return self.version is not None and self.version >= Version(v)

    @property
    def _acks_param(self) -> str:
        return "selectAcknowledges" if self._at_least("7.0") else "select_acknowledges"

    @property
    def _rank_output(self) -> list[str]:
        """Cause and symptom events exist from 6.4: never ask 6.0 for ``cause_eventid``."""
        return ["cause_eventid"] if self._at_least("6.4") else []

    @property
    def _groups_param(self) -> tuple[str, str]:
        return ("selectHostGroups", "hostgroups") if self._at_least("6.2") else ("selectGroups", "groups")

    # -- reads ------------------------------------------------------------------------

    def group_ids(self, names: Sequence[str]) -> tuple[str, ...]:
        if not names:
            return ()
        rows = self.call("hostgroup.get", output=["groupid", "name"], filter={"name": list(names)})
        found = {r["name"]: r["groupid"] for r in rows}
        missing = [n for n in names if n not in found]
        if missing:
            raise ZabbixRejected(f"host group(s) not found or not readable: {', '.join(missing)}")
        return tuple(found[n] for n in names)

    def latest_event_id(self) -> int:
        rows = self.call("event.get", output=["eventid"], sortfield=["eventid"], sortorder="DESC", limit=1)
        return int(rows[0]["eventid"]) if rows else 0

    def first_event_id_since(self, clock: int) -> int | None:
        rows = self.call("event.get", output=["eventid"], source=0, object=0, value=1,
                         time_from=clock, sortfield=["eventid"], sortorder="ASC", limit=1)
        return int(rows[0]["eventid"]) if rows else None

    def _base(self, flt: EventFilter) -> dict[str, Any]:
        params: dict[str, Any] = {"source": 0, "object": 0, "value": 1,
                                  "sortfield": ["eventid"], "sortorder": "ASC"}
        if flt.min_severity > Severity.NOT_CLASSIFIED:
            params["severities"] = [s.value for s in Severity if s >= flt.min_severity]
        if flt.groupids:
            params["groupids"] = list(flt.groupids)
        if not flt.include_suppressed:
            params["suppressed"] = False
        return params

    def event_ids(self, flt: EventFilter, *, eventid_from: int, eventid_till: int) -> list[int]:
        """Cheap listing (ids only): the overlap window behind the cursor and, open-ended
        (``OPEN_END``), whatever came after it, so an idle poll is this one call."""
        if eventid_till < eventid_from:
            return []
        bound: dict[str, int] = ({"limit": LISTING_LIMIT} if eventid_till >= OPEN_END
                                 else {"eventid_till": eventid_till})
        rows = self.call("event.get", **self._base(flt), output=["eventid"], eventid_from=eventid_from, **bound)
        return [int(r["eventid"]) for r in rows]

    def events(self, flt: EventFilter, *, eventid_from: int | None = None,
               eventids: Sequence[int] | None = None, limit: int | None = None) -> list[Problem]:
        """Problem events with hosts, groups, tags, acknowledgements and item values.

        One event.get for the events' own fields and tags, then what their triggers share,
        once per distinct trigger (:mod:`hefestus.adapters.zabbix_events`): a page of 1,000
        events of 20 triggers costs the same few calls as one event.
        """
        params: dict[str, Any] = {**self._base(flt), "output": _EVENT_OUTPUT + self._rank_output,
                                  "selectTags": ["tag", "value"], **self._acks_select()}
        if eventids is not None:
            if not eventids:
                return []
            params["eventids"] = [str(e) for e in eventids]
        if eventid_from is not None:
            params["eventid_from"] = eventid_from
        if limit is not None:
            params["limit"] = limit
        rows: list[dict[str, Any]] = self.call("event.get", **params)
        if not rows:
            return []
        triggers = self._triggers({r["objectid"] for r in rows})
        ours = self.hefestus_userids()
        self._marker_acks(rows, ours)
        items = self._item_values(rows, triggers)
        causes = self._causes(rows, triggers)
        none = zabbix_events.Trigger()
        return [zabbix_events.problem(r, triggers.get(r["objectid"], none), *items.get(r["eventid"], ((), "")),
                                      ours, causes) for r in rows]

    def _acks_select(self) -> dict[str, list[str]]:
        """Acknowledgements in the page's event.get: only where no cheaper marker check exists
        (before 7.0, which has no ``action`` filter); see :meth:`_marker_acks`."""
        return {} if self._at_least("7.0") else {self._acks_param: ["userid", "message"]}

    def _marker_acks(self, rows: list[dict[str, Any]], ours: frozenset[str]) -> None:
        """From 7.0, the acknowledgements of only those events of the page that carry a message
        at all (event.get ``action`` = 4, one EXISTS query): in a storm, none, so nothing is
        read; an event someone commented on gets all its acknowledgements, as before."""
        if not self._at_least("7.0"):
            return
        ids = [r["eventid"] for r in rows]
        commented = self.call("event.get", eventids=ids, source=0, object=0, value=1, action=4,
                              output=["eventid"], **{self._acks_param: ["userid", "message"]})
        acks = {r["eventid"]: r.get("acknowledges", []) for r in commented}
        for r in rows:
            r["acknowledges"] = acks.get(r["eventid"], [])

    def _causes(self, rows: list[dict[str, Any]],
                triggers: dict[str, zabbix_events.Trigger]) -> dict[str, tuple[str, str]]:
        """(host, problem name) of each symptom's cause, for its pointer; read once per page.
        A cause Hefestus may not read is simply absent."""
        wanted = {str(r.get("cause_eventid", "0")) for r in rows} - {"0"}
        if not wanted:
            return {}
        out: dict[str, tuple[str, str]] = {}
        for r in rows:
            if r["eventid"] in wanted:
                hosts = triggers.get(r["objectid"], zabbix_events.Trigger()).hosts
                out[r["eventid"]] = (hosts[0].get("host", "") if hosts else "", r.get("name", ""))
        missing = sorted(wanted - set(out), key=int)
        if missing:
            for r in self.call("event.get", eventids=missing, source=0, object=0,
                               output=["eventid", "name"], selectHosts=["host"]):
                found = r.get("hosts") or [{}]
                out[r["eventid"]] = (found[0].get("host", ""), r.get("name", ""))
        return out

    def hefestus_userids(self) -> frozenset[str]:
        """Whose messages are Hefestus's: its own user (asked once), plus ``hefestus_users``."""
        if self.userid is None:  # the user behind a session or a token does not change
            if not self._logged_in:
                self._login()
            me = self.call("user.checkAuthentication", **self._whoami_params())
            if not isinstance(me, dict) or not me.get("userid"):
                raise ZabbixRejected("user.checkAuthentication: the answer names no userid")
            self.userid = str(me["userid"])
        return self._also_hefestus | {self.userid}

    def _triggers(self, triggerids: Iterable[str]) -> dict[str, zabbix_events.Trigger]:
        """Hosts, host groups, items and operational data of each trigger, in one call."""
        param, key = self._groups_param
        rows = self.call("trigger.get", triggerids=sorted(set(triggerids)),
                         output=["triggerid", "expression", "opdata"], selectHosts=["hostid", "host", "name"],
                         selectItems=["itemid"], selectFunctions=["functionid", "itemid"], **{param: ["name"]})
        return {r["triggerid"]: zabbix_events.trigger(r, key) for r in rows}

    def _item_values(self, events: list[dict[str, Any]], triggers: dict[str, zabbix_events.Trigger],
                     ) -> dict[str, tuple[tuple[ItemValue, ...], str]]:
        """For each event, its trigger's items with the value that stood at the event's clock,
        and its operational data expanded from them."""
        itemids = sorted({i for t in triggers.values() for i in (*t.itemids, *t.macro_itemids)})
        if not itemids:
            return {}
        items = {i["itemid"]: i for i in self.call(
            "item.get", itemids=itemids, output=["itemid", "name", "key_", "value_type", "lastvalue", "units"],
            webitems=True)}
        history: dict[str, list[tuple[tuple[int, int], str]]] = defaultdict(list)
        by_type: dict[int, list[str]] = defaultdict(list)
        for itemid, item in items.items():
            if int(item["value_type"]) in zabbix_events.TEXT_TYPES:
                by_type[int(item["value_type"])].append(itemid)
        clocks = [int(e["clock"]) for e in events]
        for vt, ids in by_type.items():
            for h in self.call("history.get", history=vt, itemids=ids, output="extend",
                               time_from=min(clocks) - _HISTORY_WINDOW, time_till=max(clocks),
                               sortfield="clock", sortorder="DESC", limit=20000):
                history[h["itemid"]].append(((int(h["clock"]), int(h.get("ns", 0))), h["value"]))
        return zabbix_events.item_values(events, triggers, items, history)

    def problem_resolved(self, eventid: int) -> bool:
        """Whether a problem event has recovered (or was closed by hand): its ``r_eventid`` is set.

        ``event.get``, not ``problem.get``: the latter forgets a resolved problem after
        ``ok_period``, and "not found" must never read as "recovered".
        """
        rows = self.call("event.get", eventids=[str(eventid)], source=0, object=0, value=1,
                         output=["eventid", "r_eventid"])
        if not rows:
            raise ZabbixRejected(f"event.get: event {eventid} does not exist or is not readable")
        return str(rows[0].get("r_eventid", "0")) != "0"

    # -- writes -----------------------------------------------------------------------

    def acknowledge(self, eventids: Sequence[int], message: str, *, action: int) -> None:
        """One message onto many events, in one call."""
        if self.write_guard is not None:
            self.write_guard()
        self.call("event.acknowledge", eventids=[str(e) for e in eventids], action=action,
                  message=message)

    def permissions(self) -> dict[str, Any]:
        """Who the API user is and whether its role lets it comment / acknowledge.

        ``None`` for a right means "could not tell" (role rules unreadable).
        """
        if not self._logged_in:
            self._login()
        me = self.call("user.checkAuthentication", **self._whoami_params())
        out: dict[str, Any] = {"user": me.get("username") or me.get("alias", "?"),
                               "type": int(me.get("type", 0)), "comment": None, "acknowledge": None}
        try:
            roles = self.call("role.get", roleids=[me.get("roleid")], output=["name"], selectRules="extend")
        except ZabbixRejected:
            roles = []
        if roles:
            rules = roles[0].get("rules", {})
            default = str(rules.get("actions.default_access", "1")) == "1"
            actions = {a["name"]: str(a.get("status")) == "1" for a in rules.get("actions", [])}
            out["role"] = roles[0].get("name")
            out["comment"] = actions.get("add_problem_comments", default)
            out["acknowledge"] = actions.get("acknowledge_problems", default)
        return out


def _translate_api(method: str, exc: ZabbixAPIException) -> Exception:
    err = exc.error if isinstance(exc.error, dict) else {}
    code = err.get("code")
    data = str(err.get("data", "") or "")
    message = str(err.get("message", "") or exc)
    if not err:
        # Not a JSON-RPC error: empty body or HTML instead of JSON (PHP fatal, proxy page).
        return ZabbixUnavailable(f"{method}: the API answered something that is not JSON-RPC")
    low = data.lower()
    if any(s in low for s in _SESSION_GONE):
        return ZabbixAuthError(f"{method}: {data}")
    if "incorrect user name or password" in low or "temporarily blocked" in low:
        return ZabbixAuthError(f"{method}: {data}")
    if "database" in low and ("error" in low or "connect" in low):
        return ZabbixUnavailable(f"{method}: Zabbix cannot reach its database: {data}")
    return ZabbixRejected(f"{method}: {message} {data}".strip(), code=code, data=data)

