"""Where ops read Hefestus: the Zabbix 6.0 frontend, logged in, shows its message on the
problem, both in Monitoring -> Problems (the message icon's pop-up) and on the event's
details page. Needs the real local Zabbix (`make zabbix`): fails, never skips, without it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hefestus.adapters.zabbix import ZabbixClient
from tests.support.lab import ZabbixLab, hefestus_messages
from tests.support.zabbix_config import ADMIN, ZABBIX_URL, write_config

from .chrome import outside, requested_urls

pytestmark = pytest.mark.zabbix

ERROR = "FATAL:  sorry, too many clients already"


def _run_once(config: Path) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEFESTUS_")}
    out = subprocess.run([sys.executable, "-m", "hefestus", "--config", str(config), "run", "--once"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    report: dict[str, int] = json.loads(out.stdout)
    return report


def test_problem_view_shows_the_hefestus_message(admin: ZabbixClient, lab: ZabbixLab, browser: Any,
                                                 screenshot: Callable[[str], Path], tmp_path: Path) -> None:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    host = lab.host(lab.unique("it-browser"), "Databases")
    config = write_config(tmp_path)
    _run_once(config)  # first start: the cursor is "now"
    before = {e["eventid"] for e in lab.events_for([host], expect=0, timeout=0)}
    lab.send([(host, ERROR)])
    (eventid,) = [e["eventid"] for e in lab.events_for([host], expect=len(before) + 1) if e["eventid"] not in before]
    assert _run_once(config)["acknowledged"] >= 1
    (event,) = [e for e in lab.events_for([host], expect=0, timeout=0, acks=True) if e["eventid"] == eventid]
    (message,) = [m for m in hefestus_messages(event) if m.startswith("[Hefestus] database / ")]
    first_line = message.splitlines()[0]
    assert first_line.startswith("[Hefestus] database / too-many-connections")
    hostid = admin.call("host.get", output=["hostid"], filter={"host": [host.host]})[0]["hostid"]

    wait = WebDriverWait(browser, 20)
    browser.get(f"{ZABBIX_URL}/index.php")
    wait.until(ec.visibility_of_element_located((By.ID, "name"))).send_keys(ADMIN[0])
    browser.find_element(By.ID, "password").send_keys(ADMIN[1])
    browser.find_element(By.ID, "enter").click()
    wait.until(lambda _: "action=dashboard" in browser.current_url or browser.find_elements(By.CSS_SELECTOR, ".red"))
    assert "action=dashboard" in browser.current_url, "login as Admin failed"
    # From here on, only the pages that show Hefestus's message count. The dashboard a login lands
    # on is Zabbix's own: 7.0's default Geomap widget keeps fetching OpenStreetMap tiles after the
    # page has loaded, so leave it for a blank page (which cancels its pending requests) and
    # only then drain what it asked for.
    browser.get("about:blank")
    requested_urls(browser)

    try:
        # Monitoring -> Problems, this host only: the row, then the message icon's pop-up.
        browser.get(f"{ZABBIX_URL}/zabbix.php?action=problem.view&filter_set=1&hostids%5B%5D={hostid}")
        row = wait.until(lambda _: [r for r in browser.find_elements(By.CSS_SELECTOR, "table.list-table tbody tr")
                                    if host.host in r.text])[0]
        assert "too many clients" in row.text
        # The message icon: 6.0 draws it as icon-action-msgs, 7.0 as zi-alert-with-content. Its
        # click handler is bound by the page's scripts: click once the page has finished loading,
        # and again if a slow frontend (a CI machine under load) let a click go unanswered.
        wait.until(lambda _: browser.execute_script("return document.readyState") == "complete")
        icon = row.find_element(By.CSS_SELECTOR, "button.icon-action-msgs, button.zi-alert-with-content")

        def popup_open() -> list[Any]:
            return [b for b in browser.find_elements(By.CSS_SELECTOR, ".overlay-dialogue")
                    if b.is_displayed() and "[Hefestus]" in b.text]

        for _ in range(3):
            icon.click()
            try:
                popup = WebDriverWait(browser, 10).until(lambda _: popup_open())[0]
                break
            except TimeoutException:
                continue
        else:
            raise AssertionError("the message icon's pop-up never showed the [Hefestus] message")
        screenshot("zabbix-problems-view")
        assert first_line in popup.text
        assert "Next steps:" in popup.text and "pg_stat_activity" in popup.text

        # The event's details page lists it under Actions, in full.
        browser.get(f"{ZABBIX_URL}/tr_events.php?triggerid={host.triggerid}&eventid={eventid}")
        wait.until(lambda _: "[Hefestus]" in browser.find_element(By.TAG_NAME, "body").text)
        screenshot("zabbix-event-details")
        page = browser.find_element(By.TAG_NAME, "body").text
        assert first_line in page and "Routed by rule" in page
        assert outside(requested_urls(browser)) == []
    finally:
        browser.get(f"{ZABBIX_URL}/zabbix.php?action=problem.view&filter_rst=1")  # Admin's saved filter
