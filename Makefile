# One entry point: these targets are what CI runs (.ci/run calls `make test`).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BASE_STAMP := $(VENV)/.installed-base

.PHONY: install install-base demo demo-serve test check lint types unit bench bench-deps clean lock docs

# `install` is the package plus the dev tools (tests, lint, types); `demo` needs only the
# package, so a fresh `make demo` skips installing the test tools.
install: $(STAMP)
install-base: $(BASE_STAMP)

$(VENV)/bin/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Installs are pinned by constraints.txt (every dependency's exact version), so today's CI is
# tomorrow's; `make lock` refreshes it on purpose from pyproject.toml's ranges and runs the suite.
LOCK := constraints.txt
PIP_LOCKED := $(BIN)/python -m pip install --quiet -c $(LOCK)

$(BASE_STAMP): pyproject.toml $(LOCK) | $(VENV)/bin/python
	$(PIP_LOCKED) -e .
	touch $(BASE_STAMP)

$(STAMP): pyproject.toml $(LOCK) | $(VENV)/bin/python
	$(PIP_LOCKED) -e '.[dev]'
	touch $(STAMP) $(BASE_STAMP)

demo: install-base
	$(BIN)/probes demo

# The service on the simulator: a continuous canary, a schedule, a rollout captured by itself;
# open the printed URL. Stops after 120 s (or Ctrl-C).
demo-serve: install-base
	$(BIN)/probes demo --serve --duration 120 --replace-at 20

check: lint types

lint: install
	$(BIN)/ruff check probes reports locustfiles tests bench
	$(BIN)/ruff format --check probes reports locustfiles tests bench

types: install
	$(BIN)/mypy

# tests/locust imports Locust (gevent monkey-patches sockets): its own pytest process.
# The rest runs on TEST_WORKERS pytest-xdist workers, a test file per worker at a time (module
# fixtures stay shared): most end-to-end tests wait on servers and subprocesses, so two
# workers on 2 cores took 343 s where one took 605 s. `make unit TEST_WORKERS=0`: serial.
TEST_WORKERS ?= 2
unit: install
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile tests --ignore=tests/locust
	$(BIN)/pytest -q -p no:anyio tests/locust

test: check unit

# The benchmarks drive nginx and compare with wrk and hey (Debian packages) and autocannon (npm,
# into .bench/node, not global; skipped with a note if npm is missing), all on 127.0.0.1.
bench-deps:
	@command -v nginx >/dev/null && command -v wrk >/dev/null && command -v hey >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx wrk hey)
	@test -x .bench/node/node_modules/.bin/autocannon || \
	  (command -v npm >/dev/null && mkdir -p .bench/node && \
	   npm install --prefix .bench/node --no-audit --no-fund --silent autocannon) || \
	  echo "bench-deps: autocannon not installed (no npm?); the canary bench skips it"
	@$(BIN)/python -c "import uvloop, duckdb, polars, httptools" 2>/dev/null || $(PIP_LOCKED) -e '.[bench]'

bench: install bench-deps
	$(BIN)/python -m bench.run

# A deliberate refresh of constraints.txt: a throw-away venv takes the newest releases that
# pyproject.toml's ranges allow (dev and bench extras included), the freeze becomes the lock,
# then the project's venv is rebuilt from it and the whole suite runs. Commit both together.
lock:
	rm -rf .lock-venv
	$(PY) -m venv .lock-venv
	.lock-venv/bin/python -m pip install --quiet --upgrade pip
	.lock-venv/bin/python -m pip install --quiet -e '.[dev,bench]'
	{ sed -n '1,3p' $(LOCK); .lock-venv/bin/python -m pip freeze --exclude-editable; } > $(LOCK).new
	mv $(LOCK).new $(LOCK)
	rm -rf .lock-venv $(STAMP) $(BASE_STAMP)
	$(MAKE) test

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache

# The CLI reference is made from the click commands (tests/test_docs.py fails when it is stale).
docs: install-base
	$(BIN)/python -m probes.cli.reference > docs/cli.md
