# The two set-up commands from the README: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
# Python's bytecode cache and pytest's cache of rewritten modules are kept (in __pycache__, ignored by git): a
# machine that sets PYTHONDONTWRITEBYTECODE would otherwise recompile every module in each of the suite's
# hundreds of Python processes (about 4 s of CPU per pytest worker alone).
unexport PYTHONDONTWRITEBYTECODE
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-fast lint browser sandbox bench bench-outputs bench-slow bench-store bench-delivery clean lock image-check postgres

# First use: pip's own progress while the dependencies install (about a minute from PyPI), then the package in
# editable mode without a word (setuptools warns about every editable build, which says nothing here).
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH" >&2; exit 1; }
	@echo "kfadapter: installing into $(VENV) (the first time takes about a minute)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@$(BIN)/python -m pip install --progress-bar on '.[test,lint]'
	@$(BIN)/python -m pip install -qq --no-deps -e .
	@$(BIN)/kfadapter --version >/dev/null  # fails here, not later, when the install did not work
	@touch $(STAMP)
	@echo "kfadapter: $(VENV) is ready"

run: $(STAMP)
	@$(BIN)/kfadapter serve --sandbox --host 127.0.0.1 --port 5001

sandbox: $(STAMP)
	$(BIN)/kfadapter sandbox

# The store's tests also run on a throwaway PostgreSQL started from the machine's server binaries (Debian's
# postgresql package; installed here when missing, which needs root as on CI).
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "installing Debian's postgresql package for the store's tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    postgresql >/dev/null; }

# The /docs page is tested in a real headless browser: Debian's chromium and its driver (installed here when missing,
# which needs root as on CI).
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium and chromium-driver for the /docs browser test"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium chromium-driver >/dev/null; }

# Everything, in parallel (pytest-xdist: the longest start first (tests/conftest.py), idle workers steal queued tests). TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 4
# The tests' temporary files (stores, spooled uploads, the sandbox's run directories) go to tmpfs when it has 4 GiB
# free: the same files and calls, without waiting for the disk (SQLite's fsyncs). Elsewhere they stay in the temp dir.
TEST_TMPDIR ?= $(shell df -Pk /dev/shm 2>/dev/null | awk -v uid=$$(id -u) 'NR == 2 && $$4 > 4194304 {print "/dev/shm/kfadapter-tests-" uid}')
test: $(STAMP) postgres browser
	$(if $(TEST_TMPDIR),@mkdir -p $(TEST_TMPDIR))
	$(if $(TEST_TMPDIR),TMPDIR=$(TEST_TMPDIR) )$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# The unit-level tests while you edit (under a minute): no server of any kind (no sandbox KFP, no PostgreSQL, no
# started process), no executed pipeline; tests/conftest.py marks them `unit`.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -m unit $(PYTEST_ARGS)

# ruff (lint and format), mypy, and the layer contracts of docs/ARCHITECTURE.md (import-linter); CI runs it.
lint: $(STAMP)
	$(BIN)/ruff check kfadapter
	$(BIN)/ruff format --check kfadapter
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Peak memory of the adapter while it streams a 50 MiB v1 artifact download (prints JSON).
bench-outputs: $(STAMP)
	$(BIN)/python bench/bench_outputs.py

# /liveness and a KFP-backed request while 64 slow heads, 64 slow uploads and 300 idle connections press (JSON).
bench-slow: $(STAMP)
	$(BIN)/python bench/bench_slow_clients.py $(BENCH_ARGS)

# The store on SQLite and PostgreSQL: watcher cycle over 1,000 runs, execution overhead, exactly-once with a slow
# training manager (two servers, 200 runs), kill -9 of the lease holder (prints JSON; ~10 min; --quick: ~3).
bench-store: $(STAMP) postgres
	$(BIN)/python bench/bench_store.py $(BENCH_ARGS)

# Notification delivery: 1,500 runs at once, a manager trickling its answer, polling 10,000 tracked runs, the
# watcher cycle on both backends (prints JSON, writes bench/results_delivery.json; ~10 min; --quick: ~4).
bench-delivery: $(STAMP) postgres
	$(BIN)/python bench/bench_delivery.py $(BENCH_ARGS)

# requirements.lock: the image's runtime dependencies with hashes (pip-compile from PyPI). Run after changing
# [project] dependencies; keeps every other pin. LOCK_ARGS=--upgrade moves all pins, '--upgrade-package X' one.
lock:
	PYTHON=$(PYTHON) LOCK_ARGS="$(LOCK_ARGS)" sh scripts/lock.sh

# Build the image's venv exactly as the Dockerfile does (scripts/build-venv.sh, same lock) in a temp dir, then
# `gunicorn --check-config` the app and start `kfadapter serve` once (no Docker engine needed).
image-check:
	PYTHON=$(PYTHON) sh scripts/image-check.sh

clean:
	rm -rf $(VENV) var .pytest_cache
