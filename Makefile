# DNMA — the two commands of the README: `make up` and `make test`.
# Everything is installed from the project's own files into .venv/ (Python) and
# tagging-sdk/js/node_modules (npm); system packages come from Debian via apt-get.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every dependency resolved, one file per environment (`make lock` regenerates them): installs are
# reproducible, and an upgrade is a reviewed diff of these files.
CONSTRAINTS := constraints.txt
SUPERSET_CONSTRAINTS := superset/constraints.txt
JS := tagging-sdk/js
APT_STAMP := $(VENV)/.apt-installed
NATIVE := collector/_native.json
NATIVE_SRC := collector/build_native.py collector/protocol.py collector/hit.py collector/context.py collector/steps.py \
	collector/pipeline.py collector/privacy.py collector/body.py collector/app.py

.PHONY: up down status test test-dates lint typecheck contracts pytest js bench golden readme clean install native system-deps \
	superset-install superset-assets superset-assets-check superset-screenshots test-superset-ui-language lock \
	test-bench-smoke

install: $(STAMP) $(NATIVE)

$(STAMP): pyproject.toml $(CONSTRAINTS)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	@touch $(STAMP)

# The collector's per-request modules compiled with mypyc (optional: without a C compiler the
# pure-Python modules run; an edited module falls back to Python until this runs again).
native: $(NATIVE)

$(NATIVE): $(NATIVE_SRC) | $(STAMP)
	$(BIN)/python collector/build_native.py

# Debian packages the tests and benchmarks need (headless Chromium, wrk, strace for the durability test). Root on CI and dev machines.
system-deps: $(APT_STAMP)

$(APT_STAMP): | $(STAMP)
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v wrk >/dev/null || ! command -v docker-compose >/dev/null || ! command -v strace >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver wrk docker-compose strace >/dev/null; \
	fi
	@touch $(APT_STAMP)

js: $(JS)/dist/dnma.iife.js

