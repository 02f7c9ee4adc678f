# Switchboard: one command to run the hub, one to test it.
#   make up          install everything, start Kafka + the hub (SQLite), Ctrl-C stops all
#   make up DEMO=1   ... and play simulator traffic into it
#   make up STORE=postgres   ... on a throwaway local PostgreSQL instead of SQLite
#   make test        install everything, run the whole suite (what CI runs)
#   make test-fast   skip the slow fault-injection tests
#   make bench       the benchmarks (ingest, rebuild and audit on SQLite and PostgreSQL, webhooks,
#                    lookup, screen pops, e-mail, campaigns, footprint): an hour or more

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install system-deps kafka-jars up test test-fast bench lint schemas screenshots clean

install: system-deps $(STAMP) kafka-jars

system-deps:
	@bash deploy/install-system-deps.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e ".[dev]"
	@touch $@

kafka-jars: $(STAMP)
	@$(PY) -c "from deploy.kafka_local import ensure_jars; ensure_jars()"

up: install
	$(VENV)/bin/switchboard up $(if $(DEMO),--demo) $(if $(STORE),--store $(STORE))

test: install
	$(PY) -m pytest

test-fast: install
	$(PY) -m pytest -m "not slow"

bench: install
	$(PY) bench/ingest.py --store sqlite
	$(PY) bench/ingest.py --store postgres
	$(PY) bench/ingest.py --instances 1,2,3 --n 60000 --store postgres
	$(PY) bench/webhooks.py
	$(PY) bench/lookup.py
	$(PY) bench/screenpop.py
	$(PY) bench/email_ingest.py --n 10000
	$(PY) bench/rebuild.py
	$(PY) bench/rebuild.py --store postgres --customers 100000
	$(PY) bench/audit.py
	$(PY) bench/campaign.py
	$(PY) bench/footprint.py
	$(PY) bench/footprint.py --store postgres

lint: $(STAMP)
	$(VENV)/bin/ruff check .

schemas: $(STAMP)
	$(PY) -m contracts.schema_gen

# The console and supervisor screenshots in docs/ (README), from the browser test's pages.
screenshots: install
	SWITCHBOARD_SCREENSHOTS=docs $(PY) -m pytest -q tests/browser/test_console_browser.py

clean:
	rm -rf var .pytest_cache
