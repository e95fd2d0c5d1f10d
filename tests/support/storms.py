"""Storms on the real Zabbix, shared by the fault and multi-instance tests: hosts warmed up,
a storm fired in one go, each event's Hefestus messages read back, a daemon run as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.support.helpers import eventually
from tests.support.lab import LabHost, ZabbixLab, hefestus_messages


def prepare(lab: ZabbixLab, name: str, kinds: int) -> list[LabHost]:
    """One host per kind, warmed up: one value each (sent alone, retried until the server's
    configuration cache knows the item), so the storm itself is sent in one go."""
    hosts = [lab.host(lab.unique(f"it-{name}-{i}"), "Storms") for i in range(kinds)]
    lab.send([(h, "warm-up") for h in hosts])
    lab.events_for(hosts, expect=kinds)
    return hosts


def storm(lab: ZabbixLab, hosts: list[LabHost], texts: list[str], per_kind: int) -> set[str]:
    """``per_kind`` values for each host (one problem event per value); the storm's event ids."""
    before = {e["eventid"] for e in lab.events_for(hosts, expect=0, timeout=0)}
    lab.send([(h, f"{text} (#{n})") for n in range(per_kind) for h, text in zip(hosts, texts, strict=True)])
    rows = lab.events_for(hosts, expect=len(before) + per_kind * len(texts), timeout=120)
    ids = {e["eventid"] for e in rows if e["eventid"] not in before}
    assert len(ids) == per_kind * len(texts), f"zabbix made {len(ids)} events"
    return ids


def messages(lab: ZabbixLab, hosts: list[LabHost], ids: set[str]) -> dict[object, list[str]]:
    rows = lab.events_for(hosts, expect=0, timeout=0, acks=True)
    got: dict[object, list[str]] = {e["eventid"]: hefestus_messages(e) for e in rows if e["eventid"] in ids}
    return {i: got.get(i, []) for i in ids}


def wait_all(lab: ZabbixLab, hosts: list[LabHost], ids: set[str], timeout: float) -> dict[object, list[str]]:
    """The messages once every event has one; after ``timeout`` s, what there is: the caller
    records the losses in the summary, then fails on them."""
    with suppress(AssertionError):
        eventually(lambda: all(messages(lab, hosts, ids).values()), timeout, "a message on every event", 1)
    return messages(lab, hosts, ids)


@contextmanager
def daemon(config: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    env = {**os.environ, "HEFESTUS_CONFIG": str(config)}
    proc = subprocess.Popen([sys.executable, "-m", "hefestus", "run", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        terminate(proc)


def terminate(proc: subprocess.Popen[Any]) -> None:
    """Stop a daemon the way systemd does (SIGTERM; SIGKILL after 60 s), even a paused one."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def first_run(config: Path) -> None:
    """Initialise the cursor (first start = now), so only the storm is ours."""
    subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], check=True, capture_output=True,
                   env={**os.environ, "HEFESTUS_CONFIG": str(config)})
