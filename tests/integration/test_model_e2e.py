"""A real Zabbix, a real small model behind Ollama's API, the daemon's unchanged client:
the acknowledgement carries a model answer only when it passes the gate, and nothing secret
leaks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

from hefestus.analysis.gate import REJECT_REASONS, Rejection, check
from hefestus.app.build import App
from hefestus.pipeline.render import MARKER
from hefestus.redact import Redactor
from tests.support.helpers import free_port
from tests.support.lab import ZabbixLab
from tests.support.paths import ROOT
from tests.support.zabbix_config import write_config

from .test_end_to_end import acks, fire, run_until_quiet

SECRET = "Hx-pl4nted-S3cret-77q"
#: No shipped pattern knows this one: the model is asked.
ODD = (f"payment-gateway: upstream handshake rejected after 3 attempts "
       f"(login=svc_pay password={SECRET}); queue depth 8812 and rising")
DISK = 'ERROR:  could not extend file "base/16384/2619": No space left on device'
MODEL = "smollm2:135m"


def gate_refusal(message: str, event_text: str) -> Rejection | None:
    """What the gate says of a message written from a model answer (its cause and steps), given
    the event text and the routed domain's description, as the analyzer would check them."""
    domain = message.splitlines()[0].removeprefix(f"{MARKER} ").split(" / ", 1)[0]
    pattern_file = ROOT / "patterns" / f"{domain}.toml"
    description = (tomllib.loads(pattern_file.read_text())["dictionary"].get("description", "")
                   if pattern_file.is_file() else "")
    lines = message.splitlines()
    cause = next(line for line in lines if line.startswith("Cause: ")).removeprefix("Cause: ")
    steps = [re.sub(r"^\d+\. ", "", line) for line in lines if re.match(r"\d+\. \S", line)]
    return check(cause, steps, event_text=event_text, context=[description])


def test_unclassified_problem_gets_a_gated_model_answer_and_no_secret_leaks(
        lab: ZabbixLab, make_app: Callable[..., App], model_server_url: str, tmp_path: Path) -> None:
    """SmolLM2-135M is asked; what it answers is written only if it passes the gate, else the
    event gets the triage steps and a note saying the answer was rejected and why. Either way,
    no message written from a model answer fails the gate."""
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
    odd = next(e for e in events if host.host in e["name"])
    odd_msg = got[odd["eventid"]][0]
    lines = odd_msg.splitlines()
    assert '"model answered"' in run.stderr or '"model answer refused by the gate"' in run.stderr
    if re.search(r" — model \S+", lines[0]):
        assert re.fullmatch(rf"\[Hefestus\] \S+ / unclassified — model {re.escape(MODEL)}, unverified",
                            lines[0]), odd_msg
        assert lines[lines.index("Next steps:") + 1].startswith("1. ")
    else:  # every answer refused: the triage steps, and the reason in the note
        assert lines[0].endswith(" / unclassified — no pattern matched"), odd_msg
        assert "Triage steps:" in lines and "%" not in lines[0]
        note = re.search(rf"Note: Model {re.escape(MODEL)}(?:'s answer was rejected, even on a retry "
                         r"\((?P<reason>\S+): | gave no usable answer \()", odd_msg)
        assert note is not None, odd_msg
        assert note["reason"] is None or note["reason"] in REJECT_REASONS, odd_msg
    event_text = f"{odd['name']}\n{Redactor()(ODD)}"
    for msgs in got.values():
        if " — model " in msgs[0].splitlines()[0]:
            refused = gate_refusal(msgs[0], event_text)
            assert refused is None, f"{refused}:\n{msgs[0]}"
    db_msg = next(m[0] for e, m in got.items() if e != odd["eventid"])
    assert db_msg.startswith(f"{MARKER} database / disk-full — pattern database:")
    # the secret reached neither Zabbix nor the logs
    assert all(SECRET not in m[0] for m in got.values())
    assert SECRET not in run.stderr


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
