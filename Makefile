# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-scale test-sqlite test-postgresql lint format worker cron bench bench-growth bench-report clean \
	lock lock-check lock-upgrade console chromium
.PHONY: cluster cluster-test cluster-down cluster-deps

## Installs exactly the versions in requirements.lock (pip constraints), inside pyproject's ranges.
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c requirements.lock -e '.[dev]'
	$(BIN)/python scripts/lock.py --check
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

## The tests marked `scale` (the 200,000-volunteer export), which `make test` leaves out.
test-scale: install
	YIJING_TEST_DB=$${YIJING_TEST_DB:-postgresql} $(BIN)/python -m pytest -p no:cacheprovider -m scale

test-sqlite: install
	YIJING_TEST_DB=sqlite $(BIN)/python -m pytest

test-postgresql: install
	YIJING_TEST_DB=postgresql $(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

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

## Each hot path at sizes ×10 apart (bench/README.md "Growth"); writes bench/results/growth.json.
bench-growth: install
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
		(echo "wrk is needed: apt-get install -y wrk"; exit 2)
	$(BIN)/python -m bench.run --growth $(BENCH_ARGS)

## The README's performance section from bench/results/latest.json and growth.json.
bench-report:
	$(BIN)/python -m bench.report --write-readme

## The lock: `lock` writes it from the installed packages, `lock-check` compares, `lock-upgrade`
## resolves the newest versions pyproject allows in a throw-away venv (then run `make test`).
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c requirements.lock -e '.[dev]' \
		|| $(BIN)/python -m pip install --disable-pip-version-check -q -e '.[dev]'
	$(BIN)/python scripts/lock.py
	@touch $(STAMP)

lock-check: install
	$(BIN)/python scripts/lock.py --check

lock-upgrade: install
	$(BIN)/python scripts/lock.py --fresh

## Several hosts on this machine (network namespaces; root): see docs/deployment.md. Not part of `make test`.

cluster-deps:
	@missing=""; \
	command -v haproxy >/dev/null || missing="$$missing haproxy"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	test -x /usr/lib/postgresql/15/bin/postgres || missing="$$missing postgresql-15"; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

## Bring the simulated cluster up and keep it until Ctrl-C.
cluster: install cluster-deps
	$(BIN)/python scripts/cluster.py up

## Build it, run the journeys and the failures, print what was lost and how long recovery took, tear down.
cluster-test: install cluster-deps
	$(BIN)/python scripts/cluster.py test

## Remove whatever a killed cluster run left behind (namespaces yjc-*, the bridge, their processes).
cluster-down:
	$(BIN)/python scripts/cluster.py down

clean:
	rm -rf $(VENV) instance var .pytest_cache .ruff_cache
