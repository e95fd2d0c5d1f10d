"""The Swagger UI of `hefestus serve`, in a real browser with no way out of this machine:
it renders every operation, and a request sent from it ("Try it out" -> Execute, with the
bearer token entered under "Authorize") comes back with Hefestus's answer in the page."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import free_port, wait_serving
from tests.support.paths import ROOT

from .chrome import console_errors, outside, requested_urls

TOKEN = "swagger-ui-test-token-0123456789"
ERROR = "Nov 24 03:12:09 web systemd[1]: nginx.service: Failed with result 'exit-code'."


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """`hefestus serve`: the API alone, no Zabbix, patterns only (no model)."""
    port = free_port()
    config = tmp_path / "hefestus.toml"
    config.write_text(f'[classification]\nrules_dir = "{ROOT / "rules"}"\npatterns_dir = "{ROOT / "patterns"}"\n'
                      f'[ollama]\nmodel = ""\n[api]\ntoken = "{TOKEN}"\n[logging]\nformat = "json"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEFESTUS_")}
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "hefestus", "--config", str(config), "serve",
                                 "--listen", f"127.0.0.1:{port}"], stderr=err, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_serving(base, proc, log=log)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert "Traceback" not in log.read_text()


def test_swagger_ui_works_air_gapped_and_sends_a_request(served: str, browser: Any,
                                                         screenshot: Callable[[str], Path]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 20)
    browser.get(f"{served}/swagger/index.html")
    wait.until(ec.presence_of_element_located((By.ID, "operations-analysis-analyze")))
    assert browser.title == "Hefestus API"
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/api/errors/{domain}", "/api/domains", "/api/zabbix/events", "/api/health", "/readyz",
            "/healthz", "/metrics"} <= {p.replace("\u200b", "") for p in paths}, paths
    screenshot("swagger-ui-loaded")

    # Authorize with the bearer token, as a user of a token-protected Hefestus does.
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".auth-wrapper .btn.authorize"))).click()
    wait.until(ec.visibility_of_element_located((By.ID, "auth-bearer-value"))).send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, ".modal-ux button[type=submit]").click()
    wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, ".modal-ux .btn-done"))).click()

    # POST /api/errors/{domain}: fill the domain and our own body, Execute.
    op = browser.find_element(By.ID, "operations-analysis-analyze")
    op.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    # The block renders in steps (parameters, then the body editor): wait for each part.
    domain = wait.until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, "#operations-analysis-analyze input[placeholder=domain]")))
    body = wait.until(ec.element_to_be_clickable(
        (By.CSS_SELECTOR, "#operations-analysis-analyze textarea.body-param__text")))
    wait.until(lambda _: '"error_details"' in (body.get_attribute("value") or ""))  # the example is in
    domain.send_keys("linux")
    body.send_keys(Keys.CONTROL, "a")
    body.send_keys(Keys.DELETE)
    body.send_keys(json.dumps({"error_details": ERROR, "context": "sent from the Swagger UI"}))
    wait.until(lambda _: domain.get_attribute("value") == "linux" and ERROR[:20] in (body.get_attribute("value") or ""))
    op.find_element(By.CSS_SELECTOR, "button.execute").click()
    wait.until(lambda _: op.find_elements(By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_status"))
    status = op.find_element(By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_status").text
    answer = op.find_element(By.CSS_SELECTOR, ".live-responses-table tr.response .response-col_description").text
    browser.execute_script("arguments[0].scrollIntoView()", op.find_element(By.CSS_SELECTOR, ".live-responses-table"))
    screenshot("swagger-ui-response")
    assert status.strip() == "200", answer
    assert "Resolution retrieved successfully" in answer
    assert "systemctl status nginx.service --no-pager" in answer  # the answer to *our* text

    requested = requested_urls(browser)
    assert any(u.endswith("/openapi.json") for u in requested), requested
    assert any("/api/errors/linux" in u for u in requested), requested
    assert outside(requested) == [], "the page reached beyond this machine"
    assert console_errors(browser) == []
