# flx-meltano task runner. Every target does its own set-up and is quick the second time.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
export MELTANO_CLI_DISABLE_VERSION_CHECK := true
export MELTANO_SEND_ANONYMOUS_USAGE_STATS := false
export PATH := $(CURDIR)/$(BIN):$(PATH)

PLUGIN_INPUTS := meltano.yml taps/tap-shopsim/pyproject.toml targets/target-jsonlines/pyproject.toml
# The conformance suite's project of third-party plugins from PyPI (tests/conformance).
CONFORMANCE := tests/conformance/project

.PHONY: help setup conformance-plugins demo jobs test test-faults test-fast lint bench lock clean-db dist browser prometheus

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-20s %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==0.13.9

$(VENV)/.installed: $(UV) requirements.lock pyproject.toml
	$(UV) pip install --quiet --python $(BIN)/python -r requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e . -e taps/tap-shopsim -e targets/target-jsonlines
	touch $@

.meltano/.installed: $(VENV)/.installed $(PLUGIN_INPUTS)
	$(BIN)/meltano install
	mkdir -p .meltano && touch $@

# Byte-compile every virtual environment once. Where PYTHONDONTWRITEBYTECODE is set (as on these
# machines) nothing is ever cached at import time, and each python, meltano, tap and target
# process would compile its imports again: seconds per process.
.meltano/.compiled: .meltano/.installed
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib src $(wildcard .meltano/*/*/venv/lib) > /dev/null || true
	touch $@

# The dbt manifest the Dagster definitions read (dbt models as assets): parsed by the dbt-postgres
# utility's own dbt, again whenever a file of transform/ changes. It needs the warehouse settings
# in .env, which `flx-meltano db start` writes.
DBT_MANIFEST := transform/target/manifest.json
DBT_INPUTS := $(shell find transform -path transform/target -prune -o -path transform/logs -prune -o -type f -print)

$(DBT_MANIFEST): .meltano/.installed $(DBT_INPUTS)
	PYTHONWARNINGS=ignore::DeprecationWarning $(BIN)/meltano invoke dbt-postgres parse --quiet
	touch $@

setup: $(VENV)/.installed .meltano/.installed .meltano/.compiled  ## Virtual environment, packages, Meltano plugins, store, dbt manifest
	$(BIN)/flx-meltano db start
	@$(MAKE) --no-print-directory $(DBT_MANIFEST)

# Installed once per checkout (uv; seconds when its cache is warm), shared by every conformance test,
# and byte-compiled for the same reason as the reference project's plugins.
$(CONFORMANCE)/.meltano/.installed: $(VENV)/.installed $(CONFORMANCE)/meltano.yml
	cd $(CONFORMANCE) && $(CURDIR)/$(BIN)/meltano install
	$(BIN)/python -m compileall -q -j 0 $(CONFORMANCE)/.meltano/*/*/venv/lib > /dev/null || true
	touch $@

conformance-plugins: $(CONFORMANCE)/.meltano/.installed  ## Install the conformance project's third-party plugins

demo: setup  ## The main job: Dagster UI and daemon over this Meltano project (embedded PostgreSQL)
	bash scripts/dagster-dev.sh

jobs: setup  ## Run the reference Meltano jobs once through flx-meltano (no Dagster) and show what ran
	bash scripts/run-jobs.sh

browser:  ## Headless Chromium for the UI test (Debian packages, as root; skipped when present)
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver)

prometheus:  ## Prometheus server for the metrics test (Debian package, as root; skipped when present)
	command -v prometheus >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus)

test: setup conformance-plugins browser prometheus  ## Lint, type-check, import contracts, then the whole test suite
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault-injection suite (pytest -m faults; also part of `make test`), FAULT_ROUNDS times in a
# row (default 2): a fault test must pass again on the state its first round left behind.
FAULT_ROUNDS ?= 2
test-faults: setup  ## The fault suite (-m faults), FAULT_ROUNDS (2) times in a row, each round green
	@for round in $$(seq 1 $(FAULT_ROUNDS)); do \
		echo "fault suite, round $$round of $(FAULT_ROUNDS)"; \
		$(BIN)/python -m pytest -m faults -p no:cacheprovider $(PYTEST_ARGS) || exit 1; \
	done

# The fast tier: the application's use cases on fakes (tests/fast) and the pure unit tests of the
# domain, the log parser, the translator and the project reader. No PostgreSQL, no meltano, no
# Singer plugins (singer-sdk's and anyio's pytest plugins are not loaded: seconds of imports).
FAST_TESTS := tests/fast tests/test_domain.py tests/test_run_events.py tests/test_translator.py \
	tests/test_yaml_lines.py tests/test_project_reader.py tests/test_secrets.py tests/test_destinations.py \
	tests/test_catalog.py

test-fast: $(VENV)/.installed  ## The fast tier (fakes and pure units; no PostgreSQL, no meltano): seconds
	$(BIN)/python -m pytest -p no:cacheprovider -p no:singer_testing -p no:anyio -m "not slow" $(FAST_TESTS) $(PYTEST_ARGS)

lint: $(VENV)/.installed  ## Only ruff, mypy and the import contracts
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup  ## Benchmarks; figures land in bench/results/
	$(BIN)/python -m bench

dist: $(UV)  ## Build the flx-meltano wheel and sdist into dist/ (the Dockerfile installs the wheel)
	$(UV) build --out-dir dist

lock: $(UV)  ## Re-resolve requirements.lock from pyproject.toml
	$(UV) pip compile --quiet pyproject.toml --extra dev --python-version 3.11 -o requirements.lock

clean-db:  ## Stop the embedded PostgreSQL server
	$(BIN)/flx-meltano db stop
