"""Hefestus against the documented API of every Zabbix line it supports: 6.0, 6.4, 7.0, 7.2,
7.4 and 8.0, through tests/support/zabbix_contract.py (a local server that applies each
version's rules and records every call). `make test` runs Hefestus against a real 6.0 and
7.0 too; for 6.4, 7.2, 7.4 and 8.0 this contract is the proof.

The real adapter (ZabbixClient, via pyzabbix) and one real pipeline cycle run against each
version, with a password and with an API token; every call, from the very first (sent
before the version is known), must keep that version's rules, including those a version
does not answer with an error (a parameter 6.x silently ignores, one 7.0 only logs as
deprecated). The last tests feed the server deliberately wrong requests, and a regressed
adapter, to prove the rules bite.

Rules and where they come from (Zabbix documentation, "API changes"):
- 6.0 (https://www.zabbix.com/documentation/6.0/en/manual/api/changes_5.4_-_6.0 and
  https://www.zabbix.com/documentation/6.0/en/manual/api/changes_6.0): ``auth`` in the body
  only (the 6.0.14 frontend ignores an Authorization header); ``user.login`` takes
  ``username`` (``user`` deprecated since 5.4); event.get knows only ``select_acknowledges``
  and, not being strictly validated, ignores unknown parameters silently.
- 6.2 (https://www.zabbix.com/documentation/6.2/en/manual/api/changes_6.0_-_6.2, ZBXNEXT-2592):
  host groups and template groups split; host.get/trigger.get ``selectHostGroups``, and
  the contract treats ``selectGroups``, ``monitored_hosts``, ``real_hosts`` as deprecated
  from there (7.0's source marks them so; 7.2 removes them).
- 6.4 (https://www.zabbix.com/documentation/6.4/en/manual/api/changes, ZBXNEXT-8085;
  https://www.zabbix.com/documentation/6.4/en/manual/api/changes_6.4): ``user.login``'s
  ``user`` removed; the ``Authorization: Bearer`` header; body ``auth`` deprecated;
  ``user.checkAuthentication`` takes ``token`` (6.4.1); cause and symptom events.
- 7.0 (https://www.zabbix.com/documentation/7.0/en/manual/api/changes): strict validation of
  event.get and hostgroup.get (unknown parameter -> -32602 "Invalid params.", data
  ``Invalid parameter "/": unexpected parameter "x".``; event.get ``filter`` on ``clock``
  refused); ``selectAcknowledges``/``selectAlerts`` added, ``select_acknowledges``,
  ``select_alerts``, host.get ``selectGroups``, hostgroup.get ``monitored_hosts``/
  ``real_hosts`` deprecated (logged).
- 7.2 (https://www.zabbix.com/documentation/7.2/en/manual/api/changes, ZBXNEXT-9452): body
  ``auth`` removed (-32600 "Invalid request.", ``Invalid parameter "/": unexpected parameter
  "auth".``), and the deprecated parameters above removed.
- 7.4 (https://www.zabbix.com/documentation/7.4/en/manual/api/changes): history.get
  ``maxValueSize`` (binary values cut to 64 KiB); mass-update methods removed. Nothing
  Hefestus calls changed.
- 8.0 (https://www.zabbix.com/documentation/8.0/en/manual/api/changes and
  https://www.zabbix.com/documentation/8.0/en/manual/installation/upgrade_notes): the rules
  of 7.4 for the calls Hefestus makes; the removed macros concern the media type
  (tests/test_webhook_media_type.py).
In every version, apiinfo.version, user.login and user.checkAuthentication must be called
without auth (core/CLocalApiClient.php: 'The "apiinfo.version" method must be called
without the "auth" parameter.').
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging.version import Version
from pydantic import SecretStr

from hefestus.adapters.zabbix import ZabbixClient
from hefestus.app.build import checks
from hefestus.classify.knowledge import Knowledge
from hefestus.config import AcknowledgeSettings, IntakeSettings, ZabbixSettings, load_settings
from hefestus.errors import ZabbixRejected
from hefestus.pipeline.cycle import Pipeline
from hefestus.pipeline.render import MARKER
from hefestus.state import open_state
from hefestus.values import EventFilter
from tests.support.zabbix_config import write_config
from tests.support.zabbix_contract import VERSIONS, ZabbixContract, v
from tests.support.zabbix_contract_data import DISK_FULL, UNIT_FAILED

AUTH = ("password", "token")


@pytest.fixture(params=VERSIONS)
def contract(request: pytest.FixtureRequest) -> Iterator[ZabbixContract]:
    with ZabbixContract(request.param) as c:
        yield c


def client(contract: ZabbixContract, auth: str, cls: type[ZabbixClient] = ZabbixClient) -> ZabbixClient:
    if auth == "token":
        return cls(ZabbixSettings(url=contract.url, token=SecretStr(contract.token), retries=1))
    return cls(ZabbixSettings(url=contract.url, user="hefestus", password=SecretStr(contract.password), retries=1))


def assert_obeys(contract: ZabbixContract) -> None:
    """No call broke a rule of this version, the first one included."""
    calls = contract.calls
    assert calls, "no call reached the contract server"
    broken = [(c.method, c.problems, c.error) for c in calls if c.problems]
    assert not broken, f"Zabbix {contract.version} rules broken: {broken}"
    first = calls[0]
    assert first.method == "apiinfo.version" and not first.body_auth and not first.bearer, first
    authenticated = [c for c in calls if c.method not in ("apiinfo.version", "user.login", "user.checkAuthentication")]
    if v(contract.version) >= (6, 4):  # the header, never the deprecated (7.2: removed) body member
        assert all(c.bearer and not c.body_auth for c in authenticated), authenticated
    else:  # 6.0 reads the body only: a header alone would be "Not authorized."
        assert all(c.body_auth for c in authenticated), authenticated


def messages(contract: ZabbixContract, eventid: int) -> list[str]:
    """What Hefestus's own user wrote on an event."""
    return [a["message"] for a in contract.events[str(eventid)]["_acks"] if a["userid"] == contract.userid]


