"""Hefestus instances run as processes under a supervisor, for the multi-instance test and the
fail-over bench: each with its own hefestus.toml and API port, restarted after any exit but
a clean one (as systemd's ``Restart=on-failure`` does), asked its role through /readyz."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.helpers import eventually
from tests.support.storms import terminate


class Node:
    """One instance under a supervisor: restarted after any exit but a clean one, like systemd."""

    def __init__(self, name: str, config: Path, api_port: int, logs: Path) -> None:
        self.name, self.config, self.api_port, self.logs = name, config, api_port, logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []
        self.stopping = False
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            log = (self.logs / f"{self.name}.log").open("ab")
            self.proc = subprocess.Popen([sys.executable, "-m", "hefestus", "run"], stdout=subprocess.DEVNULL,
                                         stderr=log, env={**os.environ, "HEFESTUS_CONFIG": str(self.config)})

    def supervise(self) -> None:
        """Called by the supervisor thread: restart an exited process (RestartSec shortened)."""
        proc = self.proc
        if proc is None or self.stopping or proc.poll() is None:
            return
        self.exits.append(proc.returncode)
        time.sleep(0.5)
        if not self.stopping:
            self.start()

    def role(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/readyz", timeout=2) as r:
                body: dict[str, Any] = json.load(r)
                return str(body.get("role"))
        except (OSError, ValueError):
            return None

    def metric(self, name: str) -> float | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/metrics", timeout=2) as r:
                for line in r.read().decode().splitlines():
                    if line.startswith(name + " "):
                        return float(line.split()[1])
        except OSError:
            return None
        return None

    def stop(self) -> None:
        self.stopping = True
        if self.proc is not None:
            terminate(self.proc)


def leader(nodes: list[Node], *, other_than: Node | None = None, timeout: float = 30) -> Node:
    def find() -> Node | None:
        found = [n for n in nodes if n is not other_than and n.role() == "leader"]
        return found[0] if len(found) == 1 else None
    node: Node = eventually(find, timeout, lambda: f"one leader, roles {[n.role() for n in nodes]}", 0.2)
    return node


class Supervisor:
    """Starts the nodes and keeps them running (a restart after any exit but a clean one)
    until :meth:`stop`, which stops them all."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self._done = threading.Event()
        for n in nodes:
            n.start()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.is_set():
            for n in self.nodes:
                n.supervise()
            time.sleep(0.1)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(5)
        for n in self.nodes:
            n.stop()
