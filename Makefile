# make run  - the whole stack in the foreground (web, worker, beat), demo page on $PORT (8000)
# make test - the whole test suite against a real Redis and the configured database
# make serve - the production topology (nginx, web and worker processes, beat) under supervisord
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: run test serve lint format soak clean screenshots

run: $(VENV)/.run-deps
	$(PY) -m devtools.with_redis -- $(PY) -m devtools.run

# nginx on $PORT in front of $WEB_PROCESSES daphne processes, $WORKER_PROCESSES workers,
# beat and the worker watchdog (deploy/, README "Running it in production"); DJANGO_DEBUG off.
serve: $(VENV)/.run-deps
	$(PY) manage.py migrate --verbosity 0
	$(PY) -m devtools.serve

test: $(VENV)/.dev-deps node_modules/axe-core/axe.min.js
	$(PY) -m devtools.with_redis --db 9 --isolate -- $(PY) -m pytest $(PYTEST_ARGS)

# The README's pictures of the demo page, taken in Chromium by a browser test.
screenshots: $(VENV)/.dev-deps
	SCREENSHOT_DIR=$(abspath docs/img) $(PY) -m devtools.with_redis --db 9 --isolate -- \
		$(PY) -m pytest tests/browser/test_inbox.py -k screenshots -q

# axe-core (npm) for the accessibility check of the demo page; without npm that test says so.
node_modules/axe-core/axe.min.js: package.json package-lock.json
	@if ! command -v npm >/dev/null; then echo "npm is missing: tests/browser/test_accessibility.py cannot run"; \
	elif npm ci --no-audit --no-fund --silent; then touch $@; \
	else echo "npm ci failed: tests/browser/test_accessibility.py will fail until axe-core is installed"; fi

# 10 users x 3 tabs on the make-serve topology under random faults, then the oracle (SOAK_ARGS="--minutes 10").
soak: $(VENV)/.dev-deps
	$(PY) -m tests.faults.soak $(SOAK_ARGS)

lint: $(VENV)/.dev-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev-deps
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) var db.sqlite3 .pytest_cache .ruff_cache node_modules

$(PY):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11 or newer is needed (found: $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.run-deps: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-deps: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.run-deps

# make bench - every benchmark in bench/ against the naive baseline in one run (8-13 minutes on
# 2 cores): a stack of its own on 127.0.0.1, progress on stderr, the report, results and PNG plots in
# docs/bench/ (BENCH_ARGS="--only fanout --out var/bench" to vary). make bench-quick: a smoke run.
.PHONY: bench bench-quick
bench: $(VENV)/.bench-deps
	$(PY) -m bench $(BENCH_ARGS)

bench-quick: $(VENV)/.bench-deps
	$(PY) -m bench --quick $(BENCH_ARGS)

$(VENV)/.bench-deps: requirements.txt requirements-dev.txt requirements-bench.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@ $(VENV)/.dev-deps $(VENV)/.run-deps
