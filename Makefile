# Two commands set everything up: `make run` and `make test`. Both build the virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test lint typecheck unit bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Start central on the embedded SQLite default and one enrolled node per demo bank on simulated
## boards, with demo data; print URLs and credentials. State and logs in ./var (reset: rm -rf var).
## Ctrl-C stops everything.
run: $(STAMP)
	@$(BIN)/locker-central demo --with-nodes

## The dashboard's browser assets, from npm (never a CDN): installed from the lock file, then the
## dist files the pages load copied into central/ops/static/vendor/.
FRONTEND := central/ops/frontend
VENDOR := central/ops/static/vendor
.PHONY: assets
assets: $(VENDOR)/chart.umd.js
$(VENDOR)/chart.umd.js: $(FRONTEND)/package.json $(FRONTEND)/package-lock.json
	npm ci --prefix $(FRONTEND) --no-audit --no-fund
	mkdir -p $(VENDOR)
	cp $(FRONTEND)/node_modules/chart.js/dist/chart.umd.js $(VENDOR)/chart.umd.js
	cp $(FRONTEND)/node_modules/chart.js/LICENSE.md $(VENDOR)/LICENSE.chart.js.md
run: assets
test: assets
unit: assets

## Lint, type-check and run the whole test suite.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/allocation.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