@pytest.mark.parametrize("auth", AUTH)
def test_the_adapter_keeps_each_versions_rules(contract: ZabbixContract, auth: str) -> None:
    contract.add_problem(101, "20001", UNIT_FAILED, acks=(("3", f"{MARKER} typed by an operator"),))
    contract.add_problem(102, "20002", DISK_FULL, resolved=True)
    zbx = client(contract, auth)
    assert zbx.connect() == f"{contract.version}.0"
    assert zbx.group_ids(["Databases", "Linux servers"]) == ("5", "2")
    assert zbx.latest_event_id() == 102
    assert zbx.first_event_id_since(0) == 101
    assert zbx.event_ids(EventFilter(), eventid_from=100, eventid_till=200) == [101, 102]
    unit, disk = zbx.events(EventFilter(groupids=("2",)), eventid_from=101, limit=10)
    assert (unit.hosts, unit.host_groups, unit.tags) == (("web-1",), ("Linux servers",), (("service", "nginx"),))
    assert unit.items[0].value == UNIT_FAILED  # the full value from history, not the cut opdata
    assert [(a.userid, a.by_hefestus) for a in unit.acks] == [("3", False)]  # read, and not ours
    assert disk.resolved and disk.host_groups == ("Databases", "Linux servers")
    zbx.acknowledge([101, 102], f"{MARKER} linux / service-failed", action=4)
    assert messages(contract, 101) == messages(contract, 102) == [f"{MARKER} linux / service-failed"]
    assert [a.by_hefestus for a in zbx.events(EventFilter(), eventids=[101])[0].acks] == [False, True]
    assert zbx.problem_resolved(102) and not zbx.problem_resolved(101)
    with pytest.raises(ZabbixRejected, match="does not exist"):
        zbx.problem_resolved(999)
    assert_obeys(contract)


