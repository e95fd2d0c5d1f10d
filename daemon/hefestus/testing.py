"""Fakes and builders for tests (ours and yours), and a lab for a real Zabbix.

* :func:`problem` builds a :class:`~hefestus.model.Problem` with sane defaults.
* :class:`FakeZabbix` implements the pipeline's ports in memory, including
  Zabbix's quirks that matter for exactly-once: ids that become visible late,
  outages, and messages that stick to events.
* :class:`ZabbixLab` provisions hosts, trapper items and triggers on a real
  Zabbix and fires problems with ``zabbix_sender``; ``make demo`` and the
  integration tests share it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import ZabbixRejected, ZabbixUnavailable
from .model import EventFilter, ItemValue, Problem, Severity


def problem(eventid: int = 1, name: str = "Problem", *, text: str = "", host: str = "host-1",
            groups: Sequence[str] = ("Linux servers",), severity: Severity = Severity.AVERAGE,
            tags: Sequence[tuple[str, str]] = (), clock: int | None = None, **kw: Any) -> Problem:
    items = (ItemValue("log", "log", text),) if text else ()
    return Problem(eventid=eventid, clock=clock or int(time.time()), name=name, severity=severity,
                   hosts=(host,), host_groups=tuple(groups), tags=tuple(tags), items=items, **kw)


@dataclass
class FakeZabbix:
    """In-memory Zabbix: ``visible`` events are what event.get returns right now."""

    visible: dict[int, Problem] = field(default_factory=dict)
    acks: dict[int, list[str]] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    down: bool = False
    refuse: set[int] = field(default_factory=set)
    latest: int = 0

    def add(self, *problems: Problem) -> None:
        for p in problems:
            self.visible[p.eventid] = p
            self.latest = max(self.latest, p.eventid)

    def _check(self, method: str, arg: Any = None) -> None:
        self.calls.append((method, arg))
        if self.down:
            raise ZabbixUnavailable(f"{method}: cannot connect (fake outage)")

    def _view(self, p: Problem) -> Problem:
        return replace(p, ack_messages=tuple(self.acks.get(p.eventid, [])))

    def group_ids(self, names: Sequence[str]) -> tuple[str, ...]:
        self._check("group_ids", tuple(names))
        return tuple(names)

    def latest_event_id(self) -> int:
        self._check("latest_event_id")
        return self.latest

    def first_event_id_since(self, clock: int) -> int | None:
        self._check("first_event_id_since", clock)
        ids = [i for i, p in self.visible.items() if p.clock >= clock]
        return min(ids) if ids else None

    def event_ids(self, flt: EventFilter, *, eventid_from: int, eventid_till: int) -> list[int]:
        self._check("event_ids", (eventid_from, eventid_till))
        return sorted(i for i in self.visible if eventid_from <= i <= eventid_till)

    def events(self, flt: EventFilter, *, eventid_from: int | None = None,
               eventids: Sequence[int] | None = None, limit: int | None = None) -> list[Problem]:
        self._check("events", (eventid_from, tuple(eventids or ()), limit))
        ids = sorted(self.visible)
        if eventids is not None:
            ids = [i for i in ids if i in set(eventids)]
        if eventid_from is not None:
            ids = [i for i in ids if i >= eventid_from]
        ids = [i for i in ids if self.visible[i].severity >= flt.min_severity]
        return [self._view(self.visible[i]) for i in ids[:limit]]

    def resolve(self, *eventids: int) -> None:
        """The problems recover (Zabbix sets their r_eventid)."""
        for e in eventids:
            self.visible[e] = replace(self.visible[e], resolved=True)

    def problem_resolved(self, eventid: int) -> bool:
        self._check("problem_resolved", eventid)
        if eventid not in self.visible:
            raise ZabbixRejected(f"event.get: event {eventid} does not exist or is not readable")
        return self.visible[eventid].resolved

    def acknowledge(self, eventids: Sequence[int], message: str, *, action: int) -> None:
        self._check("acknowledge", (tuple(eventids), action))
        bad = [e for e in eventids if e in self.refuse or e not in self.visible]
        if bad:
            raise ZabbixRejected("No permissions to referred object or it does not exist!", code=-32500)
        if len(message) > 2048:
            raise ZabbixRejected('Invalid parameter "/1/message": value is too long.', code=-32602)
        for e in eventids:
            self.acks.setdefault(e, []).append(message)


# --------------------------------------------------------------------------- real Zabbix


@dataclass(frozen=True)
class LabHost:
    host: str
    group: str
    key: str
    triggerid: str
    itemid: str


class ZabbixLab:
    """Provision and poke a real Zabbix through Hefestus's own adapter.

    ``call`` is :meth:`hefestus.adapters.zabbix.ZabbixClient.call` (or any
    callable with that shape), so the lab adds no second API client.
    """

    def __init__(self, call: Any, *, server: str = "127.0.0.1", port: int | None = None,
                 server_config: str | None = None) -> None:
        self.call = call
        self.server = server
        self.port = port or int(os.environ.get("HEFESTUS_ZBX_SERVER_PORT", "10051"))
        state_dir = os.environ.get("HEFESTUS_ZBX_DIR", "/var/tmp/hefestus-zabbix")
        self.server_config = server_config or os.path.join(state_dir, "zabbix_server.conf")
        self.sender = shutil.which("zabbix_sender") or "/usr/bin/zabbix_sender"

    def group(self, name: str) -> str:
        rows = self.call("hostgroup.get", output=["groupid"], filter={"name": [name]})
        if rows:
            return str(rows[0]["groupid"])
        return str(self.call("hostgroup.create", name=name)["groupids"][0])

    def host(self, host: str, group: str, *, key: str = "app.log", tags: Iterable[tuple[str, str]] = (),
             severity: Severity = Severity.HIGH, trigger_name: str | None = None) -> LabHost:
        """A host with one text trapper item and a trigger that fires on every value."""
        existing = self.call("host.get", output=["hostid"], filter={"host": [host]},
                             selectItems=["itemid", "key_"], selectTriggers=["triggerid"])
        if existing:
            h = existing[0]
            item = next(i for i in h["items"] if i["key_"] == key)
            return LabHost(host, group, key, h["triggers"][0]["triggerid"], item["itemid"])
        groupid = self.group(group)
        hostid = self.call("host.create", host=host, groups=[{"groupid": groupid}],
                           tags=[{"tag": t, "value": v} for t, v in tags])["hostids"][0]
        itemid = self.call("item.create", hostid=hostid, name=f"Application log ({key})", key_=key,
                           type=2, value_type=4, trapper_hosts="")["itemids"][0]
        name = trigger_name or "Error reported on {HOST.NAME}: {ITEM.LASTVALUE1}"
        triggerid = self.call("trigger.create", description=name,
                              expression=f"length(last(/{host}/{key}))>0", type=1,
                              priority=int(severity), opdata="{ITEM.LASTVALUE1}",
                              manual_close=1)["triggerids"][0]
        return LabHost(host, group, key, triggerid, itemid)

    def unique(self, prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def send(self, values: Sequence[tuple[LabHost, str]], *, timeout: float = 90) -> None:
        """Send values with zabbix_sender, retrying until the server's config cache knows the items.

        Few values go one call each, so a value the server refused (its item not yet in
        the config cache) is resent alone and none is sent twice; storms go in one call.
        """
        if len(values) <= 50:
            for value in values:
                self._send_file([value], timeout)
        else:
            self._send_file(values, timeout)

    def _send_file(self, values: Sequence[tuple[LabHost, str]], timeout: float) -> None:
        with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
            for h, value in values:
                escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                f.write(f'"{h.host}" "{h.key}" "{escaped}"\n')
            path = f.name
        deadline = time.monotonic() + timeout
        reloaded = False
        try:
            while True:
                out = subprocess.run([self.sender, "-z", self.server, "-p", str(self.port), "-i", path],
                                     capture_output=True, text=True, timeout=60, check=False)
                if out.returncode == 0 and "failed: 0" in out.stdout:
                    return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"zabbix_sender kept failing: {out.stdout} {out.stderr}")
                # Values that were processed would be sent twice on retry: only resend when none
                # were (or when the server did not answer at all, e.g. still starting).
                if "processed:" in out.stdout and "processed: 0;" not in out.stdout:
                    raise RuntimeError(f"zabbix_sender partly failed, not retrying: {out.stdout}")
                if not reloaded and os.path.exists(self.server_config):
                    subprocess.run(["zabbix_server", "-c", self.server_config, "-R", "config_cache_reload"],
                                   capture_output=True, timeout=30, check=False)
                    reloaded = True
                time.sleep(1)
        finally:
            os.unlink(path)

    def events_for(self, hosts: Sequence[LabHost], *, expect: int, timeout: float = 60,
                   acks: bool = False) -> list[dict[str, Any]]:
        """Wait until ``expect`` problem events exist for these hosts' triggers."""
        deadline = time.monotonic() + timeout
        params: dict[str, Any] = {"output": ["eventid", "name", "clock", "acknowledged"],
                                  "source": 0, "object": 0, "value": 1,
                                  "objectids": [h.triggerid for h in hosts],
                                  "sortfield": ["eventid"], "sortorder": "ASC"}
        if acks:
            params["select_acknowledges"] = ["message", "action", "clock", "userid"]
        while True:
            rows: list[dict[str, Any]] = self.call("event.get", **params)
            if len(rows) >= expect or time.monotonic() > deadline:
                return rows
            time.sleep(1)


def hefestus_messages(event: dict[str, Any], marker: str = "[Hefestus]") -> list[str]:
    return [a["message"] for a in event.get("acknowledges", []) if a["message"].startswith(marker)]


def eventually(check: Any, timeout: float = 60, what: str = "condition", interval: float = 0.3) -> Any:
    """Poll ``check()`` until it returns something truthy (returned); AssertionError naming
    ``what`` after ``timeout`` seconds. For tests that wait on a daemon or a real Zabbix."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_serving(base: str, proc: subprocess.Popen[Any], *, log: Path | None = None,
                 timeout: float = 30) -> None:
    """Until ``base``/healthz answers 200; AssertionError (with the log's tail) if the process
    exits first or the time runs out. For tests that start ``hefestus run`` or ``serve``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(f"{base} did not start serving (exit {proc.poll()}):\n{tail}")
        time.sleep(0.1)


def toml_value(v: Any) -> str:
    """A Python value as a TOML value, for the small config files tests and benchmarks write."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
