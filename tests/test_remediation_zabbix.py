"""The closed loop's question to Zabbix: has this problem event recovered? (adapter and fake)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hefestus.errors import ZabbixRejected
from hefestus.testing import FakeZabbix, problem
from hefestus.values import EventFilter

from .test_zabbix_adapter import Reply, Server, client, ok


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()


def test_problem_resolved_reads_r_eventid_with_event_get(server: Server) -> None:
    """event.get, not problem.get: a resolved problem drops out of problem.get after ok_period,
    and "gone" must never read as "recovered". Works alike on 6.0 and 7.x."""
    rows = {"5": "0", "6": "77"}
    seen: list[dict] = []  # type: ignore[type-arg]

    def reply(req: dict) -> Reply:  # type: ignore[type-arg]
        if req["method"] == "apiinfo.version":
            return ok("6.0.14", req)
        if req["method"] == "user.login":
            return ok("s1", req)
        seen.append(req)
        ids = req["params"]["eventids"]
        return ok([{"eventid": i, "r_eventid": rows[i]} for i in ids if i in rows], req)

    server.replies = reply
    c = client(server)
    assert c.problem_resolved(5) is False and c.problem_resolved(6) is True
    with pytest.raises(ZabbixRejected, match="event 8 does not exist or is not readable"):
        c.problem_resolved(8)
    assert {r["method"] for r in seen} == {"event.get"}
    assert seen[0]["params"] | {"eventids": None} == {
        "eventids": None, "source": 0, "object": 0, "value": 1, "output": ["eventid", "r_eventid"]}


def test_fake_zabbix_resolves_problems() -> None:
    z = FakeZabbix()
    z.add(problem(3))
    assert z.problem_resolved(3) is False
    z.resolve(3)
    assert z.problem_resolved(3) is True
    assert z.events(EventFilter(), eventids=[3])[0].resolved  # what intake sees agrees
    with pytest.raises(ZabbixRejected):
        z.problem_resolved(4)