@pytest.mark.parametrize("auth", AUTH)
def test_hefestus_check_zabbix_lines(contract: ZabbixContract, auth: str, tmp_path: Path) -> None:
    """`hefestus check`'s Zabbix lines: version, user and role, the comment right, groups."""
    zabbix: dict[str, Any] = {"token": contract.token} if auth == "token" else {}
    config = write_config(tmp_path, contract.url, user=("hefestus", contract.password), zabbix=zabbix,
                          analysis={"mode": "pattern"}, intake={"host_groups": ["Linux servers"]})
    lines = [line for line in checks(load_settings(config, {})) if line[1].startswith(("zabbix", "permission", "host"))]
    assert lines == [("ok", "zabbix", f"{contract.url} (API {contract.version}.0)"),
                     ("ok", "zabbix user", "hefestus (role Hefestus)"),
                     ("ok", "permission 'Add problem comments'", ""),
                     ("ok", "host groups", "Linux servers")]
    assert_obeys(contract)


@pytest.mark.parametrize("auth", AUTH)
def test_one_pipeline_cycle(contract: ZabbixContract, auth: str, tmp_path: Path, test_knowledge: Knowledge) -> None:
    """First start, then new problems: each gets one message; one that already carries
    Hefestus's marker by Hefestus's own user (a crash after Zabbix's write) gets none, and an
    operator's "[Hefestus] ..." comment silences nothing. Needs the acknowledgements read."""
    contract.add_problem(90, "20001", UNIT_FAILED)  # before the first start: not ours
    pipe = Pipeline(client(contract, auth), open_state(tmp_path / "s.db").ledger, lambda: test_knowledge,
                    intake=IntakeSettings(host_groups=("Linux servers",)), ack=AcknowledgeSettings())
    assert pipe.run_once().acknowledged == 0
    contract.add_problem(101, "20001", UNIT_FAILED, acks=(("3", f"{MARKER} typed by an operator"),))
    contract.add_problem(102, "20002", DISK_FULL, acks=((contract.userid, f"{MARKER} linux / disk-full"),))
    contract.add_problem(103, "20002", DISK_FULL, resolved=True)
    report = pipe.run_once()
    assert report.acknowledged == 2, report
    (written,) = messages(contract, 101)
    assert written.startswith(f"{MARKER} linux / service-failed")
    assert len(messages(contract, 102)) == 1 and messages(contract, 90) == []
    assert messages(contract, 103)[0].startswith(f"{MARKER} linux / disk-full")
    assert pipe.run_once().acknowledged == 0
    assert_obeys(contract)


# -- the rules bite -------------------------------------------------------------------------


