# calbridge: the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP_PY := $(VENV)/.installed
STAMP_NODE := node_modules/.installed
# checkov lives apart from $(VENV): it pins an old `packaging` the test tools cannot share.
CHECKOV_VENV := .venv-checkov
STAMP_CHECKOV := $(CHECKOV_VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup run test lint typecheck infra-check browser unit bench clean

setup: $(STAMP_PY) $(STAMP_NODE)

$(STAMP_PY): requirements.txt requirements-dev.txt
	@echo "setup: installing calbridge's Python packages into $(VENV) (Azure Functions, Azure"
	@echo "       Storage, msgraph-sdk, exchangelib, test tools: about 600 MB, 1-3 minutes the"
	@echo "       first time; only again when requirements*.txt change)"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

$(STAMP_CHECKOV): requirements-infra.txt
	@echo "setup: installing checkov (security checks of the Bicep templates) into $(CHECKOV_VENV),"
	@echo "       its own environment (about 300 MB, 1 minute the first time; only again when"
	@echo "       requirements-infra.txt changes)"
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-infra.txt
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

## Every Bicep file under infra/ parses, and checkov's Bicep checks pass (offline); skips need a reason.
infra-check: $(STAMP_PY) $(STAMP_CHECKOV)
	$(PY) -m infra.check --checkov $(CHECKOV_VENV)/bin/checkov

## The status page's browser test (tests/browser) drives Debian's headless Chromium through its
## WebDriver: installed with apt-get where missing (as root, or through sudo).
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then exit 0; fi; \
	if [ -n "$$CALBRIDGE_SKIP_BROWSER_TESTS" ]; then exit 0; fi; \
	echo "setup: installing Debian's chromium and chromium-driver for the browser test"; \
	if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; else \
	  echo "browser: install chromium and chromium-driver (or set CALBRIDGE_SKIP_BROWSER_TESTS=1)"; \
	  exit 1; fi; \
	$$SUDO apt-get update -qq && \
	DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver

## Set up, then ruff, mypy, the infra checks and the whole pytest suite (tests start their own Azurite).
test: setup browser lint typecheck infra-check
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) node_modules .calbridge .pytest_cache .mypy_cache .ruff_cache
