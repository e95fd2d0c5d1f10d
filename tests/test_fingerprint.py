"""Storm deduplication: volatile parts normalised away, everything that decides the answer kept."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hefestus.analysis.fingerprint import LIMIT, fingerprint, normalise

CRASHLOOP_A = (
    "Nov 24 12:00:01 node-3 kubelet[1234]: E1124 12:00:01.789012    1234 pod_workers.go:1298] "
    '"Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"app\\" with CrashLoopBackOff: '
    '\\"back-off 5m0s restarting failed container=app pod=app-7d9f8b6c5d-x2k4q_default'
    '(0d6a1f52-3a3e-4f0b-9c1e-2b8f3e6c9a11)\\"" pod="default/app-7d9f8b6c5d-x2k4q" from 10.244.1.17:41234, restarts=7'
)
CRASHLOOP_B = (
    "Nov 25 03:17:45 node-12 kubelet[987]: E1125 03:17:45.000120    987 pod_workers.go:1298] "
    '"Error syncing pod, skipping" err="failed to \\"StartContainer\\" for \\"app\\" with CrashLoopBackOff: '
    '\\"back-off 40s restarting failed container=app pod=app-5c8b4d7f96-qpl2v_default'
    '(7b1e9c40-2d5f-4a8e-b3c6-9f0a1d2e3c4b)\\"" pod="default/app-5c8b4d7f96-qpl2v" from 10.244.7.201:50022, restarts=12'
)
IMAGE_PULL = CRASHLOOP_A.replace("CrashLoopBackOff", "ImagePullBackOff")

KEY = dict(domain="kubernetes", model="qwen2.5:7b", prompt_version="3")

PINNED = [
    ("2024-04-23T12:34:56.789Z connection to 10.244.1.17:5432 refused after 3 retries",
     "<time> connection to <ip> refused after <n> retries"),
    ('2024-04-23 12:34:56.789 UTC [12345] FATAL:  password authentication failed for user "app"',
     '<time> [<n>] FATAL: password authentication failed for user "app"'),
    ("Apr 23 12:34:56 web01 systemd[1]: php8.2-fpm.service: Main process exited, code=exited, status=255/EXCEPTION",
     "<time> web01 systemd[<n>]: php8.2-fpm.service: Main process exited, code=exited, status=<n>/EXCEPTION"),
    ("Back-off restarting failed container app in pod app-7d9f8b6c5d-x2k4q_default(0d6a1f52-3a3e-4f0b-9c1e-2b8f3e6c9a11)",
     "Back-off restarting failed container app in pod app-<pod>_default(<uuid>)"),
    ("kube-proxy-x7k2p and web-0 and web-12 OOMKilled at limit 512Mi",
     "kube-proxy-<pod> and web-<n> and web-<n> OOMKilled at limit 512Mi"),
    ("dial tcp [2001:db8::1]:8080: i/o timeout; fe80::1%eth0 std::vector tokio::runtime",
     "dial tcp <ip>: i/o timeout; <ip> std::vector tokio::runtime"),
    ("image sha256:4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945 at commit 3f2a9c1, deadbeef stays",
     "image sha256:<hex> at commit <hex>, deadbeef stays"),
    ("segfault at 0x7fff5fbff8a8 on 00:1a:2b:3c:4d:5e took 1.5s then 250ms then 2m30s",
     "segfault at <hex> on <mac> took <dur> then <dur> then <dur>"),
    ('203.0.113.7 - - [23/Apr/2024:12:34:56 +0000] "GET /api/v1/items/42 HTTP/1.1" 502 157',
     '<ip> - - [<time>] "GET /api/v1/items/<n> HTTP/<n>" <n> <n>'),
    ("Error: Process completed with exit code 137.\n\n   ##[error]   failed",
     "Error: Process completed with exit code <n>. ##[error] failed"),
]


@pytest.mark.parametrize(("text", "expected"), PINNED, ids=lambda v: v[:40])
def test_normalise_examples(text: str, expected: str) -> None:
    """Times, addresses, ids, pod suffixes and counters become placeholders; words and units stay."""
    assert normalise(text) == expected


def test_a_crashloop_storm_shares_one_fingerprint() -> None:
    """Two pods of one deployment crash-looping on different nodes, at different times, dedupe."""
    assert normalise(CRASHLOOP_A) == normalise(CRASHLOOP_B)
    assert fingerprint(**KEY, text=CRASHLOOP_A) == fingerprint(**KEY, text=CRASHLOOP_B)


@pytest.mark.parametrize(("field", "value"), [("domain", "linux"), ("model", "llama3.1:8b"), ("prompt_version", "4")])
def test_anything_that_changes_the_answer_changes_the_fingerprint(field: str, value: str) -> None:
    """A different domain, model or prompt version must ask the LLM again."""
    other = {**KEY, field: value}
    assert fingerprint(**other, text=CRASHLOOP_A) != fingerprint(**KEY, text=CRASHLOOP_A)


def test_a_different_error_kind_is_a_different_fingerprint() -> None:
    """CrashLoopBackOff and ImagePullBackOff of the same pod are different problems."""
    assert fingerprint(**KEY, text=CRASHLOOP_A) != fingerprint(**KEY, text=IMAGE_PULL)


def test_fields_cannot_bleed_into_each_other() -> None:
    """Moving a separator-like character between fields never yields the same key."""
    a = fingerprint(domain="a|b", model="c", prompt_version="1", text="x")
    b = fingerprint(domain="a", model="b|c", prompt_version="1", text="x")
    assert a != b and len(a) == 64 and int(a, 16) >= 0


def test_only_the_head_of_a_huge_text_counts() -> None:
    """A 1 MB text is cut; texts differing only after the cut share a fingerprint."""
    head = "OOMKilled container app in pod app-7d9f8b6c5d-x2k4q\n" * 200
    a, b = head + "x" * (1 << 20), head + "y" * (1 << 20)
    assert len(normalise(a)) <= LIMIT
    assert fingerprint(**KEY, text=a) == fingerprint(**KEY, text=b)


@given(st.text() | st.lists(st.sampled_from(
    [CRASHLOOP_A, "12:34", "fe80::", "::1", "-x2k4q", "app", "0x1f", "5m", "7", ".", ":", " ", "\n", "-", "_"]),
    max_size=20).map("".join))
def test_normalise_is_idempotent_and_total(text: str) -> None:
    """normalise never raises, and normalising its own output changes nothing."""
    once = normalise(text)
    assert normalise(once) == once
    assert len(once) <= LIMIT
