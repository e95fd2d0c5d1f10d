"""`hefestus serve`: the API alone, as a process, for teams that only want the CI endpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.helpers import free_port, wait_serving
from tests.support.ollama import FakeOllama
from tests.support.paths import DATA


def test_serve_answers_ci_pipelines_with_patterns_and_the_model(tmp_path: Path) -> None:
    """No Zabbix credentials needed; seed-compatible answers; a clean stop on SIGTERM."""
    port = free_port()
    with FakeOllama() as fake:
        config = tmp_path / "hefestus.toml"
        config.write_text(f'[classification]\nrules_dir = "{DATA / "rules"}"\npatterns_dir = "{DATA / "patterns"}"\n'
                          f'[ollama]\nurl = "{fake.url}"\nmodel = "llama3.1:8b"\n'
                          f'[logging]\nformat = "json"\n')
        proc = subprocess.Popen([sys.executable, "-m", "hefestus", "--config", str(config), "serve", "--listen",
                                 f"127.0.0.1:{port}"], stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "HEFESTUS_ZABBIX_TOKEN": ""})
        base = f"http://127.0.0.1:{port}"
        try:
            wait_serving(base, proc)
            known = httpx.post(f"{base}/api/errors/database", timeout=10,
                               json={"error_details": "FATAL:  sorry, too many clients already", "context": "ci"})
            assert known.status_code == 200
            body = known.json()
            assert body["message"] == "Resolution retrieved successfully"
            assert body["error"]["causa"] == body["cause"] and body["error"]["solucao"].startswith("1. ")
            assert body["source"] == "pattern database:pg-too-many-clients"
            odd = httpx.post(f"{base}/api/errors/linux", json={"error_details": "frobnicator wedged"}, timeout=30)
            assert odd.json()["source"] == "model llama3.1:8b" and fake.chat_calls == 1
            missing = httpx.post(f"{base}/api/errors/nosql", json={"error_details": "x"}, timeout=10)
            assert missing.status_code == 404 and missing.json()["domains"] == ["database", "linux"]
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 200
            assert "hefestus_model_calls_total 1.0" in httpx.get(f"{base}/metrics", timeout=10).text
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM), err
    assert "Traceback" not in err
