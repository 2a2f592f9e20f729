# The README's two commands are `make run` and `make test`. Everything else is a helper for them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: run test install install-dev lint typecheck unit bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The product (vk-eci) and the test bed (vk-eci-sandbox, in sandbox/) are two distributions; a checkout installs both.
install: $(BIN)/python
	$(BIN)/pip install --quiet -e . -e ./sandbox

$(STAMP): pyproject.toml sandbox/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]' -e ./sandbox
	touch $(STAMP)

install-dev: $(STAMP)

## make run: the all-in-one sandbox (API server, ECI simulator, daemon)
run: install
	$(BIN)/vk-provider sandbox --dir .sandbox

lint: install-dev
	$(BIN)/ruff check vk_provider sandbox tests bench
	$(BIN)/ruff format --check vk_provider sandbox tests bench

typecheck: install-dev
	$(BIN)/mypy

unit: install-dev
	$(BIN)/python -m pytest -q

## make test: everything CI checks
test: lint typecheck unit

docs: install-dev
	$(BIN)/vk-provider config-docs > docs/configuration.md

bench: install-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .sandbox .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info sandbox/build sandbox/*.egg-info
