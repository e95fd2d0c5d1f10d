"""Small helpers the tests and the benchmark share: waiting on a condition or a server,
a clock moved by hand, a free port, TOML values for generated config files, small pattern
dictionaries and their answers."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hefestus.classify.patterns import Dictionary, Pattern
from hefestus.classify.regex import compile_regex


def eventually(check: Callable[[], Any], timeout: float = 60, what: str | Callable[[], str] = "condition",
               interval: float = 0.3) -> Any:
    """Poll ``check()`` until it returns something truthy (returned); AssertionError naming
    ``what`` after ``timeout`` seconds. For tests that wait on a daemon or a real Zabbix.

    ``what`` may be a function: it is called only on a time-out, so the message can say what
    the state was then (a log's tail, the rows found)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what() if callable(what) else what}")


class FakeClock:
    """A clock a test moves by hand, for code that takes ``clock=`` (the breakers, the
    remediation limits): time passes when the test says so, never while it sleeps."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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


def metric(base: str, token: str, sample: str) -> float:
    """One sample of a running Hefestus's /metrics (``name`` or ``name{labels}``, as printed),
    0 when it is not there yet: how tests count poll cycles instead of sleeping through some."""
    request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        text = r.read().decode()
    found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def toml_value(v: Any) -> str:
    """A Python value as a TOML value, for the small config files tests and benchmarks write."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def offline_config(tmp_path: Path, base: Path) -> Path:
    """A hefestus.toml for the offline commands (analyze, eval, ...): a Zabbix nobody answers,
    the rules/ and patterns/ under ``base``, the state file in ``tmp_path``."""
    p = tmp_path / "hefestus.toml"
    p.write_text(f'[zabbix]\nurl = "http://127.0.0.1:9"\ntoken = "x"\n[classification]\n'
                 f'rules_dir = "{base / "rules"}"\npatterns_dir = "{base / "patterns"}"\n'
                 f'[state]\npath = "{tmp_path / "state.db"}"\n')
    return p


def dictionary_of(sources: list[str], *, accelerate: bool = True) -> Dictionary:
    """A dictionary ``t`` of one pattern ``p<i>`` per RE2 source, in order."""
    return Dictionary("t", [Pattern(f"p{i}", "c", "test", compile_regex(s), "cause", ("step",), 0.8, ())
                            for i, s in enumerate(sources)], accelerate=accelerate)


def match_answer(d: Dictionary, text: str) -> tuple[Any, ...] | None:
    """What ``d.match`` found, as comparable values: pattern id, offsets, raw groups."""
    found = d.match(text)
    return None if found is None else (found.pattern.id, found.start, found.end, dict(found.raw))
