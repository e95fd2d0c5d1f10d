"""Headless Debian Chromium driven by Selenium, for the browser tests.

Nothing is downloaded: the browser and its driver are Debian's ``chromium`` and
``chromium-driver`` (installed by ``make test-deps``, which ``make test`` and ``make unit`` run), and
the driver path is given explicitly so Selenium Manager never looks for one. A missing
piece makes the test FAIL with the command that installs it: CI must notice.

The browser runs air-gapped: every host name but the loopback resolves to nothing, so a
page that needed a CDN would visibly break, and :func:`requested_urls` lists every URL
the page asked for so a test can also assert that none left this machine.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = os.environ.get("HEFESTUS_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("HEFESTUS_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = ("run `make test-deps` (apt-get install chromium chromium-driver; "
                "make test does it for you)")
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}


def _missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            found = shutil.which(os.path.basename(path))
            return f"{path} not found (Debian package {package}" + (
                f"; another copy is at {found}" if found else "") + f"): {INSTALL_HINT}"
    return None


@contextmanager
def chromium(profile: Path, *, width: int = 1400, height: int = 1000) -> Iterator[Any]:
    """A fresh headless Chromium with its own profile folder; quits on exit."""
    problem = _missing()
    if problem:
        pytest.fail(problem, pytrace=False)
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        pytest.fail(f"selenium is not installed ({exc}): run `make venv` (pyproject test extra)",
                    pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--no-first-run",
                "--no-default-browser-check", "--metrics-recording-only", "--mute-audio",
                f"--window-size={width},{height}", f"--user-data-dir={profile}",
                # Air gap: any name but the loopback fails to resolve.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    profile.mkdir(parents=True, exist_ok=True)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except Exception as exc:  # selenium's errors carry chromedriver's explanation
        log = profile / "chromedriver.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        pytest.fail(f"headless Chromium did not start: {exc}\n{tail}", pytrace=False)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page requested: DevTools network events (drained) + resource timing."""
    urls: list[str] = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    urls += driver.execute_script(
        "return [location.href].concat(performance.getEntriesByType('resource').map(e => e.name))")
    return urls


def outside(urls: list[str]) -> list[str]:
    """The URLs that would leave this machine (data: and blob: URLs stay in the page)."""
    return sorted({u for u in urls if urlsplit(u).scheme not in ("data", "blob", "about", "chrome")
                   and urlsplit(u).hostname not in LOCAL_HOSTS})


def console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
