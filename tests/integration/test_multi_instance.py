"""Several Hefestus instances on one PostgreSQL state, against the real Zabbix.

Three `hefestus run` processes share a state database in a real PostgreSQL 15 (a private
cluster: restarting it harms nobody). A storm of 300 problems arrives in four waves,
and while the leader works through each, something happens to it: kill -9 (twice), a
SIGSTOP longer than its lease and then SIGCONT, and a PostgreSQL restart. A supervisor
restarts whatever exits, as systemd's ``Restart=on-failure`` would. In the end every
event carries exactly one Hefestus message, no Rundeck job ran twice, and the paused
leader, once woken, stood down without writing anything.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from hefestus.pipeline.render import MARKER
from tests.support.faults import record_fault
from tests.support.helpers import eventually, free_port
from tests.support.instances import Node, Supervisor, leader
from tests.support.lab import LabHost, ZabbixLab
from tests.support.rundeck import FakeRundeck
from tests.support.selfheal import RESTART, TOKEN, UNIT_FAILED, rules_with_real_job
from tests.support.storms import first_run, messages, prepare, wait_all
from tests.support.zabbix_config import write_config

KNOWN = ("FATAL:  sorry, too many clients already",
         'ERROR:  could not extend file "base/16384/2619": No space left on device',
         "Warning  BackOff  kubelet  Back-off restarting failed container api in pod api-7d9f8b6c5-x2k4q",
         "Out of memory: Killed process 4182 (java) total-vm:8123456kB, anon-rss:6012345kB",
         "FATAL:  the database system is in recovery mode")
TTL, HEARTBEAT = 4.0, 1.0
WAVES, PER_KIND = 4, 15  # 4 waves x 5 kinds x 15 = 300 problems, plus one self-healing host per wave
EXIT_LEADERSHIP_LOST = 75
#: What happens to the leader during each wave (rows of the fault summary).
WAVE_FAULTS = ("kill -9 the leader", "kill -9 the new leader", "SIGSTOP leader past lease, SIGCONT",
               "PostgreSQL state restarted")


def handled(lab: ZabbixLab, hosts: list[LabHost], ids: set[str]) -> int:
    return sum(1 for m in messages(lab, hosts, ids).values() if m)


def test_three_instances_one_leader_fail_over_exactly_once(lab: ZabbixLab, pg_cluster: Any,
                                                           tmp_path: Path) -> None:
    url = pg_cluster.create_database("hefestus_ha")
    hosts = prepare(lab, "ha", len(KNOWN))
    heal = [lab.host(lab.unique(f"it-ha-heal-{w}"), "Linux servers") for w in range(WAVES)]
    with FakeRundeck(token=TOKEN) as rundeck:
        rundeck.add_job(RESTART, "Restart systemd service", project="ops", polls_to_finish=2)
        nodes: list[Node] = []
        for name in ("node-a", "node-b", "node-c"):
            home = tmp_path / name
            home.mkdir()
            port = free_port()
            config = write_config(
                home, intake={"poll_interval": 1, "page_size": 10},
                state={"url": url, "instance": name, "lease_ttl": TTL, "lease_heartbeat": HEARTBEAT},
                api={"enabled": True, "listen": f"127.0.0.1:{port}"},
                rundeck={"url": rundeck.url, "token": TOKEN, "timeout": 5},
                remediation={"mode": "on", "poll_min": 0.2, "poll_max": 1, "recovery_window": 3},
                classification={"rules_dir": str(rules_with_real_job(home))})
            nodes.append(Node(name, config, port, tmp_path))
        first_run(nodes[0].config)  # the cursor starts now: only this storm is ours
        supervisor = Supervisor(nodes)
        all_hosts = hosts + heal
        ids: set[str] = set()
        waves: list[set[str]] = []
        at_fault: list[int] = []  # events of the wave already handled when its fault struck
        failovers: list[float] = []
        try:
            current = leader(nodes)
            standbys = [n for n in nodes if n is not current]
            eventually(lambda: all(n.role() == "standby" for n in standbys), 60,
                       lambda: f"two standbys, roles {[n.role() for n in nodes]}", 0.2)
            assert current.metric("hefestus_leader") == 1.0
            assert all(n.metric("hefestus_leader") == 0.0 for n in standbys)
            for wave in range(WAVES):
                before = {e["eventid"] for e in lab.events_for(all_hosts, expect=0, timeout=0)}
                lab.send([(h, f"{text} (wave {wave} #{i})") for i in range(PER_KIND)
                          for h, text in zip(hosts, KNOWN, strict=True)] + [(heal[wave], UNIT_FAILED)])
                expect = len(before) + PER_KIND * len(KNOWN) + 1
                rows = lab.events_for(all_hosts, expect=expect, timeout=120)
                wave_ids = {e["eventid"] for e in rows if e["eventid"] not in before}
                ids.update(wave_ids)
                waves.append(wave_ids)
                eventually(lambda w=wave_ids: handled(lab, all_hosts, w) >= 10, 60,  # type: ignore[misc]
                           "the leader at work on the wave", 0.2)
                current = leader(nodes)
                at_fault.append(handled(lab, all_hosts, wave_ids))
                if wave < 2:  # kill -9 the leader, twice
                    victim = current.proc  # the supervisor will replace current.proc
                    assert victim is not None
                    killed = time.monotonic()
                    victim.send_signal(signal.SIGKILL)
                    victim.wait()  # dead: whatever it wrote is in Zabbix now
                    count = handled(lab, all_hosts, ids)
                    eventually(lambda c=count, i=ids: handled(lab, all_hosts, i) > c, 60,  # type: ignore[misc]
                               "a message from the new leader", 0.1)
                    failovers.append(time.monotonic() - killed)
                elif wave == 2:  # a leader paused past its lease must not write when it wakes
                    paused = current
                    assert paused.proc is not None
                    exits = len(paused.exits)
                    paused.proc.send_signal(signal.SIGSTOP)
                    leader(nodes, other_than=paused, timeout=TTL + 10)
                    time.sleep(TTL)  # the new leader works while the old one sleeps
                    paused.proc.send_signal(signal.SIGCONT)
                    eventually(lambda p=paused, e=exits: len(p.exits) > e, 30,  # type: ignore[misc]
                               "the woken leader standing down", 0.2)
                    assert paused.exits[-1] == EXIT_LEADERSHIP_LOST, paused.exits
                else:  # the state database restarts under everyone
                    pg_cluster.restart()
            got = wait_all(lab, all_hosts, ids, timeout=180)
            final = leader(nodes)
            assert (final.metric("hefestus_lease_renewals_total") or 0) > 0
        finally:
            supervisor.stop()
    print("\nfail-over after kill -9 (kill -> first message by the new leader): "
          + ", ".join(f"{s:.1f} s" for s in failovers))
    print(f"handled per wave when the fault struck: {at_fault} of {[len(w) for w in waves]}")
    assert len(ids) == WAVES * (PER_KIND * len(KNOWN) + 1)
    assert all(n < len(w) for n, w in zip(at_fault, waves, strict=True)), "each fault must strike mid-wave"
    # Self-healing events also get follow-ups (the job's outcome, the closed loop): exactly once
    # is about the first message; each heal event must have its outcome as well.
    follow = f"{MARKER} self-healing:"
    heal_ids = {e["eventid"] for e in lab.events_for(heal, expect=0, timeout=0)} & ids
    assert all(any(m.startswith(follow) for m in got[i]) for i in heal_ids), {i: got[i] for i in heal_ids}
    got = {i: [m for m in ms if not m.startswith(follow)] for i, ms in got.items()}
    totals = [record_fault(f"3 instances: {fault}", {i: got[i] for i in wave})
              for fault, wave in zip(WAVE_FAULTS, waves, strict=True)]
    assert all(t == (0, 0) for t in totals), {i: len(m) for i, m in got.items() if len(m) != 1}
    runs = rundeck.calls("run")
    by_host: dict[str, int] = {}
    for r in runs:
        host = dict(r.body.get("options", {})).get("host", "?") if isinstance(r.body, dict) else "?"
        by_host[host] = by_host.get(host, 0) + 1
    assert all(n <= 1 for n in by_host.values()), f"a Rundeck job ran twice: {by_host}"
    assert set(by_host) <= {h.host for h in heal}, by_host
    for failover in failovers:
        assert failover < TTL + 3 * HEARTBEAT + 5, failovers

