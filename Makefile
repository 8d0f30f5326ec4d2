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

## The browser assets of the dashboard (Chart.js, Leaflet) and of the API docs page (Swagger UI),
## from npm (never a CDN): installed from the lock file without install scripts (only dist files are used),
## then the files the pages load copied into central/ops/static/vendor/.
FRONTEND := central/ops/frontend
VENDOR := central/ops/static/vendor
.PHONY: assets
assets: $(VENDOR)/.stamp
$(VENDOR)/.stamp: $(FRONTEND)/package.json $(FRONTEND)/package-lock.json
	npm ci --prefix $(FRONTEND) --no-audit --no-fund --ignore-scripts
	mkdir -p $(VENDOR)/swagger-ui
	cp $(FRONTEND)/node_modules/chart.js/dist/chart.umd.js $(VENDOR)/chart.umd.js
	cp $(FRONTEND)/node_modules/chart.js/LICENSE.md $(VENDOR)/LICENSE.chart.js.md
	cp $(FRONTEND)/node_modules/swagger-ui-dist/swagger-ui-bundle.js \
	   $(FRONTEND)/node_modules/swagger-ui-dist/swagger-ui.css \
	   $(FRONTEND)/node_modules/swagger-ui-dist/favicon-32x32.png \
	   $(FRONTEND)/node_modules/swagger-ui-dist/LICENSE $(VENDOR)/swagger-ui/
	mkdir -p $(VENDOR)/leaflet/images
	cp $(FRONTEND)/node_modules/leaflet/dist/leaflet.js \
	   $(FRONTEND)/node_modules/leaflet/dist/leaflet.css \
	   $(FRONTEND)/node_modules/leaflet/LICENSE $(VENDOR)/leaflet/
	cp $(FRONTEND)/node_modules/leaflet/dist/images/*.png $(VENDOR)/leaflet/images/
	touch $@
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

## The suite runs on every core (pytest-xdist, at most four workers), a test file per worker at a
## time; each worker has its own PostgreSQL database (tests/conftest.py). PYTEST_WORKERS=0: one
## process. PYTEST_ARGS: more pytest options, e.g. PYTEST_ARGS='-k paging'.
PYTEST_WORKERS ?= auto
unit: $(STAMP)
	$(BIN)/pytest -n $(PYTEST_WORKERS) --maxprocesses 4 --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/allocation.py

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
