"""The wheel users install: every module of the hefestus package, and nothing of the test
harness (the Zabbix lab, the fake servers and the helpers live in tests/support/)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator

import pytest

from tests.support.paths import ROOT

#: Words only the test harness has: a shipped module that mentions one carries part of it.
HARNESS_WORDS = ("ZabbixLab", "zabbix_sender", "ThreadingHTTPServer")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    """Built the way `pip install .` (and deploy/Dockerfile) builds it, from a copy of what the
    Dockerfile's build stage copies: no build/ directory is left in the repository, and no
    stale file of an earlier build can end up in the wheel.

    With build isolation: pyproject.toml's [build-system] needs setuptools>=77 (an SPDX
    ``license`` string), newer than the one a venv starts with, so pip fetches it as it
    does for every user (from PyPI, or the index pip is configured with).
    """
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "daemon", src / "daemon",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-w", str(out),
                            "--disable-pip-version-check", "-q"],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (path,) = out.glob("hefestus-*.whl")
    with zipfile.ZipFile(path) as whl:
        yield whl


def _modules(whl: zipfile.ZipFile) -> set[str]:
    return {name for name in whl.namelist() if name.endswith(".py")}


def test_the_wheel_holds_every_module_of_the_package(wheel: zipfile.ZipFile) -> None:
    source = ROOT / "daemon"
    expected = {p.relative_to(source).as_posix() for p in (source / "hefestus").rglob("*.py")
                if "__pycache__" not in p.parts}
    modules = _modules(wheel)
    assert {"hefestus/__init__.py", "hefestus/cli.py", "hefestus/pipeline/cycle.py",
            "hefestus/remediation/remediator.py"} <= modules
    assert modules == expected, (f"missing: {sorted(expected - modules)}, "
                                 f"not in daemon/hefestus: {sorted(modules - expected)}")
    entry_points = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "hefestus = hefestus.cli:main" in wheel.read(entry_points).decode()


def test_the_wheel_holds_no_test_harness(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert not [n for n in names if n.startswith("tests/") or "/tests/" in n or "conftest" in n], names
    assert not [n for n in names if n.rsplit("/", 1)[-1].startswith("testing_")], names
    for name in sorted(_modules(wheel)):
        text = wheel.read(name).decode()
        found = [w for w in HARNESS_WORDS if w in text]
        assert not found, f"{name} mentions {found}: test harness belongs in tests/support/"