def post(contract: ZabbixContract, body: dict[str, Any], *, bearer: str | None = None,
         content_type: str = "application/json-rpc") -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": content_type, **({"Authorization": f"Bearer {bearer}"} if bearer else {})}
    request = urllib.request.Request(f"{contract.url}/api_jsonrpc.php", json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def rpc(method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params if params is not None else {}, "id": 1, **extra}


def login(contract: ZabbixContract) -> str:
    _, answer = post(contract, rpc("user.login", {"username": "hefestus", "password": contract.password}))
    return str(answer["result"])


def authed(contract: ZabbixContract, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Logged in and authenticated the way this version reads: the body (6.0) or the header."""
    if contract.version == "6.0":
        return post(contract, {**body, "auth": login(contract)})
    return post(contract, body, bearer=login(contract))


def test_auth_in_the_body_is_refused_from_72(contract: ZabbixContract) -> None:
    _, answer = post(contract, rpc("event.get", {"output": ["eventid"]}, auth=login(contract)))
    if v(contract.version) >= (7, 2):
        assert answer["error"] == {"code": -32600, "message": "Invalid request.",
                                   "data": 'Invalid parameter "/": unexpected parameter "auth".'}
    else:
        assert answer["result"] == []
    assert bool(contract.calls[-1].problems) == (v(contract.version) >= (6, 4))  # deprecated in 6.4 and 7.0


@pytest.mark.parametrize(("method", "params"), [
    ("event.get", {"select_acknowledges": ["message"]}), ("event.get", {"select_alerts": "extend"}),
    ("host.get", {"selectGroups": ["name"]}), ("hostgroup.get", {"monitored_hosts": True}),
    ("hostgroup.get", {"real_hosts": True}),
])
def test_removed_parameters_are_refused_from_72(contract: ZabbixContract, method: str, params: dict[str, Any]) -> None:
    (name,) = params
    _, answer = authed(contract, rpc(method, params))
    if v(contract.version) >= (7, 2):
        assert answer["error"] == {"code": -32602, "message": "Invalid params.",
                                   "data": f'Invalid parameter "/": unexpected parameter "{name}".'}
    else:
        assert "result" in answer, answer
    deprecated = v(contract.version) >= (7, 0) or (contract.version == "6.4" and method != "event.get")
    assert bool(contract.calls[-1].problems) == deprecated  # 6.4, 7.0: accepted but deprecated


def test_unknown_parameters_are_refused_from_70_and_silently_ignored_before(contract: ZabbixContract) -> None:
    contract.add_problem(101, "20001", UNIT_FAILED, acks=(("3", "seen"),))
    _, answer = authed(contract, rpc("event.get", {"selectAcknowledges": ["message"], "bogus": 1}))
    if v(contract.version) >= (7, 0):
        assert answer["error"] == {"code": -32602, "message": "Invalid params.",
                                   "data": 'Invalid parameter "/": unexpected parameter "bogus".'}
    else:  # 6.x answers, without the acknowledgements it did not understand it was asked for
        assert [set(row) for row in answer["result"]] == [set(contract.events["101"]) - {"_hostid", "_tags", "_acks"}]
    assert contract.calls[-1].problems


def test_login_takes_username_and_user_only_until_60(contract: ZabbixContract) -> None:
    _, answer = post(contract, rpc("user.login", {"user": "hefestus", "password": contract.password}))
    if contract.version == "6.0":
        assert len(answer["result"]) == 32 and contract.calls[-1].problems  # accepted, deprecated
    else:
        assert answer["error"]["data"] == 'Invalid parameter "/": unexpected parameter "user".'


def test_apiinfo_version_must_be_called_without_auth(contract: ZabbixContract) -> None:
    session = login(contract)
    _, answer = post(contract, rpc("apiinfo.version", auth=session))
    if v(contract.version) >= (7, 2):
        assert answer["error"]["code"] == -32600
    else:
        assert answer["error"]["data"] == 'The "apiinfo.version" method must be called without the "auth" parameter.'
    _, answer = post(contract, rpc("apiinfo.version"), bearer=session)
    if contract.version == "6.0":  # 6.0 does not read the header at all
        assert answer["result"] == "6.0.0"
    else:
        assert answer["error"]["data"] == 'The "apiinfo.version" method must be called without authorization header.'


def test_bearer_alone_is_not_enough_for_60_and_a_wrong_content_type_is_412(contract: ZabbixContract) -> None:
    _, answer = post(contract, rpc("event.get", {"output": ["eventid"]}), bearer=login(contract))
    assert ("error" in answer) == (contract.version == "6.0"), answer
    assert post(contract, rpc("apiinfo.version"), content_type="text/plain")[0] == 412


class WrongAcks(ZabbixClient):
    """A regression: the acknowledgements asked for with the other version's spelling."""

    @property
    def _acks_param(self) -> str:
        return "select_acknowledges" if self._at_least("7.0") else "selectAcknowledges"


class BodyAuth(ZabbixClient):
    """A regression: auth sent in the body whatever the version (as pyzabbix does for < 6.4)."""

    def _login(self) -> None:
        super()._login()
        self._api.version = Version("6.0")


class OldGroups(ZabbixClient):
    """A regression: host groups read with 6.0's ``selectGroups`` whatever the version."""

    @property
    def _groups_param(self) -> tuple[str, str]:
        return "selectGroups", "groups"


@pytest.mark.parametrize("regressed", [WrongAcks, BodyAuth, OldGroups])
def test_a_regressed_adapter_fails_these_tests(contract: ZabbixContract, regressed: type[ZabbixClient]) -> None:
    contract.add_problem(101, "20001", UNIT_FAILED)
    zbx = client(contract, "password", regressed)
    try:
        zbx.events(EventFilter(), eventid_from=0)
    except ZabbixRejected as exc:  # 7.2+ refuses both outright
        assert v(contract.version) >= (7, 2), exc
    if regressed in (BodyAuth, OldGroups) and contract.version == "6.0":
        assert_obeys(contract)  # what 6.0 wants: no regression there
        return
    with pytest.raises(AssertionError, match=f"Zabbix {contract.version} rules broken"):
        assert_obeys(contract)


# -- cause and symptom events (6.4+) ---------------------------------------------------------


@pytest.mark.parametrize("auth", AUTH)
def test_symptoms_get_a_pointer_from_64_and_60_is_never_asked_for_ranks(
        contract: ZabbixContract, auth: str, tmp_path: Path, test_knowledge: Knowledge) -> None:
    """6.4+: the rank is read (``cause_eventid``), the cause gets the analysis and a symptom
    one line naming its cause, also a cause outside the page. 6.0 knows no ranks: never asked
    for them, every event is a cause."""
    ranks = v(contract.version) >= (6, 4)
    contract.add_problem(90, "20001", UNIT_FAILED)  # before the first start
    pipe = Pipeline(client(contract, auth), open_state(tmp_path / "s.db").ledger, lambda: test_knowledge,
                    intake=IntakeSettings(), ack=AcknowledgeSettings())
    assert pipe.run_once().acknowledged == 0
    contract.add_problem(101, "20002", DISK_FULL)
    contract.add_problem(102, "20001", UNIT_FAILED, cause=101 if ranks else 0)
    contract.add_problem(103, "20002", DISK_FULL, cause=90 if ranks else 0)
    assert pipe.run_once().acknowledged == 3
    assert messages(contract, 101)[0].startswith(f"{MARKER} linux / disk-full")
    if ranks:
        for symptom, cause, host in ((102, 101, "db-1"), (103, 90, "web-1")):
            name = contract.events[str(cause)]["name"]
            assert messages(contract, symptom) == [
                f"{MARKER} symptom of event {cause} ({host}: {name}): see its Hefestus message"]
    else:
        assert messages(contract, 102)[0].startswith(f"{MARKER} linux / service-failed")
        assert messages(contract, 103)[0].startswith(f"{MARKER} linux / disk-full")
    outputs = [c.params["output"] for c in contract.calls if c.method == "event.get" and "selectTags" in c.params]
    assert outputs and all(("cause_eventid" in o) == ranks for o in outputs)
    assert pipe.run_once().acknowledged == 0
    assert_obeys(contract)


def test_ranking_a_symptom_through_event_acknowledge_is_64_and_later(contract: ZabbixContract) -> None:
    """What the integration test does as Admin on the real 7.0: action 256 with cause_eventid."""
    contract.add_problem(101, "20002", DISK_FULL)
    contract.add_problem(102, "20001", UNIT_FAILED)
    _, answer = authed(contract, rpc("event.acknowledge", {"eventids": ["102"], "action": 256, "cause_eventid": "101"}))
    if v(contract.version) >= (6, 4):
        assert answer["result"] == {"eventids": [102]} and contract.events["102"]["cause_eventid"] == "101"
        _, answer = authed(contract, rpc("event.acknowledge", {"eventids": ["102"], "action": 128}))
        assert "result" in answer and contract.events["102"]["cause_eventid"] == "0"
    else:
        assert answer["error"]["code"] == -32602
        assert "cause_eventid" not in contract.events["102"]


class RanksEverywhere(ZabbixClient):
    """A regression: the rank asked for whatever the version."""

    @property
    def _rank_output(self) -> list[str]:
        return ["cause_eventid"]


def test_asking_60_for_ranks_fails_these_tests(contract: ZabbixContract) -> None:
    contract.add_problem(101, "20001", UNIT_FAILED)
    zbx = client(contract, "password", RanksEverywhere)
    if contract.version != "6.0":
        zbx.events(EventFilter(), eventid_from=0)
        assert_obeys(contract)
        return
    with pytest.raises(ZabbixRejected, match="output"):
        zbx.events(EventFilter(), eventid_from=0)
    with pytest.raises(AssertionError, match="Zabbix 6.0 rules broken"):
        assert_obeys(contract)
