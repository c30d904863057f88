# Every target runs scripts/setup first (idempotent and quick when nothing changed).
VENV := .venv/bin
PYTEST_FLAGS ?=
# Tests run on two workers (pytest-xdist): most of their time is waiting on BGP timers and
# traffic, and every test builds its own uniquely named namespaces. PYTEST_JOBS=0: serial.
PYTEST_JOBS ?= 2
PYTEST := $(VENV)/pytest -n $(PYTEST_JOBS) $(PYTEST_FLAGS)

.PHONY: setup lab lab-down test test-unit test-integration test-e2e lint bench clean

setup:
	@bash scripts/setup

lab: setup
	@bash scripts/lab-demo

lab-down: setup
	$(VENV)/kroute lab down

test: setup
	$(PYTEST) tests

test-unit: setup
	$(PYTEST) tests/unit

test-integration: setup
	$(PYTEST) tests/integration

test-e2e: setup
	$(PYTEST) tests/e2e

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy
	$(VENV)/mypy scripts/check_layers.py
	$(VENV)/python scripts/check_layers.py .

bench: setup
	$(VENV)/python bench/run_all.py

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache *.egg-info
