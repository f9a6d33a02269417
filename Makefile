# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-sqlite test-postgresql lint format worker cron bench clean console chromium

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

## The desk console (desk/console, Vue 3 + Vite): npm ci and build when its sources or the API changed.
console: install
	$(BIN)/python scripts/build_console.py

## Debian's Chromium for the console's browser tests (Playwright drives it; nothing is downloaded by Playwright).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium fonts-wqy-microhei) || \
		(echo "chromium is needed for the browser tests: apt-get install -y chromium"; exit 2)

## Run the API, an RQ worker, the periodic-job scheduler and the fake WeChat server locally.
run: install console
	$(BIN)/python scripts/run_local.py

## The whole suite: lint, then SQLite and PostgreSQL side by side (PostgreSQL required under CI=true).
test: install lint console chromium
	cd desk/console && npm test
	$(BIN)/python scripts/run_suites.py

test-sqlite: install
	YIJING_TEST_DB=sqlite $(BIN)/python -m pytest

test-postgresql: install
	YIJING_TEST_DB=postgresql $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## An RQ worker for every queue (dispatch > notify > default > reports) with RQ's scheduler.
worker: install
	$(BIN)/flask --app app yijing worker

## The periodic jobs (one per deployment).
cron: install
	$(BIN)/flask --app app yijing cron

## Benchmarks against PostgreSQL and Redis; figures are ratios to a baseline measured in the same run.
bench: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
		(echo "wrk is needed: apt-get install -y wrk"; exit 2)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance var .pytest_cache .ruff_cache
