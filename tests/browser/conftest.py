"""Browser tests: headless Debian Chromium (see chrome.py). They fail, never skip, when the
browser, its driver or selenium is missing; `make test` installs them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .chrome import chromium


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "chromium-profile") as driver:
        yield driver


@pytest.fixture
def screenshot(tmp_path: Path, browser: Any) -> Any:
    """Save the page as <test tmp dir>/<name>.png and say where (kept for a look after a run)."""

    def take(name: str) -> Path:
        path = tmp_path / f"{name}.png"
        assert browser.save_screenshot(str(path)), f"screenshot {path} failed"
        print(f"screenshot: {path}")
        return path

    return take
