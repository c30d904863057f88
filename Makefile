# Every target runs scripts/setup first (idempotent and quick when nothing changed).
VENV := .venv/bin
PYTEST_FLAGS ?=

.PHONY: setup lab lab-down test test-unit test-integration test-e2e lint bench clean

setup:
	@bash scripts/setup

lab: setup
	@bash scripts/lab-demo

lab-down: setup
	$(VENV)/kroute lab down

test: setup
	$(VENV)/pytest $(PYTEST_FLAGS) tests

test-unit: setup
	$(VENV)/pytest $(PYTEST_FLAGS) tests/unit

test-integration: setup
	$(VENV)/pytest $(PYTEST_FLAGS) tests/integration

test-e2e: setup
	$(VENV)/pytest $(PYTEST_FLAGS) tests/e2e

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .
	$(VENV)/mypy

bench: setup
	$(VENV)/python bench/run_all.py

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache *.egg-info
