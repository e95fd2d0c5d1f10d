"""Push to message: how long a pushed problem waits for its Hefestus message (`make bench`).

On the real dev Zabbix, set up as README's "Push intake" says (deploy/zabbix/'s media type
imported, the two global macros, a user with the *Hefestus* media, a trigger action whose
problem operation sends it; the action's condition is this benchmark's host group, so no
other event is pushed), with `hefestus run` as its own process polling only every 300 s:
every message it writes within the run was started by a push.

* **single**: pattern-classified problems fired one at a time, ``--gap`` seconds apart;
* **burst**: 100 of them in one ``zabbix_sender`` call.

Latency per event: from its creation (``clock`` + ``ns`` in Zabbix) to the moment Hefestus
logged "event acknowledged" for it (its ``event.acknowledge`` had returned: the message is
stored). Same machine, same clock. The single events also split it at the push's arrival
("api request" for /api/zabbix/events in Hefestus's log): Zabbix's share (escalator,
alerter, the webhook's JavaScript and POST) and Hefestus's (the wake-up, the poll, the write).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
GROUP = "Linux push-bench"  # routed to the linux domain by rules/50-linux.toml ("Linux*")
UNIT = "{stamp} {host} systemd[1]: nginx.service: Failed with result 'exit-code'."
PUSH_USER = ("hefestus-push-bench", "Hx-push-bench-S3cret-7q!")
#: Hefestus polls this seldom: a message inside the run is a push's doing.
POLL = 300


@dataclass
class PushResult:
    gap: float
    push_min_gap: float | None  # None: app/daemon.py's own
    single: list[float] = field(default_factory=list)  # creation -> message stored, s
    single_zabbix: list[float] = field(default_factory=list)  # creation -> push received
    burst: list[float] = field(default_factory=list)
    burst_polls: int = 0  # poll cycles that wrote burst messages
    exactly_one: tuple[int, int] = (0, 0)  # events with exactly one Hefestus message / events
    pushes: int = 0


def _ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _log(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def configure(admin: Any, lab: Any, url: str, token: str) -> tuple[str, str, list[str]]:
    """The media type, the user it is sent to, the macros and the action: (actionid, userid, macro ids)."""
    from tests.support import push

    push.import_media_type(admin)
    media = str(admin.call("mediatype.get", output=["mediatypeid"], filter={"name": "Hefestus"})[0]["mediatypeid"])
    userid = push.push_user(admin, media, *PUSH_USER)
    macros = push.set_global_macros(admin, {"{$HEFESTUS.URL}": (url, 0), "{$HEFESTUS.TOKEN}": (token, 1)})
    actionid = push.create_push_action(admin, f"hefestus-push-bench-{uuid.uuid4().hex[:8]}", media, userid,
                                       condition=push.HOST_GROUP, value=lab.group(GROUP))
    push.reload_server_config(lab)
    return actionid, userid, macros


@contextmanager
def daemon(config: Path, log: Path, base: str, token: str, push_min_gap: float | None) -> Iterator[None]:
    """`hefestus run` in a process of its own; ``push_min_gap`` replaces app/daemon.py's
    PUSH_MIN_GAP in that process only (to measure a proposed value)."""
    from tests.support.storms import terminate

    patch = "" if push_min_gap is None else f"import hefestus.app.daemon as d; d.PUSH_MIN_GAP = {push_min_gap!r}; "
    code = f"import sys; {patch}from hefestus.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEFESTUS_")}
    env["PYTHONPATH"] = str(ROOT / "daemon")
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-c", code, "--config", str(config), "run"],
                                stderr=err, stdout=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"hefestus run exited {proc.returncode}: {log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base}/readyz", headers={"Authorization": f"Bearer {token}"},
                             timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"hefestus run not ready: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield
    finally:
        terminate(proc)


def _created(lab: Any, triggerids: list[str], after: int) -> dict[int, float]:
    rows = lab.call("event.get", output=["eventid", "clock", "ns"], source=0, object=0, value=1,
                    objectids=triggerids, eventid_from=after + 1)
    return {int(r["eventid"]): int(r["clock"]) + int(r["ns"]) / 1e9 for r in rows}


def _stored(log: Path) -> dict[int, float]:
    return {int(e["eventid"]): _ts(e["timestamp"]) for e in _log(log)
            if e.get("event") == "event acknowledged" and "eventid" in e}


def _pushes(log: Path) -> list[float]:
    return sorted(_ts(e["timestamp"]) for e in _log(log)
                  if e.get("event") == "api request" and e.get("path") == "/api/zabbix/events")


def _wait(what: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise RuntimeError("push benchmark: timed out waiting for Hefestus's messages")
        time.sleep(0.1)


def run(admin: Any, lab: Any, user: tuple[str, str], url: str, workdir: Path, *, singles: int = 15,
        gap: float = 3.0, burst: int = 100, push_min_gap: float | None = None) -> PushResult:
    from tests.support.helpers import free_port
    from tests.support.lab import hefestus_messages
    from tests.support.zabbix_config import write_config

    workdir.mkdir(parents=True, exist_ok=True)
    hosts = [lab.host(f"push-bench-{i}", GROUP) for i in (1, 2)]
    triggerids = [h.triggerid for h in hosts]
    lab.send([(h, "push-bench warm-up") for h in hosts])  # the server's cache knows the items
    token = f"push-bench-{uuid.uuid4().hex}"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(workdir, url, user=user, intake={"poll_interval": POLL, "first_start": "now"},
                          analysis={"mode": "pattern"}, logging={"level": "info", "format": "json"},
                          api={"enabled": True, "listen": f"127.0.0.1:{port}", "token": token})
    log = workdir / "hefestus.log"
    out = PushResult(gap, push_min_gap)
    actionid, userid, macros = configure(admin, lab, base, token)
    try:
        with daemon(config, log, base, token, push_min_gap):
            start = lab.call("event.get", output=["eventid"], sortfield=["eventid"], sortorder="DESC",
                             limit=1)[0]["eventid"]
            # one at a time
            for i in range(singles):
                host = hosts[i % 2]
                before = len(_stored(log))
                lab.send([(host, UNIT.format(stamp=time.strftime("%b %d %H:%M:%S"), host=host.host))])
                _wait(lambda b=before: len(_stored(log)) > b, 60)
                time.sleep(gap)
            created, stored, pushes = _created(lab, triggerids, int(start)), _stored(log), _pushes(log)
            for e, c in sorted(created.items()):
                if e in stored:
                    out.single.append(stored[e] - c)
                    arrived = next((p for p in pushes if p >= c), None)
                    if arrived is not None and arrived <= stored[e]:
                        out.single_zabbix.append(arrived - c)
            mark, fired = max(created), time.time()
            # a burst
            lab.send([(hosts[i % 2], UNIT.format(stamp=time.strftime("%b %d %H:%M:%S"), host=hosts[i % 2].host))
                      for i in range(burst)])
            _wait(lambda: len([e for e in _stored(log) if e > mark]) >= burst, 120)
            created, stored = _created(lab, triggerids, mark), _stored(log)
            out.burst = [stored[e] - c for e, c in created.items() if e in stored]
            out.burst_polls = sum(1 for e in _log(log) if e.get("event") == "cycle done"
                                  and _ts(e["timestamp"]) >= fired and e.get("acknowledged"))
            out.pushes = len(_pushes(log))
        rows = lab.events_for(hosts, expect=0, timeout=0, acks=True)
        mine = [r for r in rows if int(r["eventid"]) > int(start)]
        out.exactly_one = (sum(1 for r in mine if len(hefestus_messages(r)) == 1), len(mine))
    finally:
        admin.call("action.delete", actionid)
        admin.call("usermacro.deleteglobal", *macros)
        admin.call("user.delete", userid)
        ids = [r["eventid"] for r in admin.call("problem.get", output=["eventid"], objectids=triggerids)]
        if ids:
            admin.call("event.acknowledge", eventids=ids, action=1)
    return out
