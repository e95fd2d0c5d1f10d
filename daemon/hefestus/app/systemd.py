"""systemd integration: ``Type=notify`` readiness, status text and the watchdog.

With ``Type=notify`` systemd considers the service started only once
Hefestus said READY=1 — after the configuration, rules and state were loaded
and the API (when enabled) listens — so a broken deployment fails
``systemctl start`` instead of "starting" and dying a second later. The
watchdog is pinged from the scheduler only while poll cycles keep finishing:
a cycle stuck for longer than the budget stops the pings and systemd
restarts the service (``WatchdogSec=`` in deploy/hefestus.service).

Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping

import sdnotify


class Systemd:
    def __init__(self, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        env = os.environ if env is None else env
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._notifier = sdnotify.SystemdNotifier() if self.enabled else None
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_seconds = int(usec) / 1_000_000 if usec.isdigit() and int(usec) > 0 else None
        self._clock = clock
        self._last_progress = clock()

    def _send(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def stopping(self) -> None:
        self._send("STOPPING=1\nSTATUS=stopping")

    def progress(self) -> None:
        """A poll cycle finished (successfully or not): the daemon is not stuck."""
        self._last_progress = self._clock()

    def ping_if_alive(self, budget: float) -> bool:
        """WATCHDOG=1 only if a cycle finished within ``budget`` seconds."""
        alive = self._clock() - self._last_progress <= budget
        if alive:
            self._send("WATCHDOG=1")
        return alive
