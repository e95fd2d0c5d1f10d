"""Fixtures for tests against the real local Zabbix 6.0 that `make zabbix` brings up.

Every test here needs it: when it is not reachable the test FAILS with a hint,
it never skips (CI must notice a missing component). The Zabbix address and users are in
tests/support/zabbix_config.py; the ``admin`` and ``lab`` fixtures, shared with the browser
tests, in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hefestus.app.build import App, build
from hefestus.config import Settings, load_settings
from tests.support.zabbix_config import IT_USER, ZABBIX_URL, write_config


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.zabbix)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def factory(url: str = ZABBIX_URL, **sections: dict[str, Any]) -> App:
        settings: Settings = load_settings(write_config(tmp_path, url, user=IT_USER, **sections), {})
        app = build(settings)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.close()
