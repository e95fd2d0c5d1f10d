"""The self-healing set-up the daemon-level tests share: the shipped rules with the restart
rule pointed at a real (local fake) Rundeck job, its token, and a unit-failure text."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.support.paths import ROOT

TOKEN = "it-rundeck-token-0123456789"
RESTART = "3f2a9c1e-6b0d-4c55-9a57-2b8f0e6d1c44"
UNIT_FAILED = "Nov 24 03:12:09 web systemd[1]: nginx.service: Failed with result 'exit-code'."


def rules_with_real_job(tmp_path: Path) -> Path:
    """The shipped rules, with the restart rule's placeholder id replaced by a real one."""
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    linux = rules / "50-linux.toml"
    text = linux.read_text().replace("00000000-0000-0000-0000-000000000001", RESTART)
    text = text.replace("max_runs_per_hour = 4 ", "max_runs_per_hour = 100 ")  # the limit has its own tests
    linux.write_text(text.replace("recovery_window = 300 ", "recovery_window = 3 "))  # a short loop
    return rules
