"""Fixtures for tests against the real local Zabbix 6.0 that `make zabbix` brings up.

Every test here needs it: when it is not reachable the test FAILS with a hint,
it never skips (CI must notice a missing component).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hefestus.adapters.zabbix import ZabbixClient
from hefestus.app.build import App, build
from hefestus.config import Settings, load_settings
from hefestus.errors import ZabbixError
from tests.support.helpers import toml_value
from tests.support.lab import ZabbixLab

ROOT = Path(__file__).resolve().parents[2]
WEB_PORT = os.environ.get("HEFESTUS_ZBX_WEB_PORT", "8089")
ZABBIX_URL = os.environ.get("HEFESTUS_TEST_ZABBIX_URL", f"http://127.0.0.1:{WEB_PORT}")
ADMIN = ("Admin", "zabbix")
#: The user Hefestus runs as in these tests; its password is distinctive so a leak is detectable.
IT_USER = ("hefestus-it", "Hx-it-S3cret-9f2k!")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.zabbix)


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




@pytest.fixture(scope="session")
def admin() -> ZabbixClient:
    settings = load_settings(write_config(Path(os.environ.get("TMPDIR", "/tmp")), user=ADMIN), {})
    client = ZabbixClient(settings.zabbix)
    try:
        client.connect()
    except ZabbixError as exc:
        pytest.fail(f"the local Zabbix at {ZABBIX_URL} is not reachable ({exc}); run `make zabbix` "
                    "(make test does it for you)", pytrace=False)
    if not client.call("user.get", output=["userid"], filter={"username": [IT_USER[0]]}):
        client.call("user.create", username=IT_USER[0], passwd=IT_USER[1], roleid="3",
                    usrgrps=[{"usrgrpid": "7"}])
    return client


@pytest.fixture(scope="session")
def lab(admin: ZabbixClient) -> ZabbixLab:
    return ZabbixLab(admin.call)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def factory(url: str = ZABBIX_URL, **sections: dict[str, Any]) -> App:
        settings: Settings = load_settings(write_config(tmp_path, url, **sections), {})
        app = build(settings)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.store.close()
