"""A real Zabbix, a real small model behind Ollama's API, the daemon's unchanged client:
the acknowledgement carries a schema-valid model answer, and nothing secret leaks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from hefestus.app.build import App
from hefestus.pipeline.render import MARKER
from tests.support.helpers import free_port
from tests.support.lab import ZabbixLab
from tests.support.zabbix_config import write_config

from .test_end_to_end import acks, fire, run_until_quiet

SECRET = "Hx-pl4nted-S3cret-77q"
#: No shipped pattern knows this one: the model is asked.
ODD = (f"payment-gateway: upstream handshake rejected after 3 attempts "
       f"(login=svc_pay password={SECRET}); queue depth 8812 and rising")
DISK = 'ERROR:  could not extend file "base/16384/2619": No space left on device'
MODEL = "smollm2:135m"


def test_unclassified_problem_gets_a_model_answer_and_no_secret_leaks(
        lab: ZabbixLab, make_app: Callable[..., App], model_server_url: str, tmp_path: Path) -> None:
    host = lab.host(lab.unique("it-model"), "Apps")
    db = lab.host(lab.unique("it-model-db"), "Databases")
    config = write_config(tmp_path, ollama={"url": model_server_url, "model": MODEL, "timeout": 120,
                                            "max_tokens": 400, "max_concurrency": 1,
                                            "temperature": 0})
    env = {**os.environ, "HEFESTUS_CONFIG": str(config)}
    subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], env=env, check=True,
                   capture_output=True)
    events = fire(lab, {"odd": host, "db": db}, {"odd": ODD, "db": DISK})
    ids = {e["eventid"] for e in events}
    run = subprocess.run([sys.executable, "-m", "hefestus", "run", "--once"], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    got = acks(lab, {"odd": host, "db": db}, ids)
    assert all(len(m) == 1 for m in got.values()), got
    odd_id = next(e["eventid"] for e in events if host.host in e["name"])
    odd_msg = got[odd_id][0]
    lines = odd_msg.splitlines()
    assert re.fullmatch(rf"\[Hefestus\] \S+ / unclassified — model {re.escape(MODEL)}, confidence \d+%",
                        lines[0]), odd_msg
    cause = next(line for line in lines if line.startswith("Cause: "))
    assert len(cause) > len("Cause: ") + 2
    steps = [line for line in lines if re.match(r"\d+\. \S", line)]
    assert lines[lines.index("Next steps:") + 1].startswith("1. ") and 1 <= len(steps) <= 6
    db_msg = next(m[0] for e, m in got.items() if e != odd_id)
    assert db_msg.startswith(f"{MARKER} database / disk-full — pattern database:")
    # the secret reached neither Zabbix nor the logs
    assert all(SECRET not in m[0] for m in got.values())
    assert SECRET not in run.stderr and '"model answered"' in run.stderr




def test_model_down_still_acknowledges_with_patterns_and_says_why(
        lab: ZabbixLab, make_app: Callable[..., App]) -> None:
    host = lab.host(lab.unique("it-nomodel"), "Apps")
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    app = make_app(ollama={"url": url, "model": MODEL, "timeout": 5, "failure_threshold": 1})
    run_until_quiet(app)
    events = fire(lab, {"odd": host}, {"odd": ODD})
    started = time.monotonic()
    run_until_quiet(app)
    assert time.monotonic() - started < 60
    [msgs] = acks(lab, {"odd": host}, {e["eventid"] for e in events}).values()
    assert len(msgs) == 1
    assert msgs[0].startswith(f"{MARKER} ") and " / unclassified — no pattern matched" in msgs[0]
    assert f"Note: Model {MODEL} is unavailable: Ollama at {url}: cannot connect" in msgs[0]
    assert SECRET not in msgs[0]
