"""The ten fault kinds of the storm benchmark, and the storm itself.

Each kind is a realistic log line of Kubernetes, PostgreSQL, systemd/kernel,
the GitHub Actions runner or Argo CD. Within a kind the lines differ only in
volatile parts (timestamps, pod suffixes, UUIDs, hex ids, IPs, pids,
counters), so Hefestus should see one fingerprint per kind. Six kinds are
known to the shipped patterns/, four are not; the benchmark runs the model in
"model-always" mode so all ten are asked (one call per kind), and with the
model down the six still get their pattern suggestion and the four the
"no pattern matched" triage steps, each with a note saying why.

Each kind has its own two hosts (20 hosts in all, 50 events each). A kind
never shares a host with another: Zabbix fills ``opdata`` with the item's
*current* last value, so a host that mixed kinds would mix their texts.
Log timestamps stay inside one hour, because ``opdata`` holds only the first
20 characters of a value and a cut-off "...T03:" does not normalise like a
whole timestamp.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

POD = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' suffix alphabet: no vowels, no 0, 1, 3
HOSTS_PER_KIND = 2


@dataclass(frozen=True)
class Kind:
    name: str
    group: str  # host group: the shipped rules route on it
    known: bool  # whether the shipped patterns classify it (checked by the benchmark, not assumed)
    line: Callable[[random.Random, datetime, str], str]

    def hosts(self) -> list[str]:
        return [f"storm-{self.name}-{i}" for i in range(1, HOSTS_PER_KIND + 1)]


def _pod(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(POD) for _ in range(n))


def _hex(rng: random.Random, n: int) -> str:
    """A hex id with at least one letter and one digit.

    All-digit ids exist in the wild too, but Hefestus's fingerprint turns them into ``<n>``
    where the others become ``<hex>``: one such id in a storm splits its kind in two.
    """
    return "0" + "".join(rng.choice("0123456789abcdef") for _ in range(n - 2)) + rng.choice("abcdef")


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _pg(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{t.microsecond // 1000:03d} UTC"


def _syslog(t: datetime) -> str:
    return t.strftime("%b %d %H:%M:%S")


def _iso(t: datetime, digits: int = 6) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}{'0' * (digits - 6)}"[:digits] + "Z"


def _crashloop(r: random.Random, t: datetime) -> str:
    """kubelet's journal line for a crash-looping container (klog header, escaped quotes)."""
    pod, uid = f"checkout-api-{_pod(r, 10)}-{_pod(r, 5)}", _uuid(r)
    return (f"E{t:%m%d %H:%M:%S}.{t.microsecond:06d}    {r.randint(800, 9000)} pod_workers.go:1298] "
            '"Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"api\\" with '
            f'CrashLoopBackOff: \\"back-off 5m0s restarting failed container=api pod={pod}_shop({uid})\\"" '
            f'pod="shop/{pod}" podUID="{uid}"')


KINDS: tuple[Kind, ...] = (
    Kind("k8s-crashloop", "Kubernetes storm-bench", True, lambda r, t, h: _crashloop(r, t)),
    Kind("k8s-attach", "Kubernetes storm-bench", True, lambda r, t, h: (
        f"Warning  FailedAttachVolume  {r.randint(10, 59)}s  attachdetach-controller  AttachVolume.Attach "
        f'failed for volume "pvc-{_uuid(r)}" : rpc error: code = Internal desc = Could not attach volume '
        f'"vol-{_hex(r, 17)}" to node "i-{_hex(r, 17)}": attachment of disk "vol-{_hex(r, 17)}" failed, '
        "expected device to be attached but was attaching")),
    Kind("pg-clients", "Database storm-bench", True, lambda r, t, h: (
        f"{_pg(t)} [{r.randint(1000, 99999)}] FATAL:  sorry, too many clients already")),
    Kind("pg-checkpoints", "Database storm-bench", False, lambda r, t, h: (
        f"{_pg(t)} [{r.randint(1000, 99999)}] LOG:  checkpoints are occurring too frequently "
        f"({r.randint(5, 29)} seconds apart)\n"
        f'{_pg(t)} [{r.randint(1000, 99999)}] HINT:  Consider increasing the configuration parameter "max_wal_size".')),
    Kind("unit-failed", "Linux storm-bench", True, lambda r, t, h: (
        f"{_syslog(t)} {h} systemd[1]: nginx.service: Failed with result 'exit-code'.")),
    Kind("tcp-oom", "Linux storm-bench", False, lambda r, t, h: (
        f"{_syslog(t)} {h} kernel: [{r.uniform(1e4, 9e5):.6f}] TCP: out of memory -- consider tuning tcp_mem")),
    Kind("runner-shutdown", "GitHub storm-bench", True, lambda r, t, h: (
        f"{_iso(t, 7)} ##[error]The runner has received a shutdown signal. This can happen when the runner "
        "service is stopped, or a manually started runner is canceled.")),
    Kind("runner-session", "GitHub storm-bench", False, lambda r, t, h: (
        f"[{t:%Y-%m-%d %H:%M:%S}Z ERR  Runner] GitHub.DistributedTask.WebApi.TaskAgentSessionConflictException: "
        f"A session for this runner already exists. (session {_uuid(r)}, retry in {r.randint(5, 60)} s)")),
    Kind("argocd-repo-auth", "Argo CD storm-bench", True, lambda r, t, h: (
        f'time="{t:%Y-%m-%dT%H:%M:%S}Z" level=info msg="Sync operation to {_hex(r, 40)} failed: ComparisonError: '
        "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown "
        f'desc = authentication required" application=argocd/shop-api dest-server=https://10.{r.randint(0, 255)}.'
        f"{r.randint(0, 255)}.{r.randint(1, 254)}:6443")),
    Kind("argocd-shard-lock", "Argo CD storm-bench", False, lambda r, t, h: (
        f'time="{t:%Y-%m-%dT%H:%M:%S}Z" level=error msg="Failed to acquire sharding lock for shard '
        f"{r.randint(0, 15)}: lease argocd/argocd-application-controller-{r.randint(0, 15)} held by "
        f"argocd-application-controller-{_pod(r, 9)}-{_pod(r, 5)} until {t:%Y-%m-%dT%H:%M:%S}Z\"")),
)


def storm(seed: int, per_kind: int = 100, now: float | None = None) -> list[tuple[Kind, str, str]]:
    """``per_kind`` lines of every kind as (kind, host, text), interleaved like a real storm.

    Log timestamps run from the start of the current hour + 1 minute, 0.5 s apart per kind,
    so they never cross an hour (see the module docstring).
    """
    rng = random.Random(seed)
    hour = int(now or time.time()) // 3600 * 3600
    out = []
    for i in range(per_kind):
        for kind in KINDS:
            t = datetime.fromtimestamp(hour + 60 + i * 0.5 + rng.random() * 0.4, UTC)
            host = kind.hosts()[i % HOSTS_PER_KIND]
            out.append((kind, host, kind.line(rng, t, host)))
    return out
