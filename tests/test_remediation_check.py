"""`hefestus check` for self-healing: token, API version and every mapped job, against FakeRundeck."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hefestus.adapters.rundeck import RundeckClient
from hefestus.classify.patterns import load_catalog
from hefestus.config import RundeckSettings
from hefestus.remediation.checks import check_jobs
from hefestus.remediation.rules import RemediationRules, load_remediation_rules
from tests.support.paths import DATA
from tests.support.rundeck import FakeRundeck

TOKEN = "abcdef0123456789-fake-token"
JOB = "3f2a9c1e-6b0d-4c55-9a57-2b8f0e6d1c44"
OTHER = "7b1d0c2e-1111-4c55-9a57-2b8f0e6d1c45"
RULE = """
[[remediation]]
name = "{name}"
domain = "linux"
category = "{category}"
project = "ops"
job_id = "{job}"
options.host = {{ value = "{{host}}", allow = '^[A-Za-z0-9][A-Za-z0-9.-]*$' }}
"""


@pytest.fixture
def fake() -> Iterator[FakeRundeck]:
    with FakeRundeck(token=TOKEN) as f:
        f.add_job(JOB, "restart-service")
        f.add_job(OTHER, "clean-disk", enabled=False)
        yield f


def rules(tmp_path: Path, *jobs: tuple[str, str, str]) -> RemediationRules:
    (tmp_path / "10-r.toml").write_text("".join(RULE.format(name=n, category=c, job=j) for n, c, j in jobs))
    return load_remediation_rules(tmp_path, catalog=load_catalog(DATA / "patterns"))


def client(fake: FakeRundeck, **kw: Any) -> RundeckClient:
    return RundeckClient(RundeckSettings(**{"url": fake.url, "token": TOKEN, "timeout": 1, "retries": 1,
                                            **kw}), sleep=lambda _: None)


def test_good_and_bad_jobs(tmp_path: Path, fake: FakeRundeck) -> None:
    r = rules(tmp_path, ("restart-service", "service-failed", JOB), ("clean", "disk-full", OTHER))
    lines = check_jobs(client(fake), r, mode="on", api_version=41)
    assert lines[0] == ("ok", "remediation", "mode 'on', 2 rule(s), 2 job(s)")
    assert lines[1] == ("ok", "rundeck", "Rundeck 4.17.6-20240402 on rundeck-fake: API v41 "
                                         "(the server accepts up to v45)")
    assert lines[2] == ("ok", f"rundeck job {JOB}", "'restart-service' in ops, enabled; used by "
                                                    "restart-service")
    assert lines[3] == ("FAIL", f"rundeck job {OTHER}", "execution is disabled for this job in Rundeck")
    # in dry-run the same finding is a warning: nothing runs yet
    assert check_jobs(client(fake), r, mode="dry-run", api_version=41)[3][0] == "warn"


def test_missing_job_and_placeholder(tmp_path: Path, fake: FakeRundeck) -> None:
    r = rules(tmp_path, ("a", "service-failed", "5d5d5d5d-0000-4000-8000-000000000000"),
              ("b", "disk-full", "00000000-0000-0000-0000-000000000002"))
    lines = check_jobs(client(fake), r, mode="on", api_version=41)
    assert lines[2][0] == "FAIL" and "Job ID does not exist" in lines[2][2]
    assert lines[3][0] == "FAIL" and "a placeholder id: replace it" in lines[3][2]
    assert [ln[0] for ln in check_jobs(client(fake), r, mode="dry-run", api_version=41)[2:]] == \
        ["warn", "warn"]


def test_bad_token_is_not_a_missing_acl(tmp_path: Path, fake: FakeRundeck) -> None:
    r = rules(tmp_path, ("restart-service", "service-failed", JOB))
    lines = check_jobs(client(fake, token="wrong-token-000"), r, mode="on", api_version=41)
    assert lines[1][:2] == ("FAIL", "rundeck token") and "(Token:wrong****) is not authorized" in lines[1][2]
    assert len(lines) == 2  # nothing more to learn with a rejected token
    fake.fault("system_info", "forbidden")
    lines = check_jobs(client(fake), r, mode="on", api_version=41)
    assert lines[1] == ("warn", "rundeck token", "valid, but it may not read /system/info (no 'read' on "
                        "the system resource in the ACL): the API version was not verified")
    assert lines[2][0] == "ok"  # and the jobs are still checked


def test_api_version_and_rundeck_down(tmp_path: Path, fake: FakeRundeck) -> None:
    r = rules(tmp_path, ("restart-service", "service-failed", JOB))
    lines = check_jobs(client(fake, api_version=50), r, mode="on", api_version=50)
    assert lines[1][0] == "FAIL" and "set rundeck.api_version to at most 45" in lines[1][2]
    lines = check_jobs(client(fake, url="http://127.0.0.1:9"), r, mode="on", api_version=41)
    assert lines[1][0] == "FAIL" and "cannot connect" in lines[1][2]
    assert check_jobs(None, r, mode="dry-run", api_version=41)[1] == (
        "ok", "rundeck", "no [rundeck] configured (url, token): decisions are reported, nothing runs")
