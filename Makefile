# Developer tasks for raftredis. Everything runs inside .venv, which `make venv`
# creates and keeps in step with setup.cfg and pyproject.toml.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

WORKERS ?= 4
DURATION ?= 60
PYTEST_ARGS ?=

.PHONY: venv test lint typecheck demo clean

venv: $(STAMP)

# Reinstall only when the packaging metadata changes.
$(STAMP): setup.cfg pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: venv
	$(VPY) -m pytest tests/unit tests/integration -q $(PYTEST_ARGS)

lint: venv
	$(VPY) -m ruff check raftredis tests

typecheck: venv
	$(VPY) -m mypy --strict raftredis

demo: venv
	$(VPY) -m raftredis.demo --workers $(WORKERS) --duration $(DURATION)

clean:
	rm -rf $(VENV) build dist *.egg-info .eggs .mypy_cache .ruff_cache .pytest_cache \
	    .hypothesis .coverage .coverage.* htmlcov
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
