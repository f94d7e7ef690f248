# calbridge: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
PYTEST_ARGS ?=

.PHONY: setup run test lint typecheck unit bench clean

setup: $(STAMP_PY) $(STAMP_NODE)

$(STAMP_PY): requirements.txt requirements-dev.txt
	@echo "setup: installing calbridge's Python packages into $(VENV) (Azure Functions, Azure"
	@echo "       Storage, msgraph-sdk, exchangelib, test tools: about 600 MB, 1-3 minutes the"
	@echo "       first time; only again when requirements*.txt change)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(STAMP_NODE): package.json package-lock.json
	@echo "setup: installing Azurite, the Azure Storage emulator, with npm ci (about 20 seconds)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Start Azurite, the Exchange and booking-platform simulators and the local Functions runner.
run: setup
	$(PY) -m devhost

lint: $(STAMP_PY)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP_PY)
	$(VENV)/bin/mypy

## Set up, then ruff, mypy and the whole pytest suite (tests start their own Azurite).
test: setup lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) node_modules .calbridge .pytest_cache .mypy_cache .ruff_cache
