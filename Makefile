# CLD mesh — every target installs what it needs itself. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
CLD := $(VENV)/bin/cld
PYTEST := $(PY) -m pytest -p no:cacheprovider

export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_PYTHON := $(PYTHON)

.PHONY: help install system-deps lint format test test-fast test-unit test-component test-mesh test-deploy \
        test-integration test-browser dq-report-png up down run bench clean asyncapi prometheus-up prometheus-down \
        postgres-up postgres-down test-postgres

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(UV):
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: $(UV) pyproject.toml uv.lock
	@echo "Installing the project into $(VENV) (uv sync --frozen)..."
	@$(UV) sync --frozen --quiet
	@touch $@

install: $(VENV)/.installed ## Install the project and dev tools into .venv (from uv.lock)

system-deps: ## Install system tools the tests use (kcat, chromium + chromedriver, promtool/prometheus, postgresql) when missing
	@bash deploy/install-system-deps.sh
	@bash deploy/prometheus/install.sh
	@bash deploy/postgres/postgres.sh install

lint: install ## ruff (lint + format check), mypy --strict, import boundaries
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy
	@$(VENV)/bin/lint-imports

format: install ## Apply ruff fixes and formatting
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

test-unit: install ## Unit tier: pure functions
	@$(PYTEST) tests/unit -q

test-component: install ## Component tier: one service in FastStream's in-memory TestKafkaBroker
	@$(PYTEST) tests/component -q

test-mesh: install ## Mesh tier: all services in one in-memory broker
	@$(PYTEST) tests/mesh -q

test-fast: install ## The in-memory tiers (unit, component, mesh): for daily work
	@$(PYTEST) tests/unit tests/component tests/mesh -q

test-deploy: install system-deps ## Deployment checks: promtool rules/tests, manifests, compose schema
	@bash deploy/compose/fetch-compose-schema.sh >/dev/null
	@$(PYTEST) tests/deploy -q

prometheus-up: system-deps ## Prometheus on 127.0.0.1:$${PROMETHEUS_PORT:-9090} scraping the four services (ports: CLD_*_PORT, else those `make up` started)
	@bash deploy/prometheus/prometheus.sh start

prometheus-down: ## Stop that Prometheus
	@bash deploy/prometheus/prometheus.sh stop

postgres-up: system-deps ## PostgreSQL on 127.0.0.1:$${POSTGRES_PORT:-55432} (own data dir under .run/); prints its URL
	@bash deploy/postgres/postgres.sh start

postgres-down: ## Stop that PostgreSQL
	@bash deploy/postgres/postgres.sh stop

test-postgres: install system-deps ## Repository contract tests on SQLite and PostgreSQL, the submission service on PostgreSQL
	@$(PYTEST) tests/integration/test_repository_contract.py tests/integration/test_submission_on_postgres.py \
		tests/integration/test_history_rebuild_on_postgres.py -q -m integration

test-integration: install system-deps ## Integration tier: real Kafka (started here unless KAFKA_BOOTSTRAP_SERVERS is set), MESH sandbox, Prometheus
	@bash deploy/kafka/kafka.sh fetch
	@bash deploy/mesh/mesh-sandbox.sh install
	@$(PYTEST) tests/integration -q -m integration

test-browser: install system-deps ## Browser tier: the DQ report page in a real headless Chromium (Selenium)
	@$(PYTEST) tests/browser -q

dq-report-png: install system-deps ## Regenerate docs/images/dq-report.png (the DQ report page of synthetic data)
	@$(PY) -m tests.browser.screenshot docs/images/dq-report.png

test: install system-deps lint ## Every tier: lint, unit, component, mesh, deploy, browser, integration
	@bash deploy/compose/fetch-compose-schema.sh >/dev/null
	@$(PYTEST) tests/unit tests/component tests/mesh tests/deploy tests/browser -q
	@bash deploy/kafka/kafka.sh fetch
	@bash deploy/mesh/mesh-sandbox.sh install
	@$(PYTEST) tests/integration -q -m integration

up: install ## Start Kafka (unless KAFKA_BOOTSTRAP_SERVERS is set) and the four services in the background
	@bash deploy/local/up.sh

down: ## Stop exactly what `make up` started
	@bash deploy/local/down.sh

run: install ## The main job end to end: Kafka + 4 services + MESH sandbox, a synthetic LA dataset, DQ summary, submission
	@bash deploy/local/run.sh

bench: install ## Benchmarks (figures, not assertions): validate, preview, mesh, submission
	@bash bench/run_all.sh

asyncapi: install ## Regenerate docs/asyncapi.yaml from the code
	@$(CLD) asyncapi --out docs/asyncapi.yaml

clean: ## Remove caches, run dirs and the virtual environments
	@bash deploy/local/down.sh 2>/dev/null || true
	@rm -rf $(VENV) $(TOOLS) .run .mypy_cache .ruff_cache .pytest_cache .hypothesis
