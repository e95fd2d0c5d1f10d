"""Raw Zabbix rows -> Problem (hefestus.adapters.zabbix_events): what a trigger shares with its
events, read once, and operational data expanded as Zabbix's event.get would show it."""

from __future__ import annotations

from hefestus.adapters.zabbix_events import expand_opdata, item_values, problem, trigger
from hefestus.values import ItemValue, Severity

LOG = "Nov 24 03:12:09 web-1 systemd[1]: nginx.service: Failed with result 'exit-code'."


def trigger_row(**extra: object) -> dict[str, object]:
    """Two items; the expression names the CPU item (30003) first, the log (30001) second."""
    return {"triggerid": "20001", "expression": "{13}>5 or length(last({12}))>0", "opdata": "",
            "items": [{"itemid": "30001"}, {"itemid": "30003"}],
            "functions": [{"functionid": "12", "itemid": "30001"}, {"functionid": "13", "itemid": "30003"}],
            "hosts": [{"hostid": "10101", "host": "web-1", "name": "Web 1"}],
            "hostgroups": [{"name": "Linux servers"}, {"name": "Apps"}], **extra}


ITEMS = {"30001": {"itemid": "30001", "name": "Application log", "key_": "app.log", "value_type": "4",
                   "lastvalue": "latest line, much longer than twenty characters", "units": ""},
         "30003": {"itemid": "30003", "name": "CPU load", "key_": "system.cpu.load", "value_type": "0",
                   "lastvalue": "7.5", "units": "%"}}


def test_a_trigger_row_gives_hosts_sorted_groups_and_items_in_expression_order() -> None:
    t = trigger(trigger_row(), "hostgroups")
    assert [h["host"] for h in t.hosts] == ["web-1"] and t.groups == ("Apps", "Linux servers")
    assert t.itemids == ("30001", "30003")  # as trigger.get lists them: the message's order
    assert t.macro_itemids == ("30003", "30001")  # {ITEM.VALUE1} is the expression's first item


def test_opdata_macros_take_the_value_at_the_event_and_the_latest_cut_like_zabbix() -> None:
    values = {"30001": (LOG, "latest line, much longer than twenty characters"), "30003": ("9.1", "7.5")}
    order = ("30003", "30001")
    types, units = {"30001": 4, "30003": 0}, {"30003": "%"}
    assert expand_opdata("Load {ITEM.VALUE}, log {ITEM.VALUE2}", values, order, types, units) == \
        f"Load 9.1 %, log {LOG[:20]}..."
    assert expand_opdata("{ITEM.LASTVALUE2} / {ITEM.LASTVALUE1}", values, order, types, units) == \
        "latest line, much lo... / 7.5 %"
    # a macro this module does not expand, or an item the trigger lacks, is left as written
    assert expand_opdata("{HOST.NAME}: {ITEM.VALUE3} {$THRESHOLD}", values, order, types, units) == \
        "{HOST.NAME}: {ITEM.VALUE3} {$THRESHOLD}"
    assert expand_opdata("", values, order, types, units) == ""


def test_each_event_gets_the_values_that_stood_at_its_own_clock() -> None:
    t = {"20001": trigger(trigger_row(opdata="{ITEM.VALUE2}"), "hostgroups")}
    events = [{"eventid": "7", "objectid": "20001", "clock": "100", "ns": "500"},
              {"eventid": "8", "objectid": "20001", "clock": "100", "ns": "900"}]
    history = {"30001": [((100, 500), "first"), ((100, 900), "second"), ((99, 0), "older")]}
    out = item_values(events, t, ITEMS, history)
    assert out["7"] == ((ItemValue("Application log", "app.log", "first"), ItemValue("CPU load", "system.cpu.load", "7.5")),
                        "first")
    assert out["8"][0][0].value == "second" and out["8"][1] == "second"


def test_a_problem_takes_hosts_and_groups_from_its_trigger_and_marks_only_our_messages() -> None:
    t = trigger(trigger_row(), "hostgroups")
    row = {"eventid": "7", "objectid": "20001", "clock": "100", "name": "Error on web-1", "severity": "4",
           "r_eventid": "0", "acknowledged": "0", "suppressed": "0", "tags": [{"tag": "service", "value": "nginx"}],
           "acknowledges": [{"userid": "3", "message": "[Hefestus] typed"}, {"userid": "17", "message": "[Hefestus] x"}]}
    p = problem(row, t, (ItemValue("Application log", "app.log", LOG),), "op", frozenset({"17"}), {})
    assert (p.hosts, p.host_groups, p.tags, p.opdata, p.severity) == (
        ("web-1",), ("Apps", "Linux servers"), (("service", "nginx"),), "op", Severity.HIGH)
    assert [(a.userid, a.by_hefestus) for a in p.acks] == [("3", False), ("17", True)]
