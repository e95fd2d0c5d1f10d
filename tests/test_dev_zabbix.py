"""The dev Zabbix of `make zabbix` never harms a real Zabbix on the same host (issue 11).

deploy/dev/zabbix-up.sh and zabbix-down.sh must leave /etc/zabbix byte-identical, never
signal a process because of its name (a foreign ``zabbix_server`` survives both), stop only
the PIDs their own pid files name while the command line still is theirs, and refuse, with
a clear message, a web or trapper port held by something they did not start.

zabbix-up.sh runs against the instance `make zabbix` brought up (already up: it only checks,
in about a second); zabbix-down.sh and the refusals run on a private HEFESTUS_ZBX_DIR with
stand-in processes and free ports, so the shared instance keeps serving the other tests.
"""

from __future__ import annotations

import hashlib
import http.cookiejar
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import free_port

pytestmark = pytest.mark.zabbix

ROOT = Path(__file__).resolve().parent.parent
UP = ROOT / "deploy" / "dev" / "zabbix-up.sh"
DOWN = ROOT / "deploy" / "dev" / "zabbix-down.sh"
VERSION = os.environ.get("HEFESTUS_ZBX_VERSION", "6.0")
WEB_PORT = os.environ.get("HEFESTUS_ZBX_WEB_PORT", "8097" if VERSION == "7.0" else "8089")
RUN_DIR = Path(os.environ.get("HEFESTUS_ZBX_DIR", "/var/tmp/hefestus-zabbix")) / VERSION
ETC = Path("/etc/zabbix")
#: Python waiting on a socket: started under another name, it is a "foreign" server.
LISTENER = ("import socket, sys, time\n"
            "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen(); print('ready', flush=True)\n"
            "time.sleep(600)\n")
SLEEPER = "import time; time.sleep(600)"


