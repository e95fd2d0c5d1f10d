"""A lab on a real Zabbix: hosts, trapper items and triggers provisioned through
Hefestus's own adapter, problems fired with ``zabbix_sender``. ``make demo``, the
integration tests and the storm benchmark share it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from hefestus.values import Severity
from tests.support import dev_zabbix


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
        self.port = port or dev_zabbix.SERVER_PORT
        self.server_config = server_config or str(dev_zabbix.RUN_DIR / "zabbix_server.conf")
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
        # Created disabled and enabled once its item and trigger exist: the server's config
        # sync (every CacheUpdateFrequency s) could otherwise pick up the item without the
        # trigger, accept the first value and make no event from it. The trapper refuses values
        # for a disabled host, so send() retries until the enabled host, trigger included, is in.
        hostid = self.call("host.create", host=host, groups=[{"groupid": groupid}], status=1,
                           tags=[{"tag": t, "value": v} for t, v in tags])["hostids"][0]
        itemid = self.call("item.create", hostid=hostid, name=f"Application log ({key})", key_=key,
                           type=2, value_type=4, trapper_hosts="")["itemids"][0]
        name = trigger_name or "Error reported on {HOST.NAME}: {ITEM.LASTVALUE1}"
        triggerid = self.call("trigger.create", description=name,
                              expression=f"length(last(/{host}/{key}))>0", type=1,
                              priority=int(severity), opdata="{ITEM.LASTVALUE1}",
                              manual_close=1)["triggerids"][0]
        self.call("host.update", hostid=hostid, status=0)
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

    def _acks_param(self) -> str:
        """event.get's acknowledgement parameter: 6.0 knows only ``select_acknowledges``, 7.0
        deprecates it ("Parameter /select_acknowledges is deprecated") and 7.2 rejects it."""
        version = str(self.call("apiinfo.version"))
        major, minor = (int(x) for x in version.split(".")[:2])
        return "selectAcknowledges" if (major, minor) >= (7, 0) else "select_acknowledges"

    def events_for(self, hosts: Sequence[LabHost], *, expect: int, timeout: float = 60,
                   acks: bool = False) -> list[dict[str, Any]]:
        """Wait until ``expect`` problem events exist for these hosts' triggers."""
        deadline = time.monotonic() + timeout
        params: dict[str, Any] = {"output": ["eventid", "name", "clock", "acknowledged"],
                                  "source": 0, "object": 0, "value": 1,
                                  "objectids": [h.triggerid for h in hosts],
                                  "sortfield": ["eventid"], "sortorder": "ASC"}
        if acks:
            params[self._acks_param()] = ["message", "action", "clock", "userid"]
        while True:
            rows: list[dict[str, Any]] = self.call("event.get", **params)
            if len(rows) >= expect or time.monotonic() > deadline:
                return rows
            time.sleep(1)


def hefestus_messages(event: dict[str, Any], marker: str = "[Hefestus]") -> list[str]:
    return [a["message"] for a in event.get("acknowledges", []) if a["message"].startswith(marker)]


