#!/usr/bin/env python3
"""Fail-over benchmark (`make bench`): how long problems wait when the leader dies.

Two `hefestus run` instances share a state database in a private PostgreSQL cluster
(tests/support/postgres.py) and poll the real local Zabbix, with the default lease
settings (`lease_ttl` 10 s, `lease_heartbeat` 2 s) and the default `poll_interval`. Each
round: find the leader through /readyz, kill -9 it, fire one pattern-classified problem
at once, and time kill -> that problem's Hefestus message (written by the new leader).
The killed instance is restarted as a standby, as systemd would. Figures only: nothing
here asserts timing.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "daemon"))
sys.path.insert(0, str(ROOT))  # tests/support: the Zabbix lab, the PostgreSQL cluster (not shipped)

from pydantic import SecretStr
from tests.support.helpers import eventually, free_port
from tests.support.instances import Node, Supervisor, leader
from tests.support.lab import ZabbixLab, hefestus_messages
from tests.support.postgres import PostgresCluster
from tests.support.storms import first_run
from tests.support.zabbix_config import ADMIN, ZABBIX_URL, ensure_it_user, write_config

from hefestus.adapters.zabbix import ZabbixClient
from hefestus.config import ZabbixSettings

TEXT = "FATAL:  sorry, too many clients already"


def message_of(lab: ZabbixLab, host: object, eventid: str) -> bool:
    rows = lab.events_for([host], expect=0, timeout=0, acks=True)  # type: ignore[list-item]
    return any(e["eventid"] == eventid and hefestus_messages(e) for e in rows)


def run(admin: ZabbixClient, lab: ZabbixLab, kills: int = 5) -> list[float]:
    """Seconds from each leader kill to the new leader's message on a problem fired right after it."""
    ensure_it_user(admin.call)
    host = lab.host(lab.unique("bench-failover"), "Databases")
    lab.send([(host, "fail-over bench warm-up")])
    lab.events_for([host], expect=1)
    times: list[float] = []
    with PostgresCluster() as pg, tempfile.TemporaryDirectory(prefix="hefestus-failover-") as work:
        url = pg.create_database("hefestus_failover")
        nodes = []
        for name in ("bench-a", "bench-b"):
            home = Path(work) / name
            home.mkdir()
            port = free_port()
            config = write_config(home, state={"url": url, "instance": name},
                                  api={"enabled": True, "listen": f"127.0.0.1:{port}"})
            nodes.append(Node(name, config, port, Path(work)))
        first_run(nodes[0].config)
        supervisor = Supervisor(nodes)
        try:
            for n in range(kills):
                current = leader(nodes, timeout=60)
                eventually(lambda c=current: all(x.role() == "standby" for x in nodes if x is not c), 60,  # type: ignore[misc]
                           "the other instance up as a standby", 0.2)
                before = {e["eventid"] for e in lab.events_for([host], expect=0, timeout=0)}
                victim = current.proc
                assert victim is not None
                killed = time.monotonic()
                victim.send_signal(signal.SIGKILL)
                lab.send([(host, f"{TEXT} (fail-over {n})")])
                (eventid,) = [e["eventid"] for e in lab.events_for([host], expect=len(before) + 1)
                              if e["eventid"] not in before]
                eventually(lambda i=eventid: message_of(lab, host, i), 120,  # type: ignore[misc]
                           "the new leader's message", 0.1)
                times.append(time.monotonic() - killed)
                print(f"   kill {n + 1}: {current.name} killed, message after {times[-1]:.1f} s", flush=True)
        finally:
            supervisor.stop()
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=5, help="leader kills (p50 over them)")
    args = ap.parse_args()
    admin = ZabbixClient(ZabbixSettings(url=ZABBIX_URL, user=ADMIN[0], password=SecretStr(ADMIN[1]), timeout=60))
    version = admin.connect()
    print(f"== Zabbix {version} at {ZABBIX_URL}: {args.kills} leader kills, default lease settings", flush=True)
    times = run(admin, ZabbixLab(admin.call), args.kills)
    print(f"fail-over (leader kill -9 -> first message by the new leader), p50 of {len(times)}: "
          f"{statistics.median(times):.1f} s (min {min(times):.1f}, max {max(times):.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
