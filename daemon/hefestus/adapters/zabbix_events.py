"""Raw Zabbix rows -> frozen :class:`~hefestus.values.Problem`: the pure half of the adapter.

:mod:`hefestus.adapters.zabbix` makes the calls; this module only joins what they
returned. A page of events is read in the cheapest calls Zabbix offers (measured in
bench/RESULTS.md): event.get asks for the event's own fields and tags only, and
everything a trigger shares with its events (hosts, host groups, operational data,
items) is read once per distinct trigger, not once per event:

* ``opdata``: event.get expands it event by event in PHP (a macro resolver per event,
  about 0.5 s per 1,000 events), so it is expanded here from the trigger's template
  (``trigger.get`` ``opdata``) and the item values already read for the error text. The
  ``{ITEM.VALUE<N>}`` and ``{ITEM.LASTVALUE<N>}`` macros (N counts the items in the order
  the expression names them, as in Zabbix) take the value at the event's time (text items;
  a numeric item's latest value, with its units) and the latest value, text cut to 20
  characters like Zabbix's; any other macro is left as written. The patterns see the
  full item values anyway: ``opdata`` only adds context.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from hefestus.values import Ack, ItemValue, Problem, Severity

TEXT_TYPES = frozenset({1, 2, 4})  # char, log, text: where error messages live
_ITEM_MACRO = re.compile(r"\{ITEM\.(VALUE|LASTVALUE)([1-9]?)\}")
_FUNCTION = re.compile(r"\{(\d+)\}")
_CUT = 20  # Zabbix's cut of a text value shown in operational data


@dataclass(frozen=True, slots=True)
class Trigger:
    """What every event of one trigger shares, read once per page."""

    hosts: tuple[dict[str, str], ...] = ()
    groups: tuple[str, ...] = ()
    #: The trigger's items, as ``trigger.get`` lists them (the order the message shows them).
    itemids: tuple[str, ...] = ()
    #: The items in the order the expression names them: ``{ITEM.VALUE<N>}`` is the N-th.
    macro_itemids: tuple[str, ...] = ()
    opdata: str = ""


def trigger(row: Mapping[str, Any], groups_key: str) -> Trigger:
    """One ``trigger.get`` row (with hosts, host groups, items and functions) as a :class:`Trigger`."""
    itemids = tuple(str(i["itemid"]) for i in row.get("items", []))
    of_function = {str(f["functionid"]): str(f["itemid"]) for f in row.get("functions", [])}
    ordered: list[str] = []
    for functionid in _FUNCTION.findall(str(row.get("expression", ""))):
        itemid = of_function.get(functionid)
        if itemid is not None and itemid not in ordered:
            ordered.append(itemid)
    return Trigger(hosts=tuple(row.get("hosts", [])),
                   groups=tuple(sorted({g["name"] for g in row.get(groups_key, [])})),
                   itemids=itemids, macro_itemids=tuple(ordered) or itemids, opdata=str(row.get("opdata") or ""))


def item_values(events: list[dict[str, Any]], triggers: Mapping[str, Trigger], items: Mapping[str, dict[str, Any]],
                history: dict[str, list[tuple[tuple[int, int], str]]],
                ) -> dict[str, tuple[tuple[ItemValue, ...], str]]:
    """For each event: its trigger's items with the value that stood at the event's clock
    (``history``: itemid -> ((clock, ns), value)), and its operational data expanded from them."""
    for stored in history.values():
        stored.sort(reverse=True)  # newest first; ns breaks ties within one second
    types = {itemid: int(item["value_type"]) for itemid, item in items.items()}
    units = {itemid: str(item.get("units") or "") for itemid, item in items.items()}
    out: dict[str, tuple[tuple[ItemValue, ...], str]] = {}
    for e in events:
        # The value that raised the event carries the event's own clock and ns.
        clock = (int(e["clock"]), int(e.get("ns", 0)))
        trig = triggers.get(e["objectid"], Trigger())
        values = {}
        for itemid in {*trig.itemids, *trig.macro_itemids}:
            if (item := items.get(itemid)) is not None:
                latest = str(item.get("lastvalue", ""))
                values[itemid] = (next((v for c, v in history.get(itemid, []) if c <= clock), latest), latest)
        shown = tuple(ItemValue(items[i]["name"], items[i]["key_"], values[i][0]) for i in trig.itemids if i in values)
        out[e["eventid"]] = (shown, expand_opdata(trig.opdata, values, trig.macro_itemids, types, units))
    return out


def expand_opdata(template: str, values: Mapping[str, tuple[str, str]], order: tuple[str, ...],
                  value_types: Mapping[str, int], units: Mapping[str, str]) -> str:
    """``template`` with its item value macros expanded; ``values``: itemid -> (at the event, latest)."""
    if not template or "{ITEM." not in template:
        return template

    def one(m: re.Match[str]) -> str:
        n = int(m.group(2) or 1)
        if n > len(order) or order[n - 1] not in values:
            return m.group(0)
        itemid = order[n - 1]
        at_event, latest = values[itemid]
        value = latest if m.group(1) == "LASTVALUE" else at_event
        if value_types.get(itemid, 4) in TEXT_TYPES:
            return value if len(value) <= _CUT else value[:_CUT] + "..."
        unit = units.get(itemid, "")
        return f"{value} {unit}" if unit else value

    return _ITEM_MACRO.sub(one, template)


def problem(row: Mapping[str, Any], trig: Trigger, items: tuple[ItemValue, ...], opdata: str,
            ours: Collection[str], causes: Mapping[str, tuple[str, str]]) -> Problem:
    """One event row (its own fields, tags and maybe acknowledgements) and its trigger's share."""
    cause = str(row.get("cause_eventid", "0") or "0")
    cause_host, cause_name = causes.get(cause, ("", ""))
    acks = row.get("acknowledges", [])
    return Problem(
        eventid=int(row["eventid"]), clock=int(row["clock"]), name=row.get("name", ""),
        severity=Severity(int(row.get("severity", 0))),
        hosts=tuple(h.get("host", "") for h in trig.hosts), host_groups=trig.groups,
        tags=tuple((t["tag"], t.get("value", "")) for t in row.get("tags", [])),
        opdata=opdata, items=items, triggerid=int(row.get("objectid", 0)),
        resolved=str(row.get("r_eventid", "0")) != "0", suppressed=str(row.get("suppressed", "0")) == "1",
        acknowledged=str(row.get("acknowledged", "0")) == "1",
        acks=tuple(Ack(str(a.get("userid", "")), a.get("message", ""), str(a.get("userid", "")) in ours)
                   for a in acks),
        cause_eventid=int(cause), cause_host=cause_host, cause_name=cause_name,
    )
