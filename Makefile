# Toolway: `make run` starts the quick-start gateway, `make test` runs the whole suite.
# Both set everything up first: a .venv with the project and its test tools.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

run: $(STAMP)
	$(BIN)/python examples/quickstart.py

test: $(STAMP)
	$(BIN)/python -m toolway.testing.ts_client install --if-node
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy src

format: $(STAMP)
	$(BIN)/ruff format src tests examples
	$(BIN)/ruff check --fix src tests examples

bench: $(STAMP)
	$(BIN)/python bench/hop.py $(ARGS)

clean:
	rm -rf $(VENV) toolway.db toolway.db-wal toolway.db-shm .pytest_cache .ruff_cache .mypy_cache clients/ts/node_modules

# The official MCP conformance suite against the fixture server and Toolway (docs/conformance.md).
# npm ci installs Node 22 and the suite into conformance/node_modules; ARGS=--allow-fail only reports.
.PHONY: conformance
conformance: $(STAMP)
	bash scripts/conformance.sh $(ARGS)
