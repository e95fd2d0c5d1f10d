"""Where the dev Zabbix of `make zabbix [ZABBIX=6.0|7.0]` listens, as deploy/dev/zabbix-up.sh
sets it up: one place for the tests, the demo and the benchmark. The Makefile exports the
variables; the defaults here match it, so a test run by hand finds the same Zabbix."""

from __future__ import annotations

import os
from pathlib import Path

#: version -> (web/API port, trapper port); never 80 or 10051, which a real Zabbix may hold.
PORTS = {"6.0": (8089, 10151), "7.0": (8097, 10171)}

VERSION = os.environ.get("HEFESTUS_ZBX_VERSION", "6.0")
WEB_PORT = int(os.environ.get("HEFESTUS_ZBX_WEB_PORT") or PORTS.get(VERSION, PORTS["6.0"])[0])
SERVER_PORT = int(os.environ.get("HEFESTUS_ZBX_SERVER_PORT") or PORTS.get(VERSION, PORTS["6.0"])[1])
URL = f"http://127.0.0.1:{WEB_PORT}"
#: Its run directory: zabbix_server.conf, logs, pid files, the frontend copy (ui/).
RUN_DIR = Path(os.environ.get("HEFESTUS_ZBX_DIR", "/var/tmp/hefestus-zabbix")) / VERSION
#: Its own database in the host's PostgreSQL cluster (the role has the same name).
DB_NAME = os.environ.get("HEFESTUS_ZBX_DB") or f"hefestus_zbx{VERSION.replace('.', '')}"