def etc_digest() -> dict[str, str]:
    """sha256 of every file under /etc/zabbix (empty when there is none)."""
    if not ETC.exists():
        return {}
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(ETC.rglob("*")) if p.is_file() and not p.is_symlink()}


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def alive(proc: subprocess.Popen[str]) -> bool:
    return proc.poll() is None


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def run(script: Path, *args: str, env: dict[str, str] | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def spawn(argv: list[str], *, session: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=session)


@pytest.fixture
def named_zabbix_server(tmp_path: Path) -> Path:
    """A python interpreter whose process name is ``zabbix_server``."""
    link = tmp_path / "bin" / "zabbix_server"
    link.parent.mkdir()
    link.symlink_to(os.path.realpath(sys.executable))
    return link


@pytest.fixture
def foreign_server(named_zabbix_server: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A process called zabbix_server that nothing of ours started, listening on the standard
    trapper port 10051 when that is free (as a real server would), else on a free port."""
    port = 10051 if port_free(10051) else free_port()
    proc = spawn([str(named_zabbix_server), "-c", LISTENER, str(port)])
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert comm(proc.pid) == "zabbix_server"
        yield proc, port
    finally:
        proc.kill()
        proc.wait()


def test_up_leaves_etc_and_a_foreign_zabbix_server_alone(
        foreign_server: tuple[subprocess.Popen[str], int]) -> None:
    proc, _ = foreign_server
    before = etc_digest()
    started = time.monotonic()
    out = run(UP, VERSION)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Zabbix {VERSION}." in out.stdout
    # Already up (make zabbix ran before the tests): it checks and leaves, nothing reloaded.
    assert time.monotonic() - started < 20, out.stdout
    assert "loading" not in out.stdout and "building" not in out.stdout
    assert alive(proc) and comm(proc.pid) == "zabbix_server"
    assert etc_digest() == before


def test_down_stops_only_the_pids_it_started(tmp_path: Path, named_zabbix_server: Path,
                                             foreign_server: tuple[subprocess.Popen[str], int]) -> None:
    foreign, _ = foreign_server
    zbx = tmp_path / "zbx"
    run60, run70 = zbx / "6.0", zbx / "7.0"
    run60.mkdir(parents=True)
    run70.mkdir()
    # Stand-ins for what zabbix-up.sh starts: their command lines carry our config / docroot.
    ours_server = spawn([str(named_zabbix_server), "-c", SLEEPER, "-c", str(run60 / "zabbix_server.conf")])
    ours_php = spawn([sys.executable, "-c", SLEEPER, "-S", f"127.0.0.1:{free_port()}", "-t", str(run60 / "ui")],
                     session=True)
    (run60 / "zabbix_server.pid").write_text(f"{ours_server.pid}\n")
    (run60 / "php.pid").write_text(f"{ours_php.pid}\n")
    # Stale pid files (as after a reboot) that now name the foreign process: not ours.
    (run70 / "zabbix_server.pid").write_text(f"{foreign.pid}\n")
    (run70 / "php.pid").write_text(f"{foreign.pid}\n")
    (zbx / "zabbix_server.pid").write_text(f"{foreign.pid}\n")   # the layout before issue 11
    (zbx / "php.pid").write_text(f"{foreign.pid}\n")
    before = etc_digest()
    try:
        out = run(DOWN, "all", env={"HEFESTUS_ZBX_DIR": str(zbx)}, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        assert ours_server.wait(timeout=10) is not None
        assert ours_php.wait(timeout=10) is not None
        assert f"pid {ours_server.pid}" in out.stdout and f"pid {ours_php.pid}" in out.stdout
        assert str(foreign.pid) not in out.stdout
        assert alive(foreign) and comm(foreign.pid) == "zabbix_server"
        assert etc_digest() == before
    finally:
        for p in (ours_server, ours_php):
            p.kill()
            p.wait()


@pytest.mark.parametrize("held", ["web", "trapper"])
def test_up_refuses_a_port_held_by_another_process(
        tmp_path: Path, held: str, foreign_server: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = foreign_server
    other = free_port()
    web, trapper = (port, other) if held == "web" else (other, port)
    zbx = tmp_path / "zbx"
    before = etc_digest()
    started = time.monotonic()
    out = run(UP, VERSION, timeout=60, env={
        "HEFESTUS_ZBX_DIR": str(zbx), "HEFESTUS_ZBX_WEB_PORT": str(web),
        "HEFESTUS_ZBX_SERVER_PORT": str(trapper), "HEFESTUS_ZBX_DB": "hefestus_zbx_never_created"})
    assert out.returncode != 0
    assert f"the {held} port {port} of the dev Zabbix {VERSION} is held by another process" in out.stderr
    assert f"{proc.pid}(zabbix_server)" in out.stderr
    assert time.monotonic() - started < 10
    # It stopped before touching anything: no database, no config, nothing started.
    assert sorted(p.name for p in (zbx / VERSION).iterdir()) == []
    assert alive(proc) and etc_digest() == before


def test_frontend_is_a_private_copy_with_a_clean_first_screen() -> None:
    """The running frontend reads its own conf/ (not /etc/zabbix) and shows no locale warning."""
    php = [p for p in (RUN_DIR / "ui").rglob("*.php")
           if "/etc/zabbix" in p.read_text(errors="replace")]
    assert php == []
    base = f"http://127.0.0.1:{WEB_PORT}"
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    login = opener.open(base + "/index.php", timeout=30).read().decode()
    assert f"<title>hefestus-dev {VERSION}" in login     # the server name of our own conf
    form = urllib.parse.urlencode({"name": "Admin", "password": "zabbix", "enter": "Sign in"}).encode()
    opener.open(base + "/index.php", data=form, timeout=30).read()
    page = opener.open(base + "/zabbix.php?action=dashboard.view", timeout=60).read().decode()
    assert "Dashboard" in page and "Sign in" not in page
    assert "Locale for language" not in login + page


def test_nothing_of_ours_listens_on_the_standard_ports() -> None:
    ours = (RUN_DIR / "zabbix_server.conf").read_text()
    assert "ListenPort=10051" not in ours and "ListenIP=127.0.0.1" in ours
    assert "HANodeName" not in ours and f"PidFile={RUN_DIR}/zabbix_server.pid" in ours


def test_nothing_zabbix_up_starts_inherits_its_lock() -> None:
    """zabbix-up.sh holds a lock on fd 9 while it works (one run per version at a time). A
    daemon it starts, or that a package install or pg_ctlcluster starts for it, would inherit
    the descriptor and hold the lock for its whole life: the next `make zabbix` of that version
    would then wait forever. Every command that can leave a process behind closes fd 9."""
    starters = re.compile(r'^\s*(?:\$SUDO env \S+ apt-get install|\$SUDO pg_ctlcluster .*\bstart\b|'
                          r'\$SUDO pg_createcluster|"\$SERVER_BIN" -c|.*setsid nohup php)')
    lines = UP.read_text().splitlines()
    found = 0
    for i, line in enumerate(lines):
        if starters.match(line):
            command = line
            j = i
            while command.rstrip().endswith("\\"):  # a command continued on the next lines
                j += 1
                command += lines[j]
            found += 1
            assert "9>&-" in command, f"zabbix-up.sh:{i + 1} starts something that inherits the lock: {line.strip()}"
    assert found >= 5
