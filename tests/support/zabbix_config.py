"""The local dev Zabbix that `make zabbix` brings up, as the tests see it: its address, the
users they log in as, and a hefestus.toml pointing at it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support import dev_zabbix
from tests.support.helpers import toml_value
from tests.support.paths import ROOT

WEB_PORT = str(dev_zabbix.WEB_PORT)
ZABBIX_URL = os.environ.get("HEFESTUS_TEST_ZABBIX_URL", dev_zabbix.URL)
ADMIN = ("Admin", "zabbix")
#: The user Hefestus runs as in these tests; its password is distinctive so a leak is detectable.
IT_USER = ("hefestus-it", "Hx-it-S3cret-9f2k!")


def write_config(tmp_path: Path, url: str = ZABBIX_URL, *, user: tuple[str, str] = IT_USER,
                 **sections: dict[str, Any]) -> Path:
    """A hefestus.toml for one test: its own state file, the shipped rules and patterns."""
    base: dict[str, dict[str, Any]] = {
        "zabbix": {"url": url, "user": user[0], "password": user[1], "timeout": 10, "retries": 2},
        "intake": {"poll_interval": 2},
        "classification": {"rules_dir": str(ROOT / "rules"), "patterns_dir": str(ROOT / "patterns")},
        "state": {"path": str(tmp_path / "state.db")},
        "logging": {"format": "json"},
    }
    for name, values in sections.items():
        base.setdefault(name, {}).update(values)
    lines = []
    for name, values in base.items():
        lines.append(f"[{name}]")
        for k, v in values.items():
            lines.append(f"{k} = {toml_value(v)}")
    path = tmp_path / "hefestus.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def ensure_it_user(call: Any) -> None:
    """The Zabbix user the tests (and the fail-over bench) run Hefestus as: created once."""
    if not call("user.get", output=["userid"], filter={"username": [IT_USER[0]]}):
        call("user.create", username=IT_USER[0], passwd=IT_USER[1], roleid="3", usrgrps=[{"usrgrpid": "7"}])