$(JS)/dist/dnma.iife.js: $(wildcard $(JS)/src/*) $(JS)/package.json
	cd $(JS) && (test -d node_modules || npm ci --no-audit --no-fund --loglevel=error) && npm run --silent build

# Superset lives in its own virtualenv (superset/.venv): its pins must not leak into the project's.
SUPERSET_VENV := superset/.venv
SUPERSET_STAMP := $(SUPERSET_VENV)/.installed

superset-install: $(SUPERSET_STAMP)

$(SUPERSET_STAMP): superset/requirements.txt $(SUPERSET_CONSTRAINTS)
	@test -x $(SUPERSET_VENV)/bin/python || $(PYTHON) -m venv $(SUPERSET_VENV)
	$(SUPERSET_VENV)/bin/pip install --quiet --upgrade pip
	$(SUPERSET_VENV)/bin/pip install --quiet -c $(SUPERSET_CONSTRAINTS) -r superset/requirements.txt
	@touch $(SUPERSET_STAMP)

# Resolve both environments again, each in a throwaway virtualenv from its own requirements (the
# newest versions they allow), and write the constraints files; review their diff, then
# `make install superset-install` brings .venv and superset/.venv to them.
LOCK_VENV := $(VENV)-lock
lock:
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet -e ".[dev]"
	{ sed -n '/^#/p' $(CONSTRAINTS); $(LOCK_VENV)/bin/pip freeze --exclude-editable; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf $(LOCK_VENV) && $(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/pip install --quiet -r superset/requirements.txt
	{ sed -n '/^#/p' $(SUPERSET_CONSTRAINTS); $(LOCK_VENV)/bin/pip freeze --exclude-editable; } > $(SUPERSET_CONSTRAINTS).new
	mv $(SUPERSET_CONSTRAINTS).new $(SUPERSET_CONSTRAINTS)
	rm -rf $(LOCK_VENV)

# The dashboards' YAML bundle, regenerated from its spec in superset/dnma_superset/ (review the diff);
# the check (part of `make test`) fails, naming each file, when the committed YAML is not what the spec renders.
superset-assets: $(STAMP)
	$(BIN)/python superset/build_assets.py

superset-assets-check: $(STAMP)
	$(BIN)/python superset/build_assets.py --check

# README screenshots: taken by the browser test into test-artifacts/superset/, copied here.
superset-screenshots: $(STAMP) superset-install system-deps
	$(BIN)/pytest -q tests/superset/test_browser.py
	mkdir -p docs/screenshots && cp test-artifacts/superset/*.png docs/screenshots/

up: $(STAMP) $(NATIVE) js superset-install
	$(BIN)/dnma up

down:
	@test -x $(BIN)/dnma && $(BIN)/dnma down || true

status: $(STAMP)
	$(BIN)/dnma status

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy cli dnma collector aggregator

# The architecture's import contracts (pyproject.toml [tool.importlinter]).
contracts: $(STAMP)
	$(BIN)/lint-imports

# Tests run on DNMA's clock set to fixed instants (tests/clockpin.py: weekdays, holidays, summer,
# both Paris DST changes, the year's end), never on the host's date alone: `make test` runs the
# whole suite at one of them (a Monday, the day CI once failed on) and the suites that read "now"
# (simulation, reporting, visits settling, checks, exports, the collector's cdt rule, the datasets'
# today, the loader's passes, the clock itself) at some of the others (TEST_DATES below), within
# CI's 30 minutes;
# `make test-dates` runs the whole suite at every one (about 90 minutes).
FULL_DATES := monday
OTHER_DATES := new-year-eve sunday christmas august dst-spring-before dst-spring-after dst-spring-later \
	dst-autumn-first dst-autumn-second
ALL_DATES := $(FULL_DATES) $(OTHER_DATES)
DATE_SUITES := tests/client_sim tests/visits/test_settling.py tests/quality/test_checks.py \
	tests/referentiel_exports/test_exports.py tests/collector/test_collector_responses.py tests/collector/test_collector_parameters.py \
	tests/superset/test_clock_config.py::test_datasets_today_is_dnma_clock_day
# (test_clock_config's other test reads the settings only: the Monday's run is enough for it.)
# Pinned to its own instant (Matomo's fixtures' 2017 dates): the other instants would repeat it as is.
DATE_IGNORE := --ignore=tests/client_sim/test_matomo_conformance.py
# `make test` runs the date-sensitive suites at three instants that differ the most from its Monday
# (the year's end in the Christmas holidays, 1 August in the summer break and between school years,
# the skipped DST hour), and those that start a whole stack (a minute and a half each) at one of
# them: within CI's 30 minutes now that the suite holds the Matomo API and the dashboards' browser
# tests. `make test-dates` runs everything at all ten instants (a Sunday, the repeated DST hour...).
TEST_DATES := new-year-eve august dst-spring-after
STACK_DATE_SUITES := tests/stack/test_clock.py tests/stack/test_clock_jumps.py tests/stack/test_loader_side_duties.py
STACK_DATES := dst-spring-after

pytest: $(STAMP) $(NATIVE) js system-deps superset-install
	cd $(JS) && npm test --silent
	@for d in $(FULL_DATES); do echo "== whole suite at DNMA_TEST_NOW=$$d"; \
		DNMA_TEST_NOW=$$d $(BIN)/pytest -q --durations=15 || exit 1; done
	@for d in $(TEST_DATES); do echo "== date-sensitive suites at DNMA_TEST_NOW=$$d"; \
		suites="$(DATE_SUITES)"; case " $(STACK_DATES) " in *" $$d "*) suites="$$suites $(STACK_DATE_SUITES)";; esac; \
		DNMA_TEST_NOW=$$d $(BIN)/pytest -q $(DATE_IGNORE) $$suites || exit 1; done

test: lint typecheck contracts superset-assets-check pytest

# `make test` scans the dashboards for English UI strings and error states as two users (national,
# an ENT); this target scans them as every provisioned user (about twenty minutes).
test-superset-ui-language: $(STAMP) system-deps superset-install
	DNMA_SUPERSET_ALL_USERS=1 $(BIN)/pytest -q tests/superset/test_ui_language.py

# bench/national_day.py at a toy size, through a whole stack and wrk (about 40 s on a loaded host:
# over make test's budget; make test runs only its argument check).
test-bench-smoke: $(STAMP) $(NATIVE) system-deps
	DNMA_BENCH_SMOKE=1 $(BIN)/pytest -q tests/stack/test_national_day_bench.py

test-dates: $(STAMP) $(NATIVE) js system-deps superset-install
	@for d in $(ALL_DATES); do echo "== whole suite at DNMA_TEST_NOW=$$d"; \
		DNMA_TEST_NOW=$$d $(BIN)/pytest -q || exit 1; done

bench: $(STAMP) $(NATIVE) js system-deps
	$(BIN)/python bench/run_all.py

readme: $(STAMP)
	$(BIN)/python -m dnma.settings --readme README.md

golden: $(STAMP)
	$(BIN)/python tests/referentiel_exports/regen_golden.py

clean:
	rm -rf var test-artifacts .pytest_cache .mypy_cache .ruff_cache
	$(PYTHON) collector/build_native.py --clean
