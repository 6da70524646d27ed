# The two commands of the README: `make run` (embedded default) and `make test`; `make reset`
# starts the embedded default afresh.
VENV ?= .venv
BIN = $(VENV)/bin
FLASK = $(BIN)/flask --app wsgi
PORT ?= 5000
# The embedded default's files: create_app's instance folder.
INSTANCE ?= instance
DATABASE_FILE = $(INSTANCE)/portal.sqlite3
# Whether an earlier run left a database (read before this run makes one).
EARLIER_RUN := $(wildcard $(DATABASE_FILE))
# The texts link to the address this run serves.
RUN_ENV = PUBLIC_BASE_URL=$${PUBLIC_BASE_URL:-http://127.0.0.1:$(PORT)}

.PHONY: run reset test services lint bench

$(VENV)/installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/installed
	$(FLASK) db upgrade
	$(RUN_ENV) $(FLASK) demo
	$(if $(EARLIER_RUN),@echo "This is the database of an earlier run ($(DATABASE_FILE)): its filings and codes are as that run left them. \`make reset\` starts afresh.")
	$(RUN_ENV) $(FLASK) run --host 127.0.0.1 --port $(PORT)

# Deletes the embedded default's database and SMS inbox (not its secret key).
reset:
	rm -f $(DATABASE_FILE) $(DATABASE_FILE)-wal $(DATABASE_FILE)-shm $(INSTANCE)/sms.jsonl
	@echo "Done: the next \`make run\` starts with a new database and fresh demo data."

# Three workers on two cores: the suite waits on PostgreSQL, Redis, a browser and the
# production-stack tests' minutes of outages and holds (run first) as much as on Python.
test: $(VENV)/installed services
	$(BIN)/pytest -n 3

services:
	bash .ci/services

lint: $(VENV)/installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Issue 14's table, row by row (docs/performance.md, "How to run it"): the capacity, texts and
# 5-minute mixed phases (~12 min), then the sweep and the console at 1,000,000 filings (each
# loads its own database: 20-60 min). Each starts and stops its own tuned PostgreSQL.
BENCH_USERS ?= 75
bench: $(VENV)/installed services
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m tests.load.bench --duration 300 --users $(BENCH_USERS)
	$(BIN)/python -m tests.load.sweep_scale
	$(BIN)/python -m tests.load.console_scale
