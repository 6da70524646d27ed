# The two commands of the README: `make run` (embedded default) and `make test`.
VENV ?= .venv
BIN = $(VENV)/bin
FLASK = $(BIN)/flask --app wsgi

.PHONY: run test services lint

$(VENV)/installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

run: $(VENV)/installed
	$(FLASK) db upgrade
	$(FLASK) demo
	$(FLASK) run --host 127.0.0.1 --port 5000

# Two workers: the suite waits on PostgreSQL, Redis and a browser as much as on Python.
test: $(VENV)/installed services
	$(BIN)/pytest -n 2

services:
	bash .ci/services

lint: $(VENV)/installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
