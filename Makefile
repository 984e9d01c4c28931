# One entry point: these targets are what CI runs (.ci/run calls `make test`).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test check lint types unit bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/probes demo

check: lint types

lint: install
	$(BIN)/ruff check probes reports locustfiles tests bench
	$(BIN)/ruff format --check probes reports locustfiles tests bench

types: install
	$(BIN)/mypy

# tests/locust imports Locust (gevent monkey-patches sockets): its own pytest process.
unit: install
	$(BIN)/pytest -q tests --ignore=tests/locust
	$(BIN)/pytest -q -p no:anyio tests/locust

test: check unit

bench: install
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) runs .mypy_cache .ruff_cache .pytest_cache
