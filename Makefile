# `make run` and `make test` work on a fresh machine: they create .venv first.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8080
CONFIG ?= config/default.yaml

.PHONY: run test lint venv clean bench

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.stamp

run: $(VENV)/.stamp
	$(VENV)/bin/wxgate run -c $(CONFIG) -p $(PORT)

lint: $(VENV)/.stamp
	$(VENV)/bin/ruff check addons tests
	$(VENV)/bin/mypy addons

# The whole suite on mitmproxy 11 (default python3) and, where Python >= 3.12
# exists, again on mitmproxy 12; says which lines ran.
test: $(VENV)/.stamp lint
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/test-lines.sh

# Benchmarks against bare mitmdump in the same run (not part of `make test` or CI): about
# 20 minutes on 2 cores; installs wrk with apt-get when missing; appends bench/RESULTS.md.
# BENCH_ARGS=--quick for a smoke run.
bench: $(VENV)/.stamp
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .venv-py3* .pytest_cache .mypy_cache .ruff_cache
