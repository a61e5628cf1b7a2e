# One venv in .venv for everything: the CLI, the trainer (MindSpore, CPU build) and the test tools.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup setup-dev demo test test-fast bench

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install -q -e '.[train]'

# Debian's prometheus package gives the real server and promtool the monitoring tests run; its chromium renders
# `incv4 report`'s page headless in the report test.
setup-dev: $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	@command -v chromium >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The main job: generate demo data, train 8 workers data-parallel on the CPU, write the report, top-1 vs chance.
demo: setup
	$(BIN)/incv4 demo

# The whole suite, end-to-end tests included.
test: setup-dev
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The fast set: everything but the long end-to-end tests.
test-fast: setup-dev
	$(BIN)/python -m pytest -q -m 'not e2e' $(PYTEST_ARGS)

bench: setup-dev
	$(BIN)/python -m bench
